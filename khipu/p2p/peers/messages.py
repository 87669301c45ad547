"""Messages between the asyncio side of a connection, the PeerManager and the peer actors.

Messages sent from the event loop carry a `reply` callable instead of being asked: the loop must
never block on an actor. The callable is thread-safe (it hands the answer back to the loop).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from khipu.p2p.errors import DisconnectReason
from khipu.p2p.eth.messages import BlockRange
from khipu.p2p.peers.roster import Admission, Direction
from khipu.p2p.peers.scoring import Offence

if TYPE_CHECKING:
    from khipu.p2p.peers.connection import PeerLink


# -- from the event loop to the PeerManager ------------------------------------------------------


@dataclass(frozen=True)
class PeerRangeUpdated:
    """An eth/69 peer announced a new served block range (BlockRangeUpdate)."""

    connection_id: int
    block_range: BlockRange


@dataclass(frozen=True)
class AdmitPeer:
    """A connection finished Hello: may it stay? Answered with an Admission through `reply`."""

    connection_id: int
    node_id: bytes
    direction: Direction
    remote_address: str
    client_id: str
    caps: tuple[str, ...]
    reply: Callable[[Admission], None]


@dataclass(frozen=True)
class PeerReady:
    """An admitted connection exchanged Status: start its peer actor and answer with the actor's
    ref (or None when the manager will not have it any more)."""

    connection_id: int
    link: PeerLink
    protocols: dict[str, object]
    reply: Callable[[Any], None]


@dataclass(frozen=True)
class PeerLeft:
    """A connection ended (or never got past admission or Status); `offence` when the peer broke
    the protocol and was disconnected for it."""

    connection_id: int
    node_id: bytes
    why: str
    offence: Offence | None = None
    reason: str = "unknown"  # a short label for metrics: 'remote_too_many_peers', 'ping_timeout'


@dataclass(frozen=True)
class DialFailed:
    """A dial did not reach Hello."""

    node_id: bytes
    why: str


@dataclass(frozen=True)
class DialConnected:
    """A dial reached Hello (admission follows as for any connection)."""

    node_id: bytes


# -- to the PeerManager from peer actors and other components ------------------------------------


@dataclass(frozen=True)
class ReportOffence:
    """Somebody (a peer actor, sync) caught a peer misbehaving: lower its score."""

    node_id: bytes
    offence: Offence
    detail: str = ""


@dataclass(frozen=True)
class DropPeer:
    """A peer actor's score fell to the threshold: disconnect and bad-list the peer."""

    connection_id: int
    node_id: bytes
    reason: DisconnectReason
    why: str


@dataclass(frozen=True)
class PeerTick:
    """The PeerManager's own timer: dial, and announce a new head."""


# -- to a peer actor ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServeRequest:
    """An eth request from the peer; `reply` takes `(code, payload)`, None (no request) or the
    PeerMisbehaved to disconnect with."""

    code: int
    payload: bytes
    reply: Callable[[Any], None]


@dataclass(frozen=True)
class RequestFinished:
    """An eth request the peer actor made came back: `result` or `error`."""

    purpose: str
    result: Any = None
    error: BaseException | None = None


@dataclass(frozen=True)
class Penalise:
    """An offence reported to the manager, forwarded to the offending peer's actor."""

    offence: Offence
    detail: str


@dataclass(frozen=True)
class AnnounceBlock:
    """Tell the peer of a new head block (NewBlockHashes, pre-merge chains only)."""

    block_hash: bytes
    number: int


@dataclass(frozen=True)
class AnnounceRange:
    """Tell an eth/69 peer the full blocks we now serve (BlockRangeUpdate)."""

    block_range: BlockRange
