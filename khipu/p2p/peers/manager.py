"""PeerManager: the supervisor of the peer actors and the node's peer policy.

It admits or refuses every connection past Hello (limits, bad list, duplicates), starts a
PeerActor for each peer that exchanged Status, dials static, boot and discovered nodes into the
free outbound slots with backoff, drops and bad-lists peers whose score fell to the threshold,
announces new pre-merge heads (NewBlockHashes) and, to eth/69 peers, the new served block range
(BlockRangeUpdate), and publishes the peers for admin_peers, khipu_health and metrics.

The peer actors are temporary children: a crashed one is not restarted, its peer is
disconnected, and the manager goes on. A restarted manager starts with no peers (the old
incarnation's actors were stopped with it, which disconnected their peers); its bad list is read
back from the settings' `bad_list_path` (empty without one).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pykka

from khipu.actors import (
    ChildContext,
    ChildSpec,
    Directive,
    RequestRejected,
    RestartPolicy,
    SupervisionStrategy,
    Supervisor,
)
from khipu.logs import event
from khipu.p2p.abc import ChainReader
from khipu.p2p.errors import DisconnectReason
from khipu.p2p.eth.messages import BlockRange, header_facts
from khipu.p2p.keys import Enode
from khipu.p2p.peers.board import PeerBoard, PeerMetrics
from khipu.p2p.peers.connection import PeerLink
from khipu.p2p.peers.dialing import DialPlan
from khipu.p2p.peers.messages import (
    AdmitPeer,
    AnnounceBlock,
    AnnounceRange,
    DialConnected,
    DialFailed,
    DropPeer,
    PeerLeft,
    PeerRangeUpdated,
    PeerReady,
    PeerTick,
    Penalise,
    ReportOffence,
)
from khipu.p2p.peers.peer_actor import PeerActor
from khipu.p2p.peers.roster import Connection, Direction, PeerLimits, PeerRoster
from khipu.p2p.peers.scoring import BadList, Offence
from khipu.p2p.peers.validation import is_proof_of_work

log = logging.getLogger("khipu.p2p")

PEER_ACTOR_STOP_TIMEOUT = 2.0


class PeerHost(Protocol):
    """What the PeerManager needs of the devp2p host (khipu.p2p.host.P2PHost)."""

    @property
    def node_id(self) -> bytes:
        """Our node id (public key)."""
        ...

    @property
    def chain(self) -> ChainReader:
        """The chain served to peers."""
        ...

    @property
    def running(self) -> bool:
        """True while the host can dial."""
        ...

    def dial(self, enode: Enode) -> None:
        """Connect to `enode` in the background; the outcome comes back as DialConnected or
        DialFailed, then as for any connection."""
        ...

    def discovered(self) -> list[Enode]:
        """The nodes discovery knows now (empty without discovery)."""
        ...


@dataclass(frozen=True)
class PeerSettings:
    """The PeerManager's policy."""

    limits: PeerLimits
    static_nodes: tuple[Enode, ...] = ()
    boot_nodes: tuple[Enode, ...] = ()
    dial: bool = True  # False: accept inbound only
    bad_peer_expiry: float = 3600.0
    bad_list_path: Path | None = None  # kept there across restarts (DATADIR/badpeers.json)
    tick_interval: float = 1.0
    request_timeout: float = 10.0
    range_update_blocks: int = 32  # EIP-7642: a BlockRangeUpdate at most once per 32 blocks
    range_update_interval: float = 120.0  # devp2p: or about every two minutes when it moved
    dial_plan: Callable[[], DialPlan] = field(default=DialPlan)


class PeerManager(Supervisor):
    """Runs under the node's supervisor; its children are the peer actors."""

    def __init__(
        self,
        context: ChildContext | None,
        host: PeerHost,
        settings: PeerSettings,
        board: PeerBoard | None = None,
        metrics: PeerMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        strategy = SupervisionStrategy(decider=lambda _error: Directive.STOP)
        super().__init__(context, "PeerManager", [], strategy, clock=clock)
        self.host = host
        self.settings = settings
        self.board = board if board is not None else PeerBoard()
        self.board.max_peers = settings.limits.max_peers
        self.metrics = metrics if metrics is not None else PeerMetrics()
        self.bad_list = BadList(settings.bad_peer_expiry, clock, settings.bad_list_path)
        self.roster = PeerRoster(host.node_id, settings.limits, self.bad_list, clock)
        self.plan = settings.dial_plan()
        self.links: dict[int, PeerLink] = {}
        self._static_ids = {enode.node_id for enode in settings.static_nodes}
        self._head: bytes | None = None
        self._range_sent: tuple[int, float] | None = None  # (latest block, when) last announced

    def on_start(self) -> None:
        super().on_start()
        self._timers.every(self.settings.tick_interval, PeerTick())
        self._publish_peers()

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, AdmitPeer):
            self._admit(message)
        elif isinstance(message, PeerReady):
            message.reply(self._start_peer(message))
        elif isinstance(message, PeerLeft):
            self._left(message)
        elif isinstance(message, DropPeer):
            self.drop(message.connection_id, message.node_id, message.reason, message.why)
        elif isinstance(message, ReportOffence):
            self.report_offence(message.node_id, message.offence, message.detail)
        elif isinstance(message, DialFailed):
            delay = self.plan.failed(message.node_id)
            self.metrics.dials.labels("failed").inc()
            log.debug(
                "dial %s failed (%s); next try in %.0fs",
                message.node_id.hex()[:16],
                message.why,
                delay,
            )
        elif isinstance(message, DialConnected):
            self.plan.connected(message.node_id)
            self.metrics.dials.labels("connected").inc()
        elif isinstance(message, PeerRangeUpdated):
            self._range_updated(message)
        elif isinstance(message, PeerTick):
            self._tick()
        else:
            return super().on_receive(message)
        return None

    def active_links(self) -> list[PeerLink]:
        """The links of the peers past Status, for a component that requests from peers (sync):
        it runs requests with `link.submit(lambda: link.eth.get_block_headers(...))` and reports
        what a peer did wrong with ReportOffence."""
        return [
            self.links[c.connection_id]
            for c in self.roster.connections.values()
            if c.active and c.connection_id in self.links
        ]

    def peer_actor_names(self) -> list[str]:
        """The names of the running peer actors (for tests and diagnostics)."""
        return [slot.name for slot in self.table.slots]

    # -- admission and peer actors -------------------------------------------------------------

    def _admit(self, message: AdmitPeer) -> None:
        connection = Connection(
            message.connection_id,
            message.node_id,
            message.direction,
            message.remote_address,
            message.client_id,
            static=message.node_id in self._static_ids,
            caps=message.caps,
        )
        admission = self.roster.admit(connection)
        if admission.admitted and admission.replaces is not None:
            self._end_connection(admission.replaces, DisconnectReason.ALREADY_CONNECTED)
        elif not admission.admitted:
            name = admission.reason.name.lower() if admission.reason else "refused"
            self.metrics.refused.labels(name).inc()
        message.reply(admission)

    def _start_peer(self, message: PeerReady) -> pykka.ActorRef[Any] | None:
        connection = self.roster.connections.get(message.connection_id)
        if connection is None or self._stopping:
            return None  # replaced or refused meanwhile
        link = message.link
        eth = link.eth
        head = eth.remote_status.head_hash if eth.remote_status is not None else b""
        started: list[pykka.ActorRef[Any]] = []

        def factory(context: ChildContext) -> pykka.ActorRef[Any]:
            ref: pykka.ActorRef[Any] = PeerActor.start(
                context,
                link,
                self.host.chain,
                self.actor_ref,
                connection.score,
                head,
                self.settings.request_timeout,
                self.metrics,
            )
            started.append(ref)
            return ref

        name = f"peer-{connection.node_id.hex()[:12]}-{connection.connection_id}"
        spec = ChildSpec(
            name, factory, restart=RestartPolicy.TEMPORARY, stop_timeout=PEER_ACTOR_STOP_TIMEOUT
        )
        try:
            self.add_child(spec)
        except RequestRejected as exc:
            log.debug("no actor for peer %s: %s", connection.label, exc)
            return None
        if not started or not started[0].is_alive():
            return None
        connection.actor_name = name
        connection.protocols = message.protocols
        connection.active = True
        self.links[connection.connection_id] = link
        event(
            log,
            "peer connected",
            peer=connection.label,
            direction=connection.direction.value,
            address=connection.remote_address,
            peers=self.board.peer_count() + 1,
        )
        self._publish_peers()
        return started[0]

    def _left(self, message: PeerLeft) -> None:
        connection = self.roster.remove(message.connection_id)
        self.links.pop(message.connection_id, None)
        if connection is None:
            if message.offence is not None:  # broke the protocol before it was admitted
                self.bad_list.add(message.node_id, f"{message.offence.value}: {message.why}")
            return
        if connection.direction is Direction.OUTBOUND:
            if connection.active:
                self.plan.ended(connection.node_id)
            else:  # dialled but no peer came of it (another chain, refused us): back off
                self.plan.failed(connection.node_id)
        self._stop_actor(connection)
        if connection.active:
            event(
                log,
                "peer disconnected",
                peer=connection.label,
                why=message.why,
                peers=self.board.peer_count() - 1,
            )
            self.metrics.disconnects.labels(message.reason).inc()
        if message.offence is not None:
            self.metrics.offences.labels(message.offence.value).inc()
            if connection.score.penalise(message.offence, message.why):
                self._bad_list(connection.node_id, connection.label, message.why)
        self._publish_peers()

    def _range_updated(self, message: PeerRangeUpdated) -> None:
        """Show an eth/69 peer's new range (and head) in admin_peers."""
        connection = self.roster.connections.get(message.connection_id)
        if connection is None:
            return
        current = connection.protocols.get("eth")
        info: dict[str, object] = dict(current) if isinstance(current, dict) else {}
        block_range = message.block_range
        info.update(
            head="0x" + block_range.latest_hash.hex(),
            earliestBlock=block_range.earliest,
            latestBlock=block_range.latest,
        )
        connection.protocols = {**connection.protocols, "eth": info}
        self._publish_peers()

    def _stop_actor(self, connection: Connection) -> None:
        if connection.actor_name is None:
            return
        # RequestRejected: it crashed and was forgotten already.
        with contextlib.suppress(RequestRejected):
            self.remove_child(connection.actor_name, "peer disconnected")

    def _end_connection(self, connection_id: int, reason: DisconnectReason) -> None:
        """Disconnect a connection the roster no longer holds and stop its actor."""
        link = self.links.pop(connection_id, None)
        if link is not None:
            link.disconnect(reason)
        for slot in list(self.table.slots):
            if slot.name.endswith(f"-{connection_id}"):
                with contextlib.suppress(RequestRejected):
                    self.remove_child(slot.name, reason.name.lower())

    # -- scoring -------------------------------------------------------------------------------

    def report_offence(self, node_id: bytes, offence: Offence, detail: str) -> None:
        """An offence found outside the peer's actor (e.g. by sync): the actor scores it."""
        connection = self.roster.by_node(node_id)
        if connection is None:
            return
        ref = self._peer_actor(connection)
        if ref is not None:
            ref.tell(Penalise(offence, detail))  # the actor scores and counts it
            return
        self.metrics.offences.labels(offence.value).inc()
        if connection.score.penalise(offence, detail):
            self.drop(connection.connection_id, node_id, DisconnectReason.USELESS_PEER, detail)

    def drop(self, connection_id: int, node_id: bytes, reason: DisconnectReason, why: str) -> None:
        """Disconnect the peer with `reason` and bad-list it for the configured expiry."""
        connection = self.roster.remove(connection_id)
        label = connection.label if connection is not None else node_id.hex()[:16]
        if connection is not None and connection.direction is Direction.OUTBOUND:
            self.plan.ended(node_id)
        self._bad_list(node_id, label, why)
        self.metrics.disconnects.labels(reason.name.lower()).inc()
        self._publish_peers()  # before the peer hears of it: what it sees, the board shows
        self._end_connection(connection_id, reason)

    def _bad_list(self, node_id: bytes, label: str, why: str) -> None:
        entry = self.bad_list.add(node_id, why)
        event(
            log, "peer bad-listed", peer=label, why=why, seconds=round(entry.until - self.clock())
        )

    def _peer_actor(self, connection: Connection) -> pykka.ActorRef[Any] | None:
        for slot in self.table.slots:
            runtime = getattr(slot, "runtime", None)
            if slot.name == connection.actor_name and runtime is not None:
                ref: pykka.ActorRef[Any] | None = getattr(runtime, "ref", None)
                return ref
        return None

    # -- dialling and announcing ---------------------------------------------------------------

    def _tick(self) -> None:
        if self.settings.dial and not self._stopping and self.host.running:
            static = [*self.settings.static_nodes, *self.settings.boot_nodes]
            try:
                discovered = self.host.discovered()
            except Exception as exc:  # the host is not running (yet)
                log.debug("no discovered nodes: %r", exc)
                discovered = []
            for enode in self.plan.choose(self.roster, static, discovered):
                log.debug("dialling %s", enode)
                try:
                    self.host.dial(enode)
                except Exception as exc:
                    self.plan.failed(enode.node_id)
                    log.debug("cannot dial %s: %r", enode, exc)
        self._announce_new_head()
        self._publish_peers()

    def _announce_new_head(self) -> None:
        """Send NewBlockHashes for a new head to every peer, but only for a proof-of-work head:
        EIP-3675 forbids announcing descendants of the terminal PoW block (after the merge the
        consensus client propagates blocks)."""
        try:
            header = self.host.chain.head_header()
        except Exception as exc:  # the store is restarting
            log.debug("head unavailable: %r", exc)
            return
        facts = header_facts(header)
        previous, self._head = self._head, facts.block_hash
        self._announce_range(facts.number, facts.block_hash)
        if previous is None or previous == facts.block_hash or not is_proof_of_work(header):
            return
        self._tell_active(AnnounceBlock(facts.block_hash, facts.number))

    def _announce_range(self, latest: int, latest_hash: bytes) -> None:
        """Send BlockRangeUpdate to the eth/69 peers (their actors skip eth/68 ones) once the
        head moved `range_update_blocks` past the last announced one, or moved at all after
        `range_update_interval` seconds. (A new peer learns the range from our Status.)"""
        if self._range_sent is None:  # the first look at the head: what Status told peers
            self._range_sent = (latest, self.clock())
        last_latest, last_time = self._range_sent
        moved = abs(latest - last_latest)
        due = self.clock() - last_time >= self.settings.range_update_interval
        if moved >= self.settings.range_update_blocks or (moved and due):
            self._range_sent = (latest, self.clock())
            # earliest 0: an archive node serves every block's body and receipts
            self._tell_active(AnnounceRange(BlockRange(0, latest, latest_hash)))

    def _tell_active(self, message: Any) -> None:
        for connection in list(self.roster.connections.values()):
            ref = self._peer_actor(connection) if connection.active else None
            if ref is not None:
                ref.tell(message)

    def _publish_peers(self) -> None:
        connections = list(self.roster.connections.values())
        bad = self.bad_list.entries()
        self.board.publish(connections, bad)
        for direction in Direction:
            count = sum(1 for c in connections if c.active and c.direction is direction)
            self.metrics.peers.labels(direction.value).set(count)
        self.metrics.bad_listed.set(len(bad))


def peer_manager_spec(
    host: PeerHost,
    settings: PeerSettings,
    board: PeerBoard,
    metrics: PeerMetrics | None = None,
    name: str = "PeerManager",
) -> ChildSpec:
    """The PeerManager as a child of the node's supervisor (stopping it stops every peer)."""

    def start(context: ChildContext) -> pykka.ActorRef[Any]:
        ref: pykka.ActorRef[Any] = PeerManager.start(context, host, settings, board, metrics)
        return ref

    return ChildSpec(name, start, stop_timeout=30.0)
