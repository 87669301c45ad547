"""A devp2p host with its PeerManager under a supervision tree, in-process, on 127.0.0.1: what
`khipu run` starts, without the store and the rest of the node."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coincurve import PrivateKey
from prometheus_client import CollectorRegistry

from khipu.actors import SupervisionTree
from khipu.node_actors.faults import FaultPlan
from khipu.p2p.abc import ChainReader
from khipu.p2p.host import P2PConfig, P2PHost
from khipu.p2p.keys import Enode
from khipu.p2p.peers.board import PeerMetrics
from khipu.p2p.peers.dialing import DialPlan
from khipu.p2p.peers.discovery_actor import DiscoverySettings, discovery_spec
from khipu.p2p.peers.manager import PeerManager, PeerSettings, peer_manager_spec
from khipu.p2p.peers.roster import PeerLimits
from khipu.p2p.snap.abc import StateReader


@dataclass
class RunningHost:
    """A started host, its tree and its metrics."""

    host: P2PHost
    tree: SupervisionTree
    metrics: PeerMetrics
    registry: CollectorRegistry
    enode: Enode

    def manager(self) -> Any:
        """The PeerManager's handle (ask/tell/call)."""
        return self.tree.handle("PeerManager")

    def metric(self, name: str, **labels: str) -> float:
        """The current value of a p2p metric sample (0 when never set)."""
        value = self.registry.get_sample_value(name, labels or None)
        return 0.0 if value is None else float(value)


@contextmanager
def running_host(
    chain: ChainReader,
    config: P2PConfig,
    *,
    key: PrivateKey | None = None,
    tick: float = 0.1,
    request_timeout: float = 3.0,
    dial_plan: Callable[[], DialPlan] | None = None,
    state: StateReader | None = None,
    bad_list_path: Path | None = None,
    discovery: DiscoverySettings | None = None,
    faults: FaultPlan | None = None,
) -> Iterator[RunningHost]:
    """Start a host with its PeerManager (ticking every `tick` s; serving snap/1 from `state`
    when given; its bad list kept in `bad_list_path` when given) and, unless the config says
    no discovery, its Discovery actor (on the `discovery` schedule, with `faults` armed);
    stop them all on exit."""
    host = P2PHost(config, key or PrivateKey(), chain, state=state)
    settings = PeerSettings(
        PeerLimits(config.max_peers),
        static_nodes=host.staticnodes,
        boot_nodes=host.bootnodes,
        dial=config.dial,
        bad_peer_expiry=config.bad_peer_expiry,
        bad_list_path=bad_list_path,
        tick_interval=tick,
        request_timeout=request_timeout,
    )
    if dial_plan is not None:
        settings = dataclasses.replace(settings, dial_plan=dial_plan)
    registry = CollectorRegistry()
    metrics = PeerMetrics(registry)
    tree = SupervisionTree(
        "NodeSupervisor", [peer_manager_spec(host, settings, host.board, metrics)]
    )
    manager = tree.handle("PeerManager")
    host.attach(lambda message: manager.tell(message, timeout=0.0))
    try:
        enode = host.start()
        if config.discovery:
            tree.add_child(discovery_spec(host, host.board, discovery, faults=faults))
        yield RunningHost(host, tree, metrics, registry, enode)
    finally:
        tree.shutdown("test over", timeout=30)
        host.stop()


def wait_for(condition: Callable[[], bool], timeout: float = 20.0, what: str = "it") -> None:
    """Poll `condition` until true; fail naming `what` after `timeout` s (a bound, not a
    measurement)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.02)


__all__ = ["PeerManager", "RunningHost", "running_host", "wait_for"]
