"""The Discovery actor on 127.0.0.1: its table fills from a boot node, and a round that fails
restarts it, after which discv4 answers on the same UDP port again."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest
from coincurve import PrivateKey

from khipu.actors.messages import Heartbeat
from khipu.node_actors.faults import FaultPlan
from khipu.p2p.discv4 import packets as pk
from khipu.p2p.discv4.packets import Endpoint
from khipu.p2p.discv4.service import Discovery, start_discovery
from khipu.p2p.host import P2PConfig
from khipu.p2p.keys import Enode
from khipu.p2p.peers.discovery_actor import ROUND_FAULT_POINT, DiscoverySettings
from tests.conftest import require_testdata
from tests.integration.p2p_hosts import running_host, wait_for
from tests.unit.p2p.chainfile import MemoryChain

T = TypeVar("T")
FAST = DiscoverySettings(refresh_interval=0.5, revalidate_interval=0.2)


@pytest.fixture(scope="module")
def prague_chain() -> MemoryChain:
    suite = require_testdata("rpc-compat-prague")
    return MemoryChain(suite / "genesis.json", suite / "chain.rlp")


class OtherNodes:
    """Independent discv4 nodes on a loop thread of their own (the test's side of the wire)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.nodes: list[Discovery] = []

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(30)

    def start(self) -> Discovery:
        node = self.run(start_discovery(PrivateKey(), "127.0.0.1", 0))
        self.nodes.append(node)
        return node

    def close(self) -> None:
        for node in self.nodes:
            self.loop.call_soon_threadsafe(node.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def others() -> Iterator[OtherNodes]:
    nodes = OtherNodes()
    try:
        yield nodes
    finally:
        nodes.close()


def enode_of(node: Discovery) -> Enode:
    return Enode(node.node_id, "127.0.0.1", node.endpoint.tcp_port, node.endpoint.udp_port)


def endpoint_of(enode: Enode) -> Endpoint:
    return Endpoint("127.0.0.1", enode.udp_port, enode.tcp_port)


def test_the_table_fills_from_a_boot_node(prague_chain: MemoryChain, others: OtherNodes) -> None:
    boot = others.start()
    neighbour = others.start()  # known to the boot node only
    assert others.run(neighbour.bootstrap([(boot.node_id, boot.endpoint)])) >= 1
    config = P2PConfig(port=0, max_peers=3, bootnodes=(str(enode_of(boot)),))
    with running_host(prague_chain, config, discovery=FAST) as running:
        wait_for(
            lambda: neighbour.node_id in {e.node_id for e in running.host.discovered()},
            30,
            "the boot node's neighbour in our table",
        )
        found = {e.node_id for e in running.host.discovered()}
        assert boot.node_id in found
        facts = running.host.board.summary()["discovery"]
        assert facts["table"] >= 2 and facts["rounds"] >= 1
        assert facts["last_lookup"] is not None and facts["incarnation"] == 1
        assert boot.table.get(running.enode.node_id) is not None  # bonded both ways


def test_a_failed_round_restarts_discovery_on_the_same_port(
    prague_chain: MemoryChain, others: OtherNodes
) -> None:
    boot = others.start()
    faults = FaultPlan()
    faults.arm_raise(ROUND_FAULT_POINT, skip=2)  # the third round due fails, once
    config = P2PConfig(port=0, max_peers=3, bootnodes=(str(enode_of(boot)),))
    with running_host(prague_chain, config, discovery=FAST, faults=faults) as running:
        host = running.host
        wait_for(lambda: host.discovery is not None, 10, "discv4 open")
        first = host.discovery

        def restarted() -> bool:
            facts = host.board.summary().get("discovery") or {}
            return facts.get("incarnation") == 2 and facts.get("table", 0) >= 1

        wait_for(restarted, 30, "Discovery restarted with the boot node in its table again")
        assert faults.fired(ROUND_FAULT_POINT) == 1
        assert host.discovery is not None and host.discovery is not first  # closed, reopened
        assert host.discovery.endpoint.udp_port == running.enode.udp_port
        pong = others.run(boot.ping(endpoint_of(running.enode), running.enode.node_id))
        assert isinstance(pong, pk.Pong)
        assert pong.enr_seq is not None
        report = running.tree.handle("Discovery").ask(Heartbeat(1), timeout=5)
        assert report.incarnation == 2
