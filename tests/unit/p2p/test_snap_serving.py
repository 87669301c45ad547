"""snap/1 serving from a state: ranges verified by our own range-proof checker reassemble the
trie exactly, storage ranges are proven where cut, codes and trie nodes come back by hash, and
hostile requests get bounded answers or a typed error."""

from __future__ import annotations

import asyncio
import logging
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from khipu.nibbles import key_nibbles
from khipu.node_actors.live_store import LiveStore
from khipu.p2p import wire
from khipu.p2p.errors import PeerDisconnected, PeerMisbehaved
from khipu.p2p.eth import messages as eth
from khipu.p2p.eth.peer import EthPeer, LocalChain
from khipu.p2p.keys import keccak256
from khipu.p2p.snap import messages as snap
from khipu.p2p.snap import serving
from khipu.p2p.snap.abc import StateUnavailable
from khipu.p2p.snap.messages import (
    MAX_HASH,
    ZERO_HASH,
    GetAccountRange,
    GetByteCodes,
    GetStorageRanges,
    GetTrieNodes,
)
from khipu.p2p.snap.trie_reader import TrieReader
from khipu.p2p.store_state import StoreStateReader
from tests.unit.p2p.chainfile import MemoryChain
from tests.unit.p2p.pairs import session_pair
from tests.unit.p2p.snap_states import RandomState, hashed_proof, random_state


def compact(nibbles: tuple[int, ...]) -> bytes:
    """Hex-prefix encoding of a path to an inner node (no leaf flag)."""
    padded = [1, *nibbles] if len(nibbles) % 2 else [0, 0, *nibbles]
    return bytes((padded[i] << 4) | padded[i + 1] for i in range(0, len(padded), 2))


def page_accounts(rs: RandomState, response_bytes: int) -> tuple[list[tuple[bytes, bytes]], int]:
    """Every account of the state, page by page, each page verified; and the page count."""
    origin, accounts, pages = ZERO_HASH, [], 0
    while True:
        query = GetAccountRange(rs.root, origin, MAX_HASH, response_bytes)
        page = serving.account_range(rs.state, query)
        more = snap.verify_account_range(rs.root, origin, page)
        accounts.extend(page.accounts)
        pages += 1
        if not more:
            return accounts, pages
        origin = (int.from_bytes(page.accounts[-1][0], "big") + 1).to_bytes(32, "big")


def as_full(accounts: list[tuple[bytes, bytes]]) -> dict[bytes, bytes]:
    return {h: snap.full_account(body) for h, body in accounts}


# -- the trie reader --------------------------------------------------------------------------


def test_reader_leaves_proofs_and_lookups_match_py_trie() -> None:
    rs = random_state(1, 300, (40,))
    tries = TrieReader(rs.state)
    ordered = sorted(rs.accounts.items())
    assert list(tries.leaves(rs.root, ZERO_HASH)) == ordered
    rng = random.Random(5)
    for _ in range(40):
        key = rng.choice([rng.randbytes(32), rng.choice(ordered)[0]])
        assert list(tries.leaves(rs.root, key)) == [kv for kv in ordered if kv[0] >= key]
        assert tries.prove(rs.root, key) == hashed_proof(rs.root, rs.state.nodes, key)
        assert tries.get(rs.root, key) == rs.accounts.get(key)


def test_reader_is_lazy() -> None:
    rs = random_state(2, 2000)
    rs.state.reads = 0
    leaves = TrieReader(rs.state).leaves(rs.root, ZERO_HASH)
    for _ in range(10):
        next(leaves)
    assert rs.state.reads < 40  # ten leaves and their path, not 2000 accounts


# -- account ranges ---------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    size=st.integers(1, 120),
    response_bytes=st.integers(0, 4000),
)
def test_random_trie_served_in_ranges_reassembles_exactly(
    seed: int, size: int, response_bytes: int
) -> None:
    rs = random_state(seed, size)
    accounts, pages = page_accounts(rs, response_bytes)
    assert as_full(accounts) == rs.accounts
    assert [h for h, _ in accounts] == sorted(rs.accounts)
    if response_bytes < 32 and size > 1:
        assert pages == size  # at least one account per answer, however small the budget


def test_whole_state_from_zero_comes_without_proof() -> None:
    rs = random_state(3, 50)
    page = serving.account_range(rs.state, GetAccountRange(rs.root, ZERO_HASH, MAX_HASH, 10**6))
    assert len(page.accounts) == 50 and page.proof == ()
    assert not snap.verify_account_range(rs.root, ZERO_HASH, page)


def test_limit_and_origin_past_the_end() -> None:
    rs = random_state(4, 100)
    keys = sorted(rs.accounts)
    page = serving.account_range(rs.state, GetAccountRange(rs.root, keys[10], keys[20], 10**6))
    assert [h for h, _ in page.accounts] == keys[10:21]  # up to the first at or past the limit
    assert snap.verify_account_range(rs.root, keys[10], page)
    past = (int.from_bytes(keys[-1], "big") + 1).to_bytes(32, "big")
    tail = serving.account_range(rs.state, GetAccountRange(rs.root, past, MAX_HASH, 10**6))
    assert tail.accounts == () and tail.proof  # absence proven
    assert not snap.verify_account_range(rs.root, past, tail)


def test_unknown_root_and_non_state_roots_are_answered_empty() -> None:
    rs = random_state(5, 30, (20,))
    for root in (b"\x42" * 32, next(iter(rs.storage_roots.values()))):
        payload = wire.encode([7, root, ZERO_HASH, MAX_HASH, 10**6])
        code, reply = serving.answer(rs.state, snap.GET_ACCOUNT_RANGE, payload) or (0, b"")
        assert code == snap.ACCOUNT_RANGE
        assert wire.decode(reply) == [b"\x07", [], []]


def test_missing_inner_node_answers_empty_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    rs = random_state(6, 200)
    lost = hashed_proof(rs.root, rs.state.nodes, sorted(rs.accounts)[100])[1]
    del rs.state.nodes[keccak256(lost)]
    payload = wire.encode([1, rs.root, ZERO_HASH, MAX_HASH, 10**6])
    with caplog.at_level(logging.WARNING, "khipu.p2p.snap"):
        _, reply = serving.answer(rs.state, snap.GET_ACCOUNT_RANGE, payload) or (0, b"")
    assert wire.decode(reply) == [b"\x01", [], []]
    assert "is not stored" in caplog.text


# -- storage ranges ---------------------------------------------------------------------------


def test_storage_ranges_whole_then_partial_last_with_proof() -> None:
    rs = random_state(7, 40, (3, 5, 400, 2))
    owners = list(rs.storage)
    query = GetStorageRanges(rs.root, tuple(owners), ZERO_HASH, MAX_HASH, 2000)
    ranges = serving.storage_ranges(rs.state, query)
    assert len(ranges.slots) == 3 and ranges.proof  # the big third one is cut and proven
    for owner, slots in zip(owners[:2], ranges.slots[:2], strict=False):
        assert dict(slots) == rs.storage[owner]
    big = owners[2]
    partial = ranges.slots[2]
    assert 0 < len(partial) < 400
    more = snap.verify_storage_range(rs.storage_roots[big], ZERO_HASH, partial, list(ranges.proof))
    assert more
    # the rest of the big one, from past the last slot, page by page
    slots, origin = list(partial), partial[-1][0]
    while more:
        origin = (int.from_bytes(origin, "big") + 1).to_bytes(32, "big")
        page = serving.storage_ranges(
            rs.state, GetStorageRanges(rs.root, (big,), origin, MAX_HASH, 1500)
        )
        assert len(page.slots) == 1 and page.proof
        proof = list(page.proof)
        more = snap.verify_storage_range(rs.storage_roots[big], origin, page.slots[0], proof)
        slots.extend(page.slots[0])
        origin = page.slots[0][-1][0]
    assert dict(slots) == rs.storage[big] and len(slots) == 400


def test_storage_ranges_of_an_unknown_account_are_empty() -> None:
    rs = random_state(8, 20, (10,))
    owner = next(iter(rs.storage))
    query = GetStorageRanges(rs.root, (owner, b"\x77" * 32), ZERO_HASH, MAX_HASH, 10**6)
    assert serving.storage_ranges(rs.state, query) == snap.StorageRanges((), ())


def test_storage_range_cut_at_limit_is_proven() -> None:
    rs = random_state(9, 5, (60,))
    owner = next(iter(rs.storage))
    keys = sorted(rs.storage[owner])
    query = GetStorageRanges(rs.root, (owner,), ZERO_HASH, keys[20], 10**6)
    ranges = serving.storage_ranges(rs.state, query)
    assert [k for k, _ in ranges.slots[0]] == keys[:21]
    root = rs.storage_roots[owner]
    assert snap.verify_storage_range(root, ZERO_HASH, ranges.slots[0], list(ranges.proof))


# -- bytecodes and trie nodes -----------------------------------------------------------------


def test_byte_codes_in_order_skipping_unknown_within_budget() -> None:
    rs = random_state(10, 10, (1, 1, 1, 1))
    hashes = list(rs.state.codes)
    asked = (hashes[0], b"\x13" * 32, hashes[1], snap.EMPTY_CODE_HASH, hashes[2])
    codes = serving.byte_codes(rs.state, GetByteCodes(asked, 10**6))
    assert [keccak256(c) for c in codes] == [hashes[0], hashes[1], snap.EMPTY_CODE_HASH, hashes[2]]
    assert len(serving.byte_codes(rs.state, GetByteCodes(tuple(hashes), 0))) == 1


def test_trie_nodes_by_path_hash_to_their_references() -> None:
    rs = random_state(11, 300, (80,))
    account = sorted(rs.accounts)[123]
    proof_hashes = {keccak256(n) for n in hashed_proof(rs.root, rs.state.nodes, account)}
    path = key_nibbles(account)
    paths = tuple((compact(path[:length]),) for length in range(0, 65))
    nodes = serving.trie_nodes(rs.state, GetTrieNodes(rs.root, paths, 10**6))
    assert keccak256(nodes[0]) == rs.root  # the empty path is the root
    assert {keccak256(n) for n in nodes} == proof_hashes  # every node on the path, the leaf too
    owner = next(iter(rs.storage))
    slot = sorted(rs.storage[owner])[7]
    storage_root = rs.storage_roots[owner]
    slot_path = key_nibbles(slot)
    storage_paths = [compact(slot_path[:length]) for length in range(0, 65)]
    found = serving.trie_nodes(rs.state, GetTrieNodes(rs.root, ((owner, *storage_paths),), 10**6))
    assert keccak256(found[0]) == storage_root
    assert {keccak256(n) for n in found} == {
        keccak256(n) for n in hashed_proof(storage_root, rs.state.nodes, slot)
    }


def test_trie_nodes_skip_garbage_paths_and_unknown_roots() -> None:
    rs = random_state(12, 50)
    paths = ((b"\xff" * 40,), (b"\x3f",), (b"",), (b"\x77" * 32, b""))
    nodes = serving.trie_nodes(rs.state, GetTrieNodes(rs.root, paths, 10**6))
    assert [keccak256(n) for n in nodes] == [rs.root]
    assert serving.trie_nodes(rs.state, GetTrieNodes(b"\x01" * 32, ((b"",),), 10**6)) == []


# -- hostile requests -------------------------------------------------------------------------


def test_huge_response_bytes_are_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(serving, "SOFT_RESPONSE_LIMIT", 3000)
    rs = random_state(13, 400, (300,))
    page = serving.account_range(rs.state, GetAccountRange(rs.root, ZERO_HASH, MAX_HASH, 2**64 - 1))
    size = sum(32 + len(body) for _, body in page.accounts)
    assert 3000 < size < 3000 + 200 and snap.verify_account_range(rs.root, ZERO_HASH, page)
    owner = next(iter(rs.storage))
    query = GetStorageRanges(rs.root, (owner,), ZERO_HASH, MAX_HASH, 2**64 - 1)
    slots = serving.storage_ranges(rs.state, query).slots[0]
    assert sum(32 + len(v) for _, v in slots) <= 3300 + 100


def test_node_loads_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(serving, "MAX_NODE_LOADS", 60)
    rs = random_state(14, 600)
    rs.state.reads = 0
    page = serving.account_range(rs.state, GetAccountRange(rs.root, ZERO_HASH, MAX_HASH, 10**6))
    assert 0 < len(page.accounts) < 600 and rs.state.reads < 60 + 20
    assert snap.verify_account_range(rs.root, ZERO_HASH, page)
    many = tuple(sorted(rs.accounts))  # 600 accounts without storage: lookups, no slots
    rs.state.reads = 0
    ranges = serving.storage_ranges(rs.state, GetStorageRanges(rs.root, many, ZERO_HASH, b"", 9))
    assert 0 < len(ranges.slots) < 600 and rs.state.reads < 60 + 20


def test_many_garbage_trie_paths_are_bounded() -> None:
    rs = random_state(15, 100)
    rs.state.reads = 0
    paths = tuple((bytes([0x11, i % 256]) * 8,) for i in range(20000))
    serving.trie_nodes(rs.state, GetTrieNodes(rs.root, paths, 2**64 - 1))
    assert rs.state.reads <= serving.MAX_TRIE_NODE_LOOKUPS + 70


@pytest.mark.parametrize(
    ("code", "fields"),
    [
        (snap.GET_ACCOUNT_RANGE, [b"\x01" * 31, ZERO_HASH, MAX_HASH, 100]),
        (snap.GET_ACCOUNT_RANGE, [ZERO_HASH, [b""], MAX_HASH, 100]),
        (snap.GET_STORAGE_RANGES, [ZERO_HASH, [b"\x01"], b"", b"", 100]),
        (snap.GET_BYTE_CODES, [[ZERO_HASH], 2**65]),
        (snap.GET_TRIE_NODES, [ZERO_HASH, [[]], 100]),
        (snap.GET_TRIE_NODES, [ZERO_HASH, b"paths", 100]),
    ],
)
def test_malformed_requests_are_a_breach(code: int, fields: list[object]) -> None:
    rs = random_state(16, 10)
    with pytest.raises(PeerMisbehaved):
        serving.answer(rs.state, code, wire.encode([3, *fields]))


# -- through an EthPeer -----------------------------------------------------------------------


def test_eth_peer_serves_its_state_and_drops_a_malformed_request(
    prague_chain: MemoryChain,
) -> None:
    rs = random_state(17, 150, (30,))
    caps = {eth.ETH68: eth.MESSAGE_COUNT, snap.SNAP1: snap.MESSAGE_COUNT}

    async def scenario() -> None:
        a, b = await session_pair(caps, caps)
        local = LocalChain.from_reader(prague_chain)
        client = EthPeer(a, local)
        server = EthPeer(b, local, prague_chain, snap_state=rs.state)
        await asyncio.gather(client.exchange_status(), server.exchange_status())
        tasks = [asyncio.create_task(p.run()) for p in (client, server)]
        page = await client.get_account_range(rs.root, response_bytes=2000)
        assert snap.verify_account_range(rs.root, ZERO_HASH, page)
        assert 0 < len(page.accounts) < 150
        owner = next(iter(rs.storage))
        ranges = await client.get_storage_ranges(rs.root, [owner])
        assert dict(ranges.slots[0]) == rs.storage[owner] and ranges.proof == ()
        codes = await client.get_byte_codes(list(rs.state.codes))
        assert codes == list(rs.state.codes.values())
        [root_node] = await client.get_trie_nodes(rs.root, [[b""]])
        assert root_node is not None and keccak256(root_node) == rs.root
        await a.send("snap", snap.GET_TRIE_NODES, wire.encode([9, rs.root, [[]], 100]))
        ended = await asyncio.wait_for(tasks[1], 5)
        assert isinstance(ended, PeerMisbehaved)
        assert isinstance(await asyncio.wait_for(tasks[0], 5), PeerDisconnected)

    asyncio.run(scenario())


# -- limits of time, the store, and fuzzing ---------------------------------------------------


def test_time_limit_still_gives_one_proven_account(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(serving, "SERVE_TIME_LIMIT", 0.0)
    rs = random_state(18, 300, (50,))
    page = serving.account_range(rs.state, GetAccountRange(rs.root, ZERO_HASH, MAX_HASH, 10**6))
    assert len(page.accounts) == 1 and snap.verify_account_range(rs.root, ZERO_HASH, page)
    owner = next(iter(rs.storage))
    query = GetStorageRanges(rs.root, (owner,), ZERO_HASH, MAX_HASH, 10**6)
    ranges = serving.storage_ranges(rs.state, query)
    assert len(ranges.slots[0]) == 1
    root = rs.storage_roots[owner]
    assert snap.verify_storage_range(root, ZERO_HASH, ranges.slots[0], list(ranges.proof))


def test_a_store_that_is_restarting_gets_empty_answers() -> None:
    rs = random_state(19, 20)
    state = StoreStateReader(LiveStore())  # type: ignore[arg-type]  # nothing published yet
    with pytest.raises(StateUnavailable):
        state.trie_node(rs.root)
    payload = wire.encode([5, rs.root, ZERO_HASH, MAX_HASH, 1000])
    assert serving.answer(state, snap.GET_ACCOUNT_RANGE, payload) == (
        snap.ACCOUNT_RANGE,
        wire.encode([5, [], []]),
    )
    codes = wire.encode([6, [rs.root], 1000])
    assert serving.answer(state, snap.GET_BYTE_CODES, codes) == (
        snap.BYTE_CODES,
        wire.encode([6, []]),
    )


FUZZ_STATE = random_state(20, 80, (20,))
_item = st.recursive(
    st.binary(max_size=40) | st.sampled_from([FUZZ_STATE.root, ZERO_HASH, MAX_HASH, b""]),
    lambda children: st.lists(children, max_size=5),
    max_leaves=30,
)


@settings(max_examples=150, deadline=None)
@given(
    code=st.sampled_from(sorted(snap.RESPONSE_TO)),
    payload=st.binary(max_size=200) | st.lists(_item, max_size=6).map(wire.encode),
)
def test_arbitrary_requests_get_an_answer_or_a_breach(code: int, payload: bytes) -> None:
    try:
        reply = serving.answer(FUZZ_STATE.state, code, payload)
    except PeerMisbehaved:
        return
    assert reply is not None and reply[0] == snap.RESPONSE_TO[code]
    wire.decode(reply[1])  # a well-formed message


def test_storage_from_an_origin_of_an_account_without_storage() -> None:
    rs = random_state(21, 30, (0, 5))
    empty_owner, owner = list(rs.storage)
    middle = b"\x80" + b"\0" * 31
    query = GetStorageRanges(rs.root, (empty_owner,), middle, MAX_HASH, 1000)
    assert serving.storage_ranges(rs.state, query) == snap.StorageRanges(((),), ())
    assert snap.verify_storage_range(snap.EMPTY_ROOT, middle, (), []) is False
    query = GetStorageRanges(rs.root, (owner,), middle, MAX_HASH, 1000)
    ranges = serving.storage_ranges(rs.state, query)
    expected = sorted((k, v) for k, v in rs.storage[owner].items() if k >= middle)
    assert list(ranges.slots[0]) == expected and ranges.proof
    root = rs.storage_roots[owner]
    assert not snap.verify_storage_range(root, middle, ranges.slots[0], list(ranges.proof))
