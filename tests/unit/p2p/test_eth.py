"""eth/68: Status checks, header selection edge cases, and a full client/server exchange over
the in-memory pipe against the rpc-compat-prague chain."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from khipu.chain.forkid import ForkId
from khipu.p2p import wire
from khipu.p2p.errors import DisconnectReason, IncompatiblePeer, PeerMisbehaved, RequestTimeout
from khipu.p2p.eth import messages as eth
from khipu.p2p.eth.messages import HeaderRequest, Status, header_facts
from khipu.p2p.eth.peer import EthPeer, LocalChain, check_header_sequence, check_status
from khipu.p2p.eth.serving import answer, select_headers
from tests.unit.p2p.chainfile import MemoryChain
from tests.unit.p2p.pairs import session_pair

ETH_CAPS = {eth.ETH68: eth.MESSAGE_COUNT}


def numbers(headers: list[bytes]) -> list[int]:
    return [header_facts(h).number for h in headers]


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        (HeaderRequest(1, 5), [1, 2, 3, 4, 5]),
        (HeaderRequest(40, 10), [40, 41, 42, 43, 44, 45]),
        (HeaderRequest(10, 4, skip=2), [10, 13, 16, 19]),
        (HeaderRequest(10, 4, skip=2, reverse=True), [10, 7, 4, 1]),
        (HeaderRequest(3, 10, reverse=True), [3, 2, 1]),  # no genesis header in this chain
        (HeaderRequest(46, 3), []),
        (HeaderRequest(5, 0), []),
        (HeaderRequest(45, 3, skip=2**63), [45]),
    ],
)
def test_select_headers_by_number(
    prague_chain: MemoryChain, request_: HeaderRequest, expected: list[int]
) -> None:
    assert numbers(select_headers(prague_chain, request_)) == expected


def test_select_headers_by_hash(prague_chain: MemoryChain) -> None:
    origin = prague_chain.hashes[20]
    got = select_headers(prague_chain, HeaderRequest(origin, 3, reverse=True))
    assert numbers(got) == [20, 19, 18]
    assert select_headers(prague_chain, HeaderRequest(b"\x01" * 32, 3)) == []


def test_answer_bodies_skips_unknown_and_keeps_order(prague_chain: MemoryChain) -> None:
    hashes = [prague_chain.hashes[7], b"\x02" * 32, prague_chain.hashes[3]]
    code, payload = answer(prague_chain, eth.GET_BLOCK_BODIES, eth.encode_request(99, hashes)) or (
        0,
        b"",
    )
    assert code == eth.BLOCK_BODIES
    request_id, body = eth.decode_request(payload, "BlockBodies")
    assert request_id == 99
    assert eth.encode_items(body, "bodies") == [
        prague_chain.bodies[prague_chain.hashes[7]],
        prague_chain.bodies[prague_chain.hashes[3]],
    ]


def test_malformed_request_is_a_breach(prague_chain: MemoryChain) -> None:
    with pytest.raises(PeerMisbehaved):
        answer(prague_chain, eth.GET_BLOCK_HEADERS, wire.encode([1, [b"\x01" * 9, 1, 0, 0]]))
    with pytest.raises(PeerMisbehaved):
        answer(prague_chain, eth.GET_BLOCK_BODIES, wire.encode([1, [b"short"]]))
    with pytest.raises(PeerMisbehaved):
        answer(prague_chain, eth.GET_RECEIPTS, b"\xc5\x01")


def test_header_sequence_check(prague_chain: MemoryChain) -> None:
    headers = [prague_chain.headers[n] for n in (5, 6, 7)]
    check_header_sequence(HeaderRequest(5, 3), headers)
    with pytest.raises(PeerMisbehaved):
        check_header_sequence(HeaderRequest(5, 2), headers)
    with pytest.raises(PeerMisbehaved):
        check_header_sequence(HeaderRequest(4, 3), headers)
    with pytest.raises(PeerMisbehaved):
        check_header_sequence(HeaderRequest(5, 3, skip=1), headers)
    check_header_sequence(HeaderRequest(7, 3, reverse=True), headers[::-1])


def test_status_round_trip_and_checks(prague_chain: MemoryChain) -> None:
    local = LocalChain.from_reader(prague_chain)
    status = local.status()
    assert Status.decode(status.encode()) == status
    assert status.fork_id == ForkId(bytes.fromhex("e29a7b81"), 0)
    check_status(local, status, 68)
    # a peer still at genesis is a syncing peer on our chain: accepted
    syncing = dataclasses.replace(status, fork_id=prague_chain.forks.fork_id(0, 0))
    check_status(local, syncing, 68)
    for bad in (
        dataclasses.replace(status, network_id=1),
        dataclasses.replace(status, genesis_hash=b"\x05" * 32),
        dataclasses.replace(status, fork_id=ForkId(b"\xde\xad\xbe\xef", 0)),
        dataclasses.replace(status, fork_id=ForkId(prague_chain.forks.checksums()[1], 0)),
    ):
        with pytest.raises(IncompatiblePeer) as caught:
            check_status(local, bad, 68)
        assert caught.value.reason is DisconnectReason.SUBPROTOCOL_SPECIFIC


async def eth_pair(chain: MemoryChain) -> tuple[EthPeer, EthPeer]:
    """A client at genesis (no chain) connected to a server holding `chain`."""
    client_session, server_session = await session_pair(ETH_CAPS, ETH_CAPS)
    server_local = LocalChain.from_reader(chain)
    client_local = dataclasses.replace(
        server_local, head_hash=chain.genesis, head_number=0, head_time=0, total_difficulty=1
    )
    client = EthPeer(client_session, client_local)
    server = EthPeer(server_session, server_local, chain)
    await asyncio.gather(client.exchange_status(), server.exchange_status())
    return client, server


def test_download_headers_bodies_from_a_serving_peer(prague_chain: MemoryChain) -> None:
    async def scenario() -> None:
        client, server = await eth_pair(prague_chain)
        assert client.remote_status is not None
        assert client.remote_status.head_hash == prague_chain.hashes[45]
        tasks = [asyncio.create_task(client.run()), asyncio.create_task(server.run())]
        headers = await client.get_block_headers(HeaderRequest(1, 45))
        assert headers == [prague_chain.headers[n] for n in range(1, 46)]
        hashes = [header_facts(h).block_hash for h in headers]
        bodies = await client.get_block_bodies(hashes)
        assert bodies == [prague_chain.bodies[h] for h in hashes]
        assert await client.get_receipts(hashes[:3]) == []  # the test chain has no receipts
        # several requests in flight at once are matched by request id
        results = await asyncio.gather(
            *(client.get_block_headers(HeaderRequest(n, 2)) for n in (30, 10, 20))
        )
        assert [numbers(r) for r in results] == [[30, 31], [10, 11], [20, 21]]
        await client.session.disconnect(DisconnectReason.CLIENT_QUITTING)
        ended = await asyncio.wait_for(tasks[1], 5)
        assert getattr(ended, "reason", None) is DisconnectReason.CLIENT_QUITTING
        await asyncio.wait_for(tasks[0], 5)

    asyncio.run(scenario())


def test_status_on_another_chain_is_refused(prague_chain: MemoryChain) -> None:
    async def scenario() -> None:
        client_session, server_session = await session_pair(ETH_CAPS, ETH_CAPS)
        server = EthPeer(server_session, LocalChain.from_reader(prague_chain), prague_chain)
        stranger = dataclasses.replace(
            LocalChain.from_reader(prague_chain), genesis_hash=b"\x09" * 32
        )
        client = EthPeer(client_session, stranger)
        results = await asyncio.gather(
            client.exchange_status(), server.exchange_status(), return_exceptions=True
        )
        assert all(isinstance(r, Exception) for r in results)
        server_error = results[1]
        assert isinstance(server_error, IncompatiblePeer)
        assert "genesis" in str(server_error)

    asyncio.run(scenario())


def test_announcements_reach_the_owner_and_tx_gossip_is_ignored(prague_chain: MemoryChain) -> None:
    async def scenario() -> None:
        seen: list[tuple[int, bytes]] = []
        client, server = await eth_pair(prague_chain)
        client.on_announcement = lambda code, payload: seen.append((code, payload))
        runner = asyncio.create_task(client.run())
        announce = wire.encode([[prague_chain.hashes[45], 45]])
        await server.session.send("eth", eth.TRANSACTIONS, wire.encode([]))
        await server.session.send(
            "eth", eth.NEW_POOLED_TRANSACTION_HASHES, wire.encode([b"", [], []])
        )
        await server.session.send("eth", eth.NEW_BLOCK_HASHES, announce)
        for _ in range(100):
            if seen:
                break
            await asyncio.sleep(0.01)
        assert seen == [(eth.NEW_BLOCK_HASHES, announce)]
        assert eth.decode_new_block_hashes(announce) == [(prague_chain.hashes[45], 45)]
        assert not runner.done()
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)

    asyncio.run(scenario())


def test_unanswered_request_times_out_and_late_answer_is_ignored(prague_chain: MemoryChain) -> None:
    async def scenario() -> None:
        client, server = await eth_pair(prague_chain)
        runner = asyncio.create_task(client.run())
        # the server's loop is not running yet: nobody answers
        with pytest.raises(RequestTimeout):
            await client.get_block_headers(HeaderRequest(1, 2), timeout=0.1)
        server_runner = asyncio.create_task(server.run())  # now it answers the stale request
        headers = await client.get_block_headers(HeaderRequest(3, 1))
        assert numbers(headers) == [3]
        assert not runner.done()
        for task in (runner, server_runner):
            task.cancel()
        await asyncio.gather(runner, server_runner, return_exceptions=True)

    asyncio.run(scenario())
