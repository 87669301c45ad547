"""GetTrieNodes between two of our hosts on 127.0.0.1: answers of an honest server check out node
by node through PeerRequests; a server that lies about one node is found out, scored as lying,
dropped and bad-listed by the requesting node's PeerManager."""

from __future__ import annotations

import dataclasses

import pytest

from khipu.p2p.errors import PeerMisbehaved
from khipu.p2p.host import P2PConfig
from khipu.p2p.keys import keccak256
from khipu.p2p.peers.requests import PeerRequests
from khipu.p2p.snap.messages import GetTrieNodes
from khipu.p2p.snap.serving import trie_nodes
from tests.conftest import require_testdata
from tests.integration.p2p_hosts import RunningHost, running_host, wait_for
from tests.unit.p2p.chainfile import MemoryChain
from tests.unit.p2p.snap_states import DictState, LyingState, compact, random_state

LOCAL = P2PConfig(port=0, discovery=False, max_peers=10)
STATE = random_state(31, 300, (40,))
PATHS = [[b""], *[[compact((n,))] for n in range(16)]]


@pytest.fixture(scope="module")
def prague_chain() -> MemoryChain:
    folder = require_testdata("rpc-compat-prague")
    return MemoryChain(folder / "genesis.json", folder / "chain.rlp")


def requests_to_server(client: RunningHost) -> PeerRequests:
    links: list[object] = []

    def linked() -> bool:
        links[:] = client.manager().call("active_links")
        return len(links) == 1

    wait_for(linked, 20, "the client's link to the server")
    return PeerRequests(links[0], client.manager().tell)  # type: ignore[arg-type]


def test_honest_and_lying_trie_node_servers(prague_chain: MemoryChain) -> None:
    honest_nodes = trie_nodes(
        STATE.state, GetTrieNodes(STATE.root, tuple(map(tuple, PATHS)), 10**6)
    )
    victim = keccak256(honest_nodes[9])
    for lying in (False, True):
        served = LyingState(STATE.state, victim) if lying else STATE.state
        with (
            running_host(prague_chain, LOCAL, state=served) as server,
            running_host(
                prague_chain,
                dataclasses.replace(LOCAL, staticnodes=(str(server.enode),)),
                state=DictState(),  # offers snap/1 too
            ) as client,
        ):
            requests = requests_to_server(client)
            future = requests.trie_nodes(STATE.root, PATHS)
            if not lying:
                assert future.result(20) == honest_nodes
                assert client.metric("khipu_p2p_offences_total", offence="lying") == 0
                continue
            with pytest.raises(PeerMisbehaved, match="none of the requested paths"):
                future.result(20)
            wait_for(lambda: client.host.board.summary()["bad_listed"] == 1, 20, "bad-listing")
            assert client.metric("khipu_p2p_offences_total", offence="lying") == 1
            wait_for(lambda: client.host.peer_count() == 0, 20, "the liar dropped")
