"""eth/69 (EIP-7642): Status with the served block range, BlockRangeUpdate, receipts without
blooms (both ways), and version negotiation in Hello, over the in-memory pipe."""

from __future__ import annotations

import asyncio
import copy
import dataclasses

import pytest

from khipu.chain.era1 import ordered_trie_root
from khipu.p2p import wire
from khipu.p2p.errors import DisconnectReason, PeerDisconnected, PeerMisbehaved
from khipu.p2p.eth import messages as eth
from khipu.p2p.eth.messages import BlockRange, Status
from khipu.p2p.eth.peer import EthPeer, LocalChain, check_status
from khipu.p2p.eth.receipts import (
    decode_network_receipts,
    encode_consensus_list,
    logs_bloom,
    to_network_receipts,
)
from khipu.p2p.eth.serving import answer
from tests.unit.p2p.chainfile import MemoryChain
from tests.unit.p2p.pairs import session_pair
from tests.unit.p2p.receipt_samples import ADDRESS, TOPICS, bloom_of, sample_receipts


def test_bloom_matches_eth_bloom() -> None:
    logs = [[ADDRESS, TOPICS, b"x"], [b"\xaa" * 20, [], b""]]
    assert logs_bloom(logs) == bloom_of(logs)  # type: ignore[arg-type]
    assert logs_bloom([]) == b"\0" * 256
    with pytest.raises(PeerMisbehaved):
        logs_bloom([[b"short", [], b""]])


def test_receipts_round_trip_through_the_eth69_form() -> None:
    stored = sample_receipts()
    network = wire.decode(to_network_receipts(stored))
    assert isinstance(network, list) and len(network) == 4
    assert [wire.as_int(r[0], "type") for r in network] == [0, 2, 3, 0]  # type: ignore[index]
    assert all(len(r) == 4 for r in network)  # type: ignore[arg-type]
    assert len(to_network_receipts(stored)) < len(stored) - 3 * 250  # the blooms are gone
    rebuilt = decode_network_receipts(network)
    assert encode_consensus_list(rebuilt) == stored
    original = [wire.encode(r) if isinstance(r, list) else r for r in wire.decode(stored)]  # type: ignore[union-attr]
    assert ordered_trie_root(rebuilt) == ordered_trie_root(original)


@pytest.mark.parametrize(
    "bad",
    [
        [[0, b"\x01", 1]],  # three fields
        [[0x80, b"\x01", 1, []]],  # not a typed-transaction type
        [[0, b"\x01", 2**64, []]],  # gas beyond 64 bits
        [[0, b"\x01", 1, [[b"\x01" * 19, [], b""]]]],  # a 19-byte address
        [[0, b"\x01", 1, [[b"\x01" * 20, [b"\x02" * 31], b""]]]],  # a short topic
        [b"\x02"],  # a string where a receipt belongs
    ],
)
def test_malformed_eth69_receipts_are_a_breach(bad: list[object]) -> None:
    with pytest.raises(PeerMisbehaved):
        decode_network_receipts(wire.decode(wire.encode(bad)))


def test_status69_round_trip_and_range_checks(prague_chain: MemoryChain) -> None:
    local = LocalChain.from_reader(prague_chain)
    status = local.status(69)
    assert status.total_difficulty is None
    assert status.block_range == BlockRange(0, 45, prague_chain.hashes[45])
    decoded = Status.decode(status.encode(), 69)
    assert decoded == status
    check_status(local, decoded, 69)
    assert len(wire.as_list(wire.decode(status.encode()), "status")) == 7  # no TD
    # a 68 Status is no 69 one, and the other way round
    with pytest.raises(PeerMisbehaved):
        Status.decode(local.status(68).encode(), 69)
    for bad in (BlockRange(5, 4, b"\x01" * 32), BlockRange(0, 4, b"\0" * 32)):
        payload = dataclasses.replace(status, block_range=bad).encode()
        with pytest.raises(PeerMisbehaved):
            Status.decode(payload, 69)
        with pytest.raises(PeerMisbehaved):
            BlockRange.decode(bad.encode())
    with pytest.raises(ValueError, match="block range"):
        dataclasses.replace(status, block_range=None).encode()


def test_serving_rebuilds_eth69_receipts_from_stored_ones(prague_chain: MemoryChain) -> None:
    chain = copy.copy(prague_chain)
    chain.receipts = {prague_chain.hashes[7]: sample_receipts()}
    request = eth.encode_request(5, [prague_chain.hashes[7]])
    for version, expected in (
        (68, sample_receipts()),
        (69, to_network_receipts(sample_receipts())),
    ):
        code, payload = answer(chain, eth.GET_RECEIPTS, request, version) or (0, b"")
        assert code == eth.RECEIPTS
        _, body = eth.decode_request(payload, "Receipts")
        assert eth.encode_items(body, "receipts") == [expected]


CAPS_BOTH = eth.capabilities()
CAPS_68 = eth.capabilities((68,))


async def pair(
    chain: MemoryChain,
    client_caps: dict[eth.Capability, int],
    server_caps: dict[eth.Capability, int],
) -> tuple[EthPeer, EthPeer]:
    client_session, server_session = await session_pair(client_caps, server_caps)
    local = LocalChain.from_reader(chain)
    client = EthPeer(client_session, dataclasses.replace(local, earliest_block=0))
    server = EthPeer(server_session, local, chain)
    await asyncio.gather(client.exchange_status(), server.exchange_status())
    return client, server


@pytest.mark.parametrize(
    ("client_caps", "server_caps", "version"),
    [(CAPS_BOTH, CAPS_BOTH, 69), (CAPS_BOTH, CAPS_68, 68), (CAPS_68, CAPS_BOTH, 68)],
)
def test_highest_shared_version_wins_and_receipts_arrive_in_consensus_form(
    prague_chain: MemoryChain,
    client_caps: dict[eth.Capability, int],
    server_caps: dict[eth.Capability, int],
    version: int,
) -> None:
    chain = copy.copy(prague_chain)
    chain.receipts = {prague_chain.hashes[n]: sample_receipts() for n in (3, 4)}

    async def scenario() -> None:
        client, server = await pair(chain, client_caps, server_caps)
        assert client.version == server.version == version
        assert client.remote_status is not None and client.remote_status.version == version
        if version == 69:
            assert client.remote_range == BlockRange(0, 45, prague_chain.hashes[45])
        else:
            assert client.remote_range is None
            assert client.remote_status.total_difficulty == prague_chain.head_total_difficulty()
        tasks = [asyncio.create_task(p.run()) for p in (client, server)]
        hashes = [prague_chain.hashes[n] for n in (3, 4)]
        assert await client.get_receipts(hashes) == [sample_receipts()] * 2
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(scenario())


def test_block_range_update_is_kept_and_checked(prague_chain: MemoryChain) -> None:
    async def scenario() -> None:
        client, server = await pair(prague_chain, CAPS_BOTH, CAPS_BOTH)
        runner = asyncio.create_task(client.run())
        newer = BlockRange(3, 46, b"\x46" * 32)
        assert await server.send_block_range(newer)
        for _ in range(200):
            if client.remote_range == newer:
                break
            await asyncio.sleep(0.01)
        assert client.remote_range == newer
        await server.session.send("eth", eth.BLOCK_RANGE_UPDATE, wire.encode([9, 8, b"\x01" * 32]))
        ended = await asyncio.wait_for(runner, 5)
        assert isinstance(ended, PeerMisbehaved)
        assert ended.reason is DisconnectReason.BREACH_OF_PROTOCOL

    asyncio.run(scenario())


def test_block_range_update_on_eth68_is_a_breach(prague_chain: MemoryChain) -> None:
    async def scenario() -> None:
        client, server = await pair(prague_chain, CAPS_68, CAPS_68)
        assert not await server.send_block_range(BlockRange(0, 1, b"\x01" * 32))  # not sent
        runner = asyncio.create_task(server.run())
        # a misbehaving eth/68 peer sends 0x11 anyway: outside eth/68's ids
        await client.session.connection.send(0x10 + 0x11, BlockRange(0, 1, b"\x01" * 32).encode())
        ended = await asyncio.wait_for(runner, 5)
        assert isinstance(ended, PeerMisbehaved)
        client_runner = asyncio.create_task(client.run())
        assert isinstance(await asyncio.wait_for(client_runner, 5), PeerDisconnected)

    asyncio.run(scenario())


def test_capabilities_refuse_unknown_versions() -> None:
    assert eth.capabilities() == {eth.ETH69: 18, eth.ETH68: 17}
    with pytest.raises(ValueError, match="eth/68 and eth/69"):
        eth.capabilities((67,))
