"""The PeerManager with EthereumJS's serve.mjs on 127.0.0.1.

With serve.mjs as boot node and serve.mjs dialling the nodes it bonds with (`--dial`), both
sides dial each other: one connection survives on both, our peer actor checks serve.mjs's head
(header by hash, then the body against the header's roots) and scores it; as a static node
without discovery, serve.mjs is dialled and checked the same way, and so is the real
EthereumJS client (KHIPU_CONFORMANCE=full only).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from khipu.actors.backoff import ExponentialBackoff
from khipu.p2p.host import P2PConfig
from khipu.p2p.peers.dialing import DialPlan
from tests.conftest import conformance_full, require_testdata
from tests.integration.p2p_hosts import running_host, wait_for
from tests.integration.p2p_peers import start_ejs_client, start_serving_peer
from tests.unit.p2p.chainfile import MemoryChain

CHECKED_SCORE = 2  # a point for the head header, one for its body


@pytest.fixture(scope="module")
def suite() -> Path:
    return require_testdata("rpc-compat-prague")


@pytest.fixture(scope="module")
def prague_chain(suite: Path) -> MemoryChain:
    return MemoryChain(suite / "genesis.json", suite / "chain.rlp")


def test_boot_node_that_dials_back_ends_in_one_checked_connection(
    suite: Path, prague_chain: MemoryChain
) -> None:
    serving = start_serving_peer(suite / "genesis.json", suite / "chain.rlp", "--dial")
    try:
        config = P2PConfig(port=0, max_peers=10, bootnodes=(serving.enode,))
        with running_host(prague_chain, config) as running:

            def checked() -> bool:
                peers = running.host.peer_infos()
                return len(peers) == 1 and peers[0]["score"] == CHECKED_SCORE

            wait_for(checked, 90, "serve.mjs connected and its head checked")
            [peer] = running.host.peer_infos()
            assert str(peer["name"]).startswith("ethjs-devp2p-serve")
            assert str(peer["enode"]).startswith(serving.enode.split("@")[0])
            assert running.host.board.summary()["bad_listed"] == 0
    finally:
        serving.stop()


def test_a_static_node_is_dialled_and_checked(suite: Path, prague_chain: MemoryChain) -> None:
    serving = start_serving_peer(suite / "genesis.json", suite / "chain.rlp")
    try:
        config = P2PConfig(port=0, discovery=False, max_peers=3, staticnodes=(serving.enode,))
        with running_host(prague_chain, config) as running:
            wait_for(
                lambda: [p["score"] for p in running.host.peer_infos()] == [CHECKED_SCORE],
                90,
                "serve.mjs dialled and checked",
            )
            [peer] = running.host.peer_infos()
            assert peer["network"]["inbound"] is False  # type: ignore[index]
            assert peer["network"]["static"] is True  # type: ignore[index]
            assert running.metric("khipu_p2p_dials_total", outcome="connected") == 1
    finally:
        serving.stop()


@pytest.mark.slow
def test_the_ethereumjs_client_as_a_static_node_is_dialled_and_checked(
    suite: Path, prague_chain: MemoryChain, tmp_path: Path
) -> None:
    """The real @ethereumjs/client (KHIPU_CONFORMANCE=full only: ~10 s start-up). Its RLPx
    server restarts while it has no peers; the dial backoff retries it."""
    if not conformance_full():
        pytest.skip("slow interop with @ethereumjs/client: set KHIPU_CONFORMANCE=full")
    client = start_ejs_client(suite / "genesis.json", suite / "chain.rlp", tmp_path / "ejs")
    try:
        config = P2PConfig(port=0, discovery=False, max_peers=3, staticnodes=(client.enode,))
        fast_retry = ExponentialBackoff(initial=1.0, maximum=4.0, jitter=0.0)
        with running_host(
            prague_chain, config, dial_plan=lambda: DialPlan(fast_retry, redial_after=1.0)
        ) as running:
            wait_for(
                lambda: [p["score"] for p in running.host.peer_infos()] == [CHECKED_SCORE],
                120,
                "the EthereumJS client dialled and checked",
            )
            [peer] = running.host.peer_infos()
            assert "ethereumjs" in str(peer["name"]).lower()
    finally:
        client.stop()
