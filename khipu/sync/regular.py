"""RegularSync: the archive node's full sync from its peers, block by block from our head.

Every block is downloaded (headers, then bodies checked against their headers' roots), executed and
committed by the StorageWriter, as an archive node must: nothing is taken on trust from a peer.

The sync is a chain of small steps (`ContinueSync` told to itself), like the Importer's: one network
request or one writer request in flight at a time, so the actor keeps answering heartbeats. It asks
the peer with the highest head (learnt from the head header each peer announced in its Status) for
up to `batch` headers after our head, checks that they hang from our head, fetches their bodies and
hands the blocks to the StorageWriter in order. Everything it knows comes from the peers and the
store, so a restarted incarnation simply asks the writer for the head and goes on; a writer that
dies holding a block is handled the same way (WriterLink).

A peer's failures count against it through PeerRequests (slow, lying, malformed); a block the writer
rejects as invalid counts as a lie. A peer whose chain does not continue ours is left alone until
our head moves (reorgs of stored blocks are not supported: number-addressed topics are
append-only).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pykka
import rlp
from eth.abc import BlockAPI

from khipu.actors import ChildContext, SupervisedActor
from khipu.actors.metrics import NodeMetrics
from khipu.actors.timers import ActorTimers
from khipu.chain.importer import MalformedBlock, decode_block
from khipu.chain.rules import ChainRules
from khipu.logs import event
from khipu.node_actors.faults import FaultPlan
from khipu.node_actors.messages import BlockImported, GetHead, ImportBlock, StoredHead
from khipu.node_actors.progress import ImportStatus, ProgressReporter
from khipu.node_actors.storage_writer import BlockRejected
from khipu.node_actors.writer_link import WAITING, WriterLink
from khipu.p2p.eth.messages import HeaderRequest
from khipu.p2p.keys import keccak256
from khipu.p2p.peers.connection import PeerLink
from khipu.p2p.peers.messages import ReportOffence
from khipu.p2p.peers.requests import PeerRequests
from khipu.p2p.peers.scoring import Offence

log = logging.getLogger("khipu.sync")

BATCH = 64  # headers (and bodies) per request; geth asks 192 headers, 128 bodies
BUSY_IMPORT = ("starting", "importing")  # the Importer moves the head: the sync waits


@dataclass(frozen=True)
class ContinueSync:
    """RegularSync's own reminder: take the next step."""


@dataclass
class PeerView:
    """What the sync knows of one connected peer."""

    link: PeerLink
    head_number: int | None = None  # the number of the head it announced in Status
    asked_head: bool = False
    nothing_after: int | None = None  # our head when it had no continuation of our chain
    probed: float = field(default_factory=time.monotonic)  # when we last asked past our head

    @property
    def label(self) -> str:
        return self.link.label


@dataclass
class _Fetch:
    """A network request in flight: what it is for, from whom, and its future."""

    purpose: str  # "head", "headers", "bodies"
    view: PeerView
    future: concurrent.futures.Future[Any]
    headers: list[bytes] = field(default_factory=list)


class RegularSync(SupervisedActor):
    """Downloads, checks and imports the blocks the best peer has beyond our head.

    `peers()` gives the links of the peers past Status (the PeerManager's `active_links`);
    `report` takes the ReportOffence of a peer that sent an invalid block.
    """

    def __init__(
        self,
        context: ChildContext | None,
        rules: ChainRules,
        peers: Callable[[], list[PeerLink]],
        report: Callable[[Any], None],
        *,
        status: ImportStatus,
        metrics: NodeMetrics | None = None,
        faults: FaultPlan | None = None,
        writer_path: str = "StorageWriter",
        batch: int = BATCH,
        request_timeout: float = 10.0,
        idle_delay: float = 1.0,
        probe_interval: float = 12.0,
        progress_interval: float = 10.0,
        poll: float = 0.05,
    ) -> None:
        super().__init__(context)
        if context is None:
            raise ValueError("RegularSync finds the StorageWriter through its supervision tree")
        self.rules = rules
        self.peers = peers
        self.report = report
        self.status = status
        self.faults = faults if faults is not None else FaultPlan()
        self.writer_path = writer_path
        self.batch = batch
        self.request_timeout = request_timeout
        self.idle_delay = idle_delay
        self.probe_interval = probe_interval
        self._timers = ActorTimers(self.actor_ref)
        self._writer = WriterLink.in_tree(context, writer_path, poll)
        self._progress = ProgressReporter(status, log, "sync progress", progress_interval, metrics)
        self._views: dict[bytes, PeerView] = {}
        self._head: StoredHead | None = None
        self._queue: list[tuple[BlockAPI, PeerView]] = []
        self._fetch: _Fetch | None = None
        self._caught_up_at: int | None = None  # the head we last said we caught up at

    # -- life cycle ----------------------------------------------------------------------------

    def on_start(self) -> None:
        self.actor_ref.tell(ContinueSync())

    def on_stop(self) -> None:
        self._timers.cancel_all()

    def on_failure(self, *_exc_info: Any) -> None:
        self._timers.cancel_all()

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, ContinueSync):
            self.step()
            return None
        return super().on_receive(message)

    # -- the steps -----------------------------------------------------------------------------

    def step(self) -> None:
        """Collect what arrived (a writer reply, a network answer), then start the next thing."""
        if self._writer.pending is not None:
            reply = self._writer.collect()
            if reply is WAITING:
                self._again()
                return
            self._writer_replied(reply)
        if self._fetch is not None:
            if not self._fetch.future.done():
                return  # its done-callback tells us
            fetch, self._fetch = self._fetch, None
            self._fetched(fetch)
            if self._fetch is not None:
                return  # the answer asked for more (the bodies of the headers)
        if self.status.stage == "import" and self.status.state in BUSY_IMPORT:
            self._again(self.idle_delay)  # block files first
            return
        if self._head is None:
            self._again(0.0 if self._writer.ask(GetHead()) else self.idle_delay)
        elif self._queue:
            self.faults.check("RegularSync.block")
            block, view = self._queue[0]
            message = ImportBlock(block, f"peer {view.label}")
            self._again(0.0 if self._writer.ask(message) else self.idle_delay)
        else:
            self._next_request()

    def _writer_replied(self, reply: object) -> None:
        if isinstance(reply, StoredHead):
            self._head = reply
            self.status.update(head=reply.number)
        elif isinstance(reply, BlockImported):
            self._queue.pop(0)
            self._head = StoredHead(reply.number, reply.block_hash, reply.state_root)
            if not reply.already_known:
                self._progress.record(reply.number, reply.transactions, reply.gas_used)
        elif isinstance(reply, BlockRejected):
            _block, view = self._queue[0]
            self._queue.clear()
            self._offence(view, Offence.LYING, f"invalid block: {reply}")
            self._views.pop(view.link.node_id, None)
        else:  # LOST with a writer incarnation: learn the head again, download again
            self._head = None
            self._queue.clear()

    def _next_request(self) -> None:
        assert self._head is not None
        self._refresh_views()
        unasked = next((v for v in self._views.values() if not v.asked_head), None)
        if unasked is not None:
            unasked.asked_head = True
            status = unasked.link.eth.remote_status
            if status is not None:
                request = HeaderRequest(status.head_hash, 1)
                self._start(_Fetch("head", unasked, self._requests(unasked).headers(request)))
                return
        head = self._head.number
        ahead = [
            view
            for view in self._views.values()
            if view.head_number is not None
            and view.head_number > head
            and view.nothing_after != head
        ]
        if not ahead:
            self._caught_up(head)
            probe = self._probe_due()
            if probe is None:
                self._again(self.idle_delay)
                return
            ahead = [probe]  # it may have grown since its Status: ask what follows our head
        best = max(ahead, key=lambda view: view.head_number or 0)
        target = best.head_number if best.head_number is not None else head
        amount = max(1, min(self.batch, target - head))
        if target > head:
            if self.status.stage != "sync" or self.status.state != "syncing":
                self.status.update(stage="sync", state="syncing", starting_block=head, error=None)
                event(log, "sync starting", head=head, target=target, peer=best.label)
            self.status.update(target=target, peer=best.label)
        else:
            amount = self.batch  # a probe: as much as the peer has
        request = HeaderRequest(head + 1, amount)
        self._start(_Fetch("headers", best, self._requests(best).headers(request)))

    def _fetched(self, fetch: _Fetch) -> None:
        view = fetch.view
        try:
            answer = fetch.future.result()
        except Exception as error:  # PeerRequests has scored it; try again, maybe elsewhere
            log.info("sync: %s request to peer %s failed: %r", fetch.purpose, view.label, error)
            if fetch.purpose != "head":
                view.nothing_after = self._head.number if self._head is not None else None
            return
        if fetch.purpose == "head":
            if answer:
                view.head_number = _header_number(answer[0])
        elif fetch.purpose == "headers":
            self._headers_arrived(view, answer)
        else:
            self._bodies_arrived(view, fetch.headers, answer)

    def _headers_arrived(self, view: PeerView, headers: list[bytes]) -> None:
        assert self._head is not None
        if not headers or rlp.decode(headers[0])[0] != self._head.block_hash:
            why = "no headers" if not headers else "headers that do not continue our chain"
            log.info("sync: peer %s sent %s after #%d", view.label, why, self._head.number)
            view.nothing_after = self._head.number
            return
        last = _header_number(headers[-1]) or 0
        view.head_number = max(view.head_number or 0, last)
        if last > self._head.number and self.status.stage == "sync":
            self.status.update(target=max(self.status.target or 0, view.head_number))
        fetch = _Fetch("bodies", view, self._requests(view).bodies(headers), headers)
        self._start(fetch)

    def _bodies_arrived(self, view: PeerView, headers: list[bytes], bodies: list[bytes]) -> None:
        if not bodies:
            view.nothing_after = self._head.number if self._head is not None else None
            return
        for header, body in zip(headers, bodies, strict=False):
            try:
                block = assemble_block(header, body, self.rules)
            except MalformedBlock as error:
                self._offence(view, Offence.MALFORMED, str(error))
                self._queue.clear()
                return
            self._queue.append((block, view))

    # -- helpers -------------------------------------------------------------------------------

    def _refresh_views(self) -> None:
        try:
            links = {link.node_id: link for link in self.peers()}
        except Exception as error:  # the PeerManager is restarting: no peers for now
            log.debug("sync: no peer list: %r", error)
            links = {}
        for node_id in list(self._views):
            if node_id not in links or self._views[node_id].link is not links[node_id]:
                del self._views[node_id]
        for node_id, link in links.items():
            view = self._views.setdefault(node_id, PeerView(link))
            block_range = getattr(link.eth, "remote_range", None)  # eth/69 tells its latest block
            if block_range is not None and block_range.latest > (view.head_number or 0):
                view.head_number = block_range.latest
                view.nothing_after = None

    def _caught_up(self, head: int) -> None:
        """No peer has more: say so once, if the sync had been running (before it first runs,
        the status stays the Importer's)."""
        state = "synced" if self._views else "waiting"
        if self.status.stage != "sync" or self.status.state == state:
            return
        self.status.update(state=state, peer=None)
        self._progress.idle()
        if state == "synced" and self._caught_up_at != head:
            self._caught_up_at = head
            event(log, "sync caught up", head=head, peers=len(self._views))

    def _probe_due(self) -> PeerView | None:
        """The peer to ask whether its chain grew past our head, once every `probe_interval`
        seconds per peer (its Status head is fixed at the handshake)."""
        now = time.monotonic()
        due = [v for v in self._views.values() if now - v.probed >= self.probe_interval]
        if not due:
            return None
        view = min(due, key=lambda v: v.probed)
        view.probed = now
        view.nothing_after = None
        return view

    def _requests(self, view: PeerView) -> PeerRequests:
        return PeerRequests(view.link, self.report, self.request_timeout)

    def _start(self, fetch: _Fetch) -> None:
        self._fetch = fetch
        ref = self.actor_ref

        def arrived(_future: concurrent.futures.Future[Any]) -> None:
            with contextlib.suppress(pykka.ActorDeadError):
                ref.tell(ContinueSync())

        fetch.future.add_done_callback(arrived)

    def _offence(self, view: PeerView, offence: Offence, detail: str) -> None:
        log.warning("sync: peer %s %s: %s", view.label, offence.value, detail)
        with contextlib.suppress(Exception):  # the manager is down: its peers go with it
            self.report(ReportOffence(view.link.node_id, offence, detail))

    def _again(self, delay: float = 0.0) -> None:
        if delay <= 0:
            with contextlib.suppress(pykka.ActorDeadError):
                self.actor_ref.tell(ContinueSync())
        else:
            self._timers.once(delay, ContinueSync())


def assemble_block(header: bytes, body: bytes, rules: ChainRules) -> BlockAPI:
    """The block of `header` and `body` (both RLP, as eth sends them) decoded with its fork's
    block class. Raises MalformedBlock if they do not make a block of that fork."""
    try:
        items = rlp.decode(body)
    except rlp.DecodingError as error:
        raise MalformedBlock(f"body of 0x{keccak256(header).hex()}: {error}") from None
    if not isinstance(items, list):
        raise MalformedBlock(f"body of 0x{keccak256(header).hex()} is not a list")
    return decode_block(rlp.encode([rlp.decode(header), *items]), rules)


def _header_number(header: bytes) -> int | None:
    try:
        return int.from_bytes(rlp.decode(header)[8], "big")
    except (rlp.DecodingError, IndexError, TypeError):
        return None
