"""snap/1 codecs and checks, and the empty answers our side gives to snap requests."""

from __future__ import annotations

import asyncio

import pytest

from khipu.p2p import wire
from khipu.p2p.eth import messages as eth
from khipu.p2p.eth.peer import EthPeer, LocalChain
from khipu.p2p.keys import keccak256
from khipu.p2p.snap import messages as snap
from khipu.p2p.snap.trie_nodes import BadProof
from tests.unit.p2p.chainfile import MemoryChain
from tests.unit.p2p.pairs import session_pair

CAPS = {eth.ETH68: eth.MESSAGE_COUNT, snap.SNAP1: snap.MESSAGE_COUNT}


def test_full_account_fills_empty_root_and_code() -> None:
    slim = wire.encode([1, 1000, b"", b""])
    assert wire.decode(snap.full_account(slim)) == [
        b"\x01",
        b"\x03\xe8",
        snap.EMPTY_ROOT,
        snap.EMPTY_CODE_HASH,
    ]
    full = wire.encode([1, 5, b"\x11" * 32, b"\x22" * 32])
    assert snap.full_account(full) == full


def test_account_range_accepts_list_and_wrapped_bodies() -> None:
    body = [2, 7, b"", b""]
    as_list = snap.AccountRange.decode([[[b"\xaa" * 32, body]], [b"node"]])
    wrapped = snap.AccountRange.decode([[[b"\xaa" * 32, wire.encode(body)]], [b"node"]])
    assert as_list == wrapped
    assert as_list.accounts[0][1] == wire.encode(body)


def test_byte_codes_must_be_requested_in_order() -> None:
    codes = [b"\x60\x00", b"\x60\x01", b"\x60\x02"]
    hashes = [keccak256(c) for c in codes]
    assert snap.verify_byte_codes(hashes, [codes[0], codes[2]]) == [hashes[0], hashes[2]]
    with pytest.raises(BadProof):
        snap.verify_byte_codes(hashes, [codes[2], codes[0]])
    with pytest.raises(BadProof):
        snap.verify_byte_codes(hashes[:1], [b"\x00"])


def test_snap_requests_get_empty_answers(prague_chain: MemoryChain) -> None:
    async def scenario() -> None:
        a, b = await session_pair(CAPS, CAPS)
        local = LocalChain.from_reader(prague_chain)
        client, server = EthPeer(a, local), EthPeer(b, local, prague_chain)
        await asyncio.gather(client.exchange_status(), server.exchange_status())
        tasks = [asyncio.create_task(p.run()) for p in (client, server)]
        page = await client.get_account_range(b"\x01" * 32)
        assert page == snap.AccountRange((), ())
        fields = await client.snap_request(snap.GET_BYTE_CODES, [[b"\x02" * 32], 1000])
        assert snap.decode_byte_strings(fields, "codes") == []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(scenario())
