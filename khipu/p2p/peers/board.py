"""What the outside sees of the peers: a thread-safe board the PeerManager and the Discovery actor
publish to and the JSON-RPC server (admin_peers, net_peerCount, khipu_health) reads, plus the p2p
metrics."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from khipu.p2p.keys import keccak256
from khipu.p2p.peers.roster import Connection, Direction
from khipu.p2p.peers.scoring import BadListEntry


class PeerBoard:
    """The connected peers and the bad list as the PeerManager last published them.

    Scores are read live from the connection records (their peer actors update them).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._connections: tuple[Connection, ...] = ()
        self._bad: tuple[BadListEntry, ...] = ()
        self._discovery: dict[str, Any] | None = None
        self.max_peers = 0

    def publish(self, connections: list[Connection], bad: list[BadListEntry]) -> None:
        """Replace the board with the manager's current view (active peers only)."""
        with self._lock:
            self._connections = tuple(c for c in connections if c.active)
            self._bad = tuple(bad)

    def publish_discovery(self, facts: dict[str, Any]) -> None:
        """Replace what the Discovery actor last reported (table size, rounds, last lookup)."""
        with self._lock:
            self._discovery = dict(facts)

    def peer_count(self, direction: Direction | None = None) -> int:
        """Connected peers (past Status), in `direction` when given."""
        with self._lock:
            return sum(
                1 for c in self._connections if direction is None or c.direction is direction
            )

    def admin_peers(self) -> list[dict[str, Any]]:
        """admin_peers in geth's shape: enode, id (keccak of the key), name, caps, network,
        protocols; plus khipu's score."""
        with self._lock:
            connections = self._connections
        return [_admin_peer(c) for c in connections]

    def summary(self) -> dict[str, Any]:
        """The `p2p` part of khipu_health: counts, limits, bad list and a line per peer, and
        `discovery` ({table, rounds, last_lookup, incarnation}) once the Discovery actor ran."""
        now = self.clock()
        with self._lock:
            connections, bad, discovery = self._connections, self._bad, self._discovery
        inbound = sum(1 for c in connections if c.direction is Direction.INBOUND)
        summary = {
            "peers": len(connections),
            "inbound": inbound,
            "outbound": len(connections) - inbound,
            "max_peers": self.max_peers,
            "bad_listed": len(bad),
            "peer_list": [
                {
                    "id": c.node_id.hex()[:16],
                    "name": c.client_id,
                    "direction": c.direction.value,
                    "address": c.remote_address,
                    "score": c.score.value,
                    "connected_s": round(now - c.since, 1),
                }
                for c in connections
            ],
        }
        if discovery is not None:
            summary["discovery"] = dict(discovery)
        return summary


def _admin_peer(connection: Connection) -> dict[str, Any]:
    return {
        "enode": f"enode://{connection.node_id.hex()}@{connection.remote_address}",
        "id": keccak256(connection.node_id).hex(),
        "name": connection.client_id,
        "caps": list(connection.caps),
        "network": {
            "remoteAddress": connection.remote_address,
            "inbound": connection.direction is Direction.INBOUND,
            "trusted": False,
            "static": connection.static,
        },
        "protocols": connection.protocols,
        "score": connection.score.value,
    }


class PeerMetrics:
    """The p2p metrics, registered in the node's registry (khipu.actors.metrics.NodeMetrics)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = registry if registry is not None else CollectorRegistry()
        self.peers = Gauge("khipu_p2p_peers", "Connected peers.", ["direction"], registry=r)
        self.dials = Counter(
            "khipu_p2p_dials",
            "Outbound dials by outcome (connected or failed).",
            ["outcome"],
            registry=r,
        )
        self.disconnects = Counter(
            "khipu_p2p_disconnects",
            "Peers that left or were dropped, by reason.",
            ["reason"],
            registry=r,
        )
        self.refused = Counter(
            "khipu_p2p_refused",
            "Connections refused at admission, by reason.",
            ["reason"],
            registry=r,
        )
        self.bad_listed = Gauge("khipu_p2p_bad_listed", "Nodes on the bad list now.", registry=r)
        self.offences = Counter(
            "khipu_p2p_offences",
            "Offences that lowered a peer's score, by kind.",
            ["offence"],
            registry=r,
        )
