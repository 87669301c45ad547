"""PeerActor: one connected peer's logic, supervised by the PeerManager.

It answers the peer's requests from the chain (store reads happen here, off the event loop),
checks the peer on arrival (its announced head header and that block's body must be served and
valid), keeps the peer's score, and asks the manager to drop the peer when the score falls to the
threshold. The socket stays on the event loop; the actor acts on it through its PeerLink.

A crash of this actor is the end of this peer only: it is not restarted (its supervisor runs it
as a temporary child) and its `on_failure` disconnects the peer.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
from typing import Any

import pykka

from khipu.actors import ChildContext, SupervisedActor
from khipu.p2p import wire
from khipu.p2p.abc import ChainReader
from khipu.p2p.errors import DisconnectReason, P2PError, PeerMisbehaved
from khipu.p2p.eth import messages as eth
from khipu.p2p.eth import serving
from khipu.p2p.eth.messages import HeaderRequest
from khipu.p2p.peers.board import PeerMetrics
from khipu.p2p.peers.connection import PeerLink
from khipu.p2p.peers.messages import (
    AnnounceBlock,
    AnnounceRange,
    DropPeer,
    Penalise,
    RequestFinished,
    ServeRequest,
)
from khipu.p2p.peers.requests import offence_of_request
from khipu.p2p.peers.scoring import Offence, PeerScore
from khipu.p2p.peers.validation import InvalidAnswer, check_body

log = logging.getLogger("khipu.p2p")

HEAD_HEADER, HEAD_BODY = "head header", "head body"


class PeerActor(SupervisedActor):
    """The logic of one peer; `score` is shared with the manager's record (written here only)."""

    def __init__(
        self,
        context: ChildContext | None,
        link: PeerLink,
        chain: ChainReader,
        manager: pykka.ActorRef[Any],
        score: PeerScore,
        head_hash: bytes,
        request_timeout: float = 10.0,
        metrics: PeerMetrics | None = None,
    ) -> None:
        super().__init__(context)
        self.link = link
        self.chain = chain
        self.manager = manager
        self.score = score
        self.head_hash = head_hash
        self.request_timeout = request_timeout
        self.metrics = metrics
        self.head_header: bytes | None = None
        self.checked = False  # the head check passed
        self._dropping = False

    # -- life cycle ----------------------------------------------------------------------------

    def on_start(self) -> None:
        request = HeaderRequest(self.head_hash, 1)
        self._request(
            HEAD_HEADER,
            lambda: self.link.eth.get_block_headers(request, self.request_timeout),
        )

    def on_stop(self) -> None:
        self.link.disconnect(DisconnectReason.CLIENT_QUITTING)  # nothing if it ended already

    def on_failure(self, *_exc_info: Any) -> None:
        self.link.disconnect(DisconnectReason.TCP_SUBSYSTEM_ERROR)

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, ServeRequest):
            message.reply(self.serve(message.code, message.payload))
        elif isinstance(message, RequestFinished):
            self._finished(message)
        elif isinstance(message, Penalise):
            self.penalise(message.offence, message.detail)
        elif isinstance(message, AnnounceRange):
            if self.link.eth.version >= 69:
                self.link.send("eth", eth.BLOCK_RANGE_UPDATE, message.block_range.encode())
        elif isinstance(message, AnnounceBlock):
            payload = wire.encode([[message.block_hash, message.number]])
            self.link.send("eth", eth.NEW_BLOCK_HASHES, payload)
        else:
            return super().on_receive(message)
        return None

    # -- serving -------------------------------------------------------------------------------

    def serve(self, code: int, payload: bytes) -> tuple[int, bytes] | PeerMisbehaved | None:
        """The answer to eth request `code` from our chain; the PeerMisbehaved (returned, not
        raised: the peer is at fault, not this actor) for a malformed request."""
        try:
            return serving.answer(self.chain, code, payload, self.link.eth.version)
        except PeerMisbehaved as exc:
            return exc

    # -- requests and scoring ------------------------------------------------------------------

    def _request(self, purpose: str, work: Any) -> None:
        future = self.link.submit(work)
        ref = self.actor_ref

        def done(finished: concurrent.futures.Future[Any]) -> None:
            if finished.cancelled():
                message = RequestFinished(purpose, error=P2PError("request cancelled"))
            elif finished.exception() is not None:
                message = RequestFinished(purpose, error=finished.exception())
            else:
                message = RequestFinished(purpose, result=finished.result())
            with contextlib.suppress(pykka.ActorDeadError):  # the peer is gone already
                ref.tell(message)

        future.add_done_callback(done)

    def _finished(self, message: RequestFinished) -> None:
        error = message.error
        offence = offence_of_request(error) if error is not None else None
        if offence is not None:
            self.penalise(offence, f"{message.purpose}: {error}")
        elif error is not None:
            log.debug("peer %s: %s request ended: %r", self.link.label, message.purpose, error)
        elif message.purpose == HEAD_HEADER:
            self._head_header_arrived(message.result)
        elif message.purpose == HEAD_BODY:
            self._head_body_arrived(message.result)

    def _head_header_arrived(self, headers: list[bytes]) -> None:
        if not headers:
            self.penalise(Offence.USELESS, "no header for the head it announced")
            return
        self.head_header = headers[0]
        self.score.reward()
        hashes = [self.head_hash]
        self._request(
            HEAD_BODY, lambda: self.link.eth.get_block_bodies(hashes, self.request_timeout)
        )

    def _head_body_arrived(self, bodies: list[bytes]) -> None:
        if not bodies:
            self.penalise(Offence.USELESS, "no body for the head it announced")
            return
        assert self.head_header is not None
        try:
            check_body(self.head_header, bodies[0])
        except InvalidAnswer as exc:
            self.penalise(Offence.LYING, str(exc))
            return
        except PeerMisbehaved as exc:
            self.penalise(Offence.MALFORMED, f"head body: {exc}")
            return
        self.checked = True
        self.score.reward()

    def penalise(self, offence: Offence, detail: str) -> None:
        """Lower the score; at the threshold ask the manager (once) to drop and bad-list."""
        dropped = self.score.penalise(offence, detail)
        if self.metrics is not None:
            self.metrics.offences.labels(offence.value).inc()
        log.info(
            "peer %s %s (%s): score %d", self.link.label, offence.value, detail, self.score.value
        )
        if dropped and not self._dropping:
            self._dropping = True
            reason = (
                DisconnectReason.BREACH_OF_PROTOCOL
                if offence in (Offence.LYING, Offence.MALFORMED)
                else DisconnectReason.USELESS_PEER
            )
            why = f"score {self.score.value} after {offence.value}: {detail}"
            self.manager.tell(DropPeer(self.link.connection_id, self.link.node_id, reason, why))
