"""GetTrieNodes answers checked node by node: answers of our own server check out (with gaps and
a cut tail placed right), and every kind of lie is caught: a tampered node, another node of the
same trie, an extra node, nodes out of order; unverifiable requests are refused before sending."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from khipu.nibbles import key_nibbles
from khipu.p2p.errors import PeerDisconnected, PeerMisbehaved
from khipu.p2p.eth import messages as eth
from khipu.p2p.eth.peer import EthPeer, LocalChain
from khipu.p2p.keys import keccak256
from khipu.p2p.snap import messages as snap
from khipu.p2p.snap.messages import GetTrieNodes
from khipu.p2p.snap.serving import trie_nodes
from khipu.p2p.snap.trie_node_check import UnverifiablePath, check_request, match_trie_nodes
from khipu.p2p.snap.trie_nodes import BadProof
from tests.unit.p2p.chainfile import MemoryChain
from tests.unit.p2p.pairs import session_pair
from tests.unit.p2p.snap_states import DictState, LyingState, RandomState, compact, random_state


def nothing(_node_hash: bytes) -> bytes | None:
    return None


@pytest.fixture(scope="module")
def rs() -> RandomState:
    return random_state(23, 400, (60, 3))


def serve(state: DictState, root: bytes, paths: list[list[bytes]]) -> list[bytes]:
    """What our own server answers."""
    return trie_nodes(state, GetTrieNodes(root, tuple(map(tuple, paths)), 10**6))


def account_path(rs: RandomState, index: int) -> list[list[bytes]]:
    """The paths from the root down one account's key, one node each (past the leaf, none)."""
    account = sorted(rs.accounts)[index]
    nibbles = key_nibbles(account)
    return [[compact(nibbles[:depth])] for depth in range(0, 8)]


def test_our_servers_answer_checks_out_from_the_root_alone(rs: RandomState) -> None:
    paths = [[b""], *[[compact((n,))] for n in range(16)], *account_path(rs, 7)[1:]]
    check_request(rs.root, paths, nothing)  # each depends on the root requested first
    nodes = serve(rs.state, rs.root, paths)
    placed = match_trie_nodes(rs.root, paths, nodes, nothing)
    assert [n for n in placed if n is not None] == nodes
    assert placed[0] is not None and keccak256(placed[0]) == rs.root
    assert all(keccak256(n) in rs.state.nodes for n in nodes)
    assert sum(n is not None for n in placed[1:17]) == 16  # 400 accounts: a full root branch
    assert placed[-1] is None  # a depth-7 path lies past that account's leaf


def test_known_nodes_let_deep_paths_be_asked_alone(rs: RandomState) -> None:
    deep = account_path(rs, 100)[2:4]
    with pytest.raises(UnverifiablePath, match="neither known nor requested"):
        check_request(rs.root, deep, nothing)
    check_request(rs.root, deep, rs.state.nodes.get)
    placed = match_trie_nodes(rs.root, deep, serve(rs.state, rs.root, deep), rs.state.nodes.get)
    assert all(n is not None for n in placed)


def test_storage_paths_check_against_the_account_storage_root(rs: RandomState) -> None:
    owner = next(a for a, slots in rs.storage.items() if len(slots) == 60)
    paths = [[owner, b"", compact((0,)), compact((5,))]]
    with pytest.raises(UnverifiablePath):
        check_request(rs.root, paths, nothing)  # the account leaf is not known
    check_request(rs.root, paths, rs.state.nodes.get)
    placed = match_trie_nodes(rs.root, paths, serve(rs.state, rs.root, paths), rs.state.nodes.get)
    assert placed[0] is not None and keccak256(placed[0]) == rs.storage_roots[owner]
    assert all(n is not None for n in placed)


def test_gaps_and_a_cut_tail_are_placed_not_blamed(rs: RandomState) -> None:
    paths = [[b""], *[[compact((n,))] for n in range(16)]]
    full = serve(rs.state, rs.root, paths)
    answer = [*full[:3], *full[4:]]  # a server without the node at nibble 2 skips it
    placed = match_trie_nodes(rs.root, paths, answer[:10], nothing)  # and it cut the tail
    assert placed[3] is None and placed[:3] == full[:3] and placed[4:11] == full[4:11]
    assert placed[11:] == [None] * 6


def test_every_kind_of_lie_is_caught(rs: RandomState) -> None:
    paths = [[b""], *[[compact((n,))] for n in range(16)]]
    honest = serve(rs.state, rs.root, paths)
    tampered = bytearray(honest[5])
    tampered[-1] ^= 1
    deeper = serve(rs.state, rs.root, account_path(rs, 9)[2:3])  # a real node, another path
    lies = {
        "tampered": [*honest[:5], bytes(tampered), *honest[6:]],
        "another node of the trie": [*honest[:5], *deeper, *honest[6:]],
        "one node too many": [*honest, honest[1]],
        "out of order": [honest[0], honest[2], honest[1], *honest[3:]],
        "a wrong root": [honest[1]],
    }
    for what, answer in lies.items():
        with pytest.raises(BadProof, match="none of the requested paths"):
            match_trie_nodes(rs.root, paths, answer, nothing)
            pytest.fail(f"{what} was not caught")


def test_unverifiable_requests_are_refused(rs: RandomState) -> None:
    with pytest.raises(UnverifiablePath, match="account hash"):
        check_request(rs.root, [[b"\x01" * 31, b""]], rs.state.nodes.get)
    below_root = [[compact((4, 2))], [b""]]  # the root is asked for after its child
    with pytest.raises(UnverifiablePath, match=rs.root.hex()):
        check_request(rs.root, below_root, nothing)
    check_request(rs.root, below_root[::-1], nothing)


def test_an_eth_peer_drops_a_server_that_lies_about_a_trie_node(
    rs: RandomState, prague_chain: MemoryChain
) -> None:
    caps = eth.capabilities() | {snap.SNAP1: snap.MESSAGE_COUNT}
    paths = [[b""], *[[compact((n,))] for n in range(16)]]
    victim = keccak256(serve(rs.state, rs.root, paths)[7])

    async def scenario(state: DictState) -> list[bytes | None] | Exception:
        a, b = await session_pair(caps, caps)
        local = LocalChain.from_reader(prague_chain)
        client = EthPeer(a, dataclasses.replace(local))
        server = EthPeer(b, local, prague_chain, snap_state=state)
        await asyncio.gather(client.exchange_status(), server.exchange_status())
        tasks = [asyncio.create_task(p.run()) for p in (client, server)]
        try:
            return await client.get_trie_nodes(rs.root, paths)
        except PeerMisbehaved as exc:
            ended = await asyncio.wait_for(tasks[1], 5)  # the server was told why
            assert isinstance(ended, PeerDisconnected)
            return exc
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    honest = asyncio.run(scenario(rs.state))
    assert isinstance(honest, list) and all(n is not None for n in honest)
    lie = asyncio.run(scenario(LyingState(rs.state, victim)))
    assert isinstance(lie, PeerMisbehaved) and "none of the requested paths" in str(lie)
