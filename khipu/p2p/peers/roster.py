"""Who is connected: the PeerManager's record of every connection past Hello, and the rules that
admit or refuse a new one (peer limits after geth's dial ratio, the bad list, duplicates).

Pure bookkeeping without threads or sockets, so that the rules are tested on their own.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from khipu.p2p.errors import DisconnectReason
from khipu.p2p.peers.scoring import DEFAULT_THRESHOLD, BadList, PeerScore

DEFAULT_DIAL_RATIO = 3  # geth: at most a third of the peers are dialled, the rest inbound


class Direction(enum.Enum):
    """Who opened the TCP connection."""

    INBOUND = "inbound"
    OUTBOUND = "outbound"


@dataclass(frozen=True)
class PeerLimits:
    """How many peers, and how they split between dialled and accepted (geth's `--maxpeers` and
    DialRatio: `max_peers // dial_ratio` dialled, at least 1, the rest inbound)."""

    max_peers: int
    dial_ratio: int = DEFAULT_DIAL_RATIO

    def __post_init__(self) -> None:
        if self.max_peers < 0 or self.dial_ratio < 1:
            raise ValueError(f"need max_peers >= 0 and dial_ratio >= 1, got {self}")

    @property
    def max_dialled(self) -> int:
        """Outbound connections we open at most."""
        if self.max_peers == 0:
            return 0
        return max(1, self.max_peers // self.dial_ratio)

    @property
    def max_inbound(self) -> int:
        """Inbound connections we accept at most."""
        return self.max_peers - self.max_dialled


@dataclass
class Connection:
    """One connection the PeerManager knows of, from admission until it ends."""

    connection_id: int
    node_id: bytes
    direction: Direction
    remote_address: str
    client_id: str
    static: bool = False
    since: float = 0.0
    active: bool = False  # Status exchanged and a peer actor runs for it
    actor_name: str | None = None
    score: PeerScore = field(init=False)
    caps: tuple[str, ...] = ()
    protocols: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.score = PeerScore(self.node_id, DEFAULT_THRESHOLD)

    @property
    def label(self) -> str:
        """How logs name the peer: short id and client."""
        return f"{self.node_id.hex()[:16]} ({self.client_id})"


@dataclass(frozen=True)
class Admission:
    """The answer to a new connection: admitted (possibly replacing another) or refused."""

    admitted: bool
    reason: DisconnectReason | None = None
    why: str = ""
    replaces: int | None = None  # the connection id that the admitted one supersedes


def keeps_new_connection(local_id: bytes, old: Connection, new: Connection) -> bool:
    """Two connections between the same nodes: both sides keep the one opened by the node with
    the lower id, so that simultaneous dials end with one connection and not none. Of two in the
    same direction the newer wins (the peer restarted; the old socket is likely dead)."""
    if old.direction is new.direction:
        return True
    lower_dialled_new = (local_id < new.node_id) == (new.direction is Direction.OUTBOUND)
    return lower_dialled_new


class PeerRoster:
    """The connections of one node and the admission rules over them."""

    def __init__(
        self,
        local_id: bytes,
        limits: PeerLimits,
        bad_list: BadList,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.local_id = local_id
        self.limits = limits
        self.bad_list = bad_list
        self.clock = clock
        self.connections: dict[int, Connection] = {}

    def by_node(self, node_id: bytes) -> Connection | None:
        """The connection to `node_id`, if any."""
        return next((c for c in self.connections.values() if c.node_id == node_id), None)

    def count(self, direction: Direction | None = None) -> int:
        """Connections in `direction` (all when None)."""
        return sum(
            1 for c in self.connections.values() if direction is None or c.direction is direction
        )

    def admit(self, connection: Connection) -> Admission:
        """Decide on `connection` (Hello done, Status not yet) and record it if admitted.

        Refuses a bad-listed node (useless peer), a duplicate that loses the tie-break (already
        connected), and anything over the limits (too many peers); a static peer is let in over
        the inbound share but not over `max_peers`.
        """
        entry = self.bad_list.get(connection.node_id)
        if entry is not None:
            return Admission(False, DisconnectReason.USELESS_PEER, f"bad-listed: {entry.reason}")
        existing = self.by_node(connection.node_id)
        replaces = None
        if existing is not None:
            if not keeps_new_connection(self.local_id, existing, connection):
                return Admission(
                    False, DisconnectReason.ALREADY_CONNECTED, "already connected to this node"
                )
            replaces = existing.connection_id
        others = [c for c in self.connections.values() if c.connection_id != replaces]
        if len(others) >= self.limits.max_peers:
            return Admission(
                False, DisconnectReason.TOO_MANY_PEERS, f"{len(others)} peers (maxpeers)"
            )
        if connection.direction is Direction.INBOUND and not connection.static:
            inbound = sum(1 for c in others if c.direction is Direction.INBOUND)
            if inbound >= self.limits.max_inbound:
                return Admission(
                    False, DisconnectReason.TOO_MANY_PEERS, f"{inbound} inbound peers (limit)"
                )
        if replaces is not None:
            self.connections.pop(replaces, None)
        connection.since = self.clock()
        self.connections[connection.connection_id] = connection
        return Admission(True, replaces=replaces)

    def remove(self, connection_id: int) -> Connection | None:
        """Forget a connection that ended; None if it was not (or no longer) recorded."""
        return self.connections.pop(connection_id, None)
