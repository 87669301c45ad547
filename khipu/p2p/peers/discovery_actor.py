"""Discovery: the supervised actor that owns discv4's life and schedule (DESIGN.md's tree).

The UDP socket and the packet handling stay on the devp2p host's asyncio loop; this actor decides
when things happen there. It opens the service (adopting the one the host bound at start), bonds
with the boot nodes, then on its own timers runs lookups (refresh) and revalidation rounds, one at
a time, each on the host's loop. A round that raises fails the actor: its supervisor restarts it
with backoff, the dying incarnation closes the service, and the next one binds it again on the
same port and bonds again - discovery never stops silently.

What it found is published on the PeerBoard (`khipu_health`'s `p2p.discovery`).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import pykka

from khipu.actors import ChildContext, ChildSpec, SupervisedActor
from khipu.actors.timers import ActorTimers
from khipu.logs import event
from khipu.node_actors.faults import FaultPlan
from khipu.p2p.discv4.packets import Endpoint
from khipu.p2p.discv4.service import REFRESH_INTERVAL, REVALIDATE_INTERVAL, Discovery
from khipu.p2p.keys import Enode
from khipu.p2p.peers.board import PeerBoard

log = logging.getLogger("khipu.p2p")

ROUND_FAULT_POINT = "Discovery.round"
DiscoveryRound = Callable[[Discovery], Awaitable[object]]


class DiscoveryHost(Protocol):
    """What the Discovery actor needs of the devp2p host (khipu.p2p.host.P2PHost)."""

    @property
    def bootnodes(self) -> tuple[Enode, ...]:
        """The boot nodes to bond with first."""
        ...

    def open_discovery(self) -> None:
        """Serve discv4 on our UDP port (adopting an open service); raises P2PUnavailable."""
        ...

    def close_discovery(self) -> None:
        """Close the discv4 service; never raises."""
        ...

    def discovery_round(self, round_of: DiscoveryRound) -> concurrent.futures.Future[int]:
        """Run one round on the host's loop; the future gives the table size after it."""
        ...


class DiscoveryRoundFailed(RuntimeError):
    """A discovery round raised; names the round and the incarnation that ran it."""

    def __init__(self, kind: str, incarnation: int, cause: BaseException) -> None:
        super().__init__(f"discv4 {kind} round failed (incarnation {incarnation}): {cause!r}")
        self.kind = kind
        self.cause = cause


class DiscoveryStalled(RuntimeError):
    """A discovery round has not ended within the round timeout."""

    def __init__(self, kind: str, seconds: float) -> None:
        super().__init__(f"discv4 {kind} round still running after {seconds:.0f}s")
        self.kind = kind


@dataclass(frozen=True)
class DiscoverySettings:
    """The Discovery actor's schedule (geth's: a lookup every 30 min, a ping every 10 s)."""

    refresh_interval: float = REFRESH_INTERVAL
    revalidate_interval: float = REVALIDATE_INTERVAL
    round_timeout: float = 120.0  # a round running longer than this fails the actor


@dataclass(frozen=True)
class RoundDue:
    """The actor's timer: time for a `kind` round ("refresh" or "revalidate")."""

    kind: str


@dataclass(frozen=True)
class RoundEnded:
    """A round finished on the host's loop: the table size after it, or its error."""

    round_id: int
    table: int | None
    error: BaseException | None


@dataclass
class _Round:
    round_id: int
    kind: str
    started: float
    future: concurrent.futures.Future[int]


class DiscoveryActor(SupervisedActor):
    """Owns discv4 under the node's supervisor: one round at a time, restarted when one fails."""

    def __init__(
        self,
        context: ChildContext | None,
        host: DiscoveryHost,
        board: PeerBoard,
        settings: DiscoverySettings | None = None,
        *,
        faults: FaultPlan | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(context)
        self.host = host
        self.board = board
        self.settings = settings if settings is not None else DiscoverySettings()
        self.faults = faults if faults is not None else FaultPlan()
        self.clock = clock
        self.table = 0
        self.rounds = 0
        self._round: _Round | None = None
        self._round_ids = 0
        self._last_lookup: float | None = None
        self._timers = ActorTimers(self.actor_ref)

    def on_start(self) -> None:
        self.host.open_discovery()
        self._begin("bootstrap")
        self._timers.every(self.settings.refresh_interval, RoundDue("refresh"))
        self._timers.every(self.settings.revalidate_interval, RoundDue("revalidate"))
        self._publish()

    def on_stop(self) -> None:
        self._release()

    def _actor_loop_teardown(self) -> None:
        # A failed incarnation closes the socket before its successor binds the same port.
        self._release()
        super()._actor_loop_teardown()

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, RoundDue):
            self._due(message.kind)
        elif isinstance(message, RoundEnded):
            self._ended(message)
        else:
            return super().on_receive(message)
        return None

    # -- rounds ----------------------------------------------------------------------------------

    def _due(self, kind: str) -> None:
        """Start a `kind` round unless one runs; raise DiscoveryStalled if it runs for too long."""
        self.faults.check(ROUND_FAULT_POINT)
        running = self._round
        if running is not None:
            elapsed = self.clock() - running.started
            if elapsed > self.settings.round_timeout:
                raise DiscoveryStalled(running.kind, elapsed)
            return
        if self.table == 0 and self.host.bootnodes:
            kind = "bootstrap"  # the boot nodes were unreachable so far: bond again
        self._begin(kind)

    def _begin(self, kind: str) -> None:
        self._round_ids += 1
        round_id = self._round_ids
        future = self.host.discovery_round(self._round_of(kind))
        self._round = _Round(round_id, kind, self.clock(), future)
        ref = self.actor_ref

        def tell_ended(done: concurrent.futures.Future[int]) -> None:
            if done.cancelled():
                return
            error = done.exception()
            ended = RoundEnded(round_id, None if error else done.result(), error)
            # A dead incarnation's round means nothing to its successor, which runs its own.
            with contextlib.suppress(pykka.ActorDeadError):
                ref.tell(ended)

        future.add_done_callback(tell_ended)

    def _round_of(self, kind: str) -> DiscoveryRound:
        if kind == "bootstrap":
            nodes = [
                (b.node_id, Endpoint(b.ip, b.udp_port, b.tcp_port)) for b in self.host.bootnodes
            ]
            return lambda discovery: discovery.bootstrap(nodes)
        if kind == "refresh":
            return Discovery.refresh
        return Discovery.revalidate

    def _ended(self, message: RoundEnded) -> None:
        """Record a finished round; raise DiscoveryRoundFailed if it raised."""
        running = self._round
        if running is None or running.round_id != message.round_id:
            return
        self._round = None
        if message.error is not None:
            raise DiscoveryRoundFailed(running.kind, self.incarnation, message.error)
        self.rounds += 1
        self.table = message.table or 0
        if running.kind in ("bootstrap", "refresh"):
            self._last_lookup = time.time()
        if running.kind == "bootstrap":
            event(log, "discv4 bootstrapped", bootnodes=len(self.host.bootnodes), table=self.table)
        self._publish()

    def _publish(self) -> None:
        self.board.publish_discovery(
            {
                "table": self.table,
                "rounds": self.rounds,
                "last_lookup": self._last_lookup,
                "incarnation": self.incarnation,
            }
        )

    def _release(self) -> None:
        self._timers.cancel_all()
        if self._round is not None:
            self._round.future.cancel()
            self._round = None
        self.host.close_discovery()


def discovery_spec(
    host: DiscoveryHost,
    board: PeerBoard,
    settings: DiscoverySettings | None = None,
    *,
    faults: FaultPlan | None = None,
    name: str = "Discovery",
) -> ChildSpec:
    """The Discovery actor as a child of the node's supervisor (add it once the host runs)."""

    def start(context: ChildContext) -> pykka.ActorRef[Any]:
        ref: pykka.ActorRef[Any] = DiscoveryActor.start(
            context, host, board, settings, faults=faults
        )
        return ref

    return ChildSpec(name, start)
