"""The event-loop side of one peer: it owns the session (socket, frames, Status, the message loop)
and asks the actors for every decision: the PeerManager whether the peer may stay, the peer's
actor what to answer. `PeerLink` is what an actor holds to act on the connection from its thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from khipu.p2p.abc import ChainReader
from khipu.p2p.errors import (
    DisconnectReason,
    IncompatiblePeer,
    P2PError,
    PeerDisconnected,
    PeerMisbehaved,
)
from khipu.p2p.eth.messages import BlockRange
from khipu.p2p.eth.peer import EthPeer, LocalChain
from khipu.p2p.peers.messages import (
    AdmitPeer,
    PeerLeft,
    PeerRangeUpdated,
    PeerReady,
    ServeRequest,
)
from khipu.p2p.peers.roster import Admission, Direction
from khipu.p2p.peers.scoring import Offence
from khipu.p2p.session import Session
from khipu.p2p.snap.abc import StateReader

log = logging.getLogger("khipu.p2p")

T = TypeVar("T")
DECISION_TIMEOUT = 5.0  # the PeerManager answers admissions within this, or the peer is refused
SERVE_TIMEOUT = 30.0  # a peer actor stuck this long on one request costs us the peer

Tell = Callable[[Any], None]  # puts a message in the PeerManager's mailbox; raises if it is down


def loop_reply(
    loop: asyncio.AbstractEventLoop,
) -> tuple[asyncio.Future[Any], Callable[[Any], None]]:
    """A future on `loop` and a thread-safe callable that resolves it (later calls, or calls after
    the future was abandoned, do nothing)."""
    future: asyncio.Future[Any] = loop.create_future()

    def resolve(value: Any) -> None:
        if not future.done():
            future.set_result(value)

    def reply(value: Any) -> None:
        if not loop.is_closed():
            loop.call_soon_threadsafe(resolve, value)

    return future, reply


def reason_label(error: P2PError) -> str:
    """A short label of how a connection ended, for metrics: the Disconnect reason we sent
    ('breach_of_protocol'), the peer's ('remote_too_many_peers'), or the kind of end."""
    reason = getattr(error, "reason", None)
    name = reason.name.lower() if isinstance(reason, DisconnectReason) else None
    if isinstance(error, PeerDisconnected):
        return f"remote_{name}" if name else "remote_closed"
    if isinstance(error, PeerMisbehaved | IncompatiblePeer) and name:
        return name
    return type(error).__name__.lower()


def offence_of(error: P2PError) -> Offence | None:
    """How a connection's end counts against the peer: a protocol breach is MALFORMED, a peer
    that stopped answering pings is SLOW; leaving or being incompatible is no offence."""
    if isinstance(error, PeerMisbehaved):
        return Offence.SLOW if error.reason is DisconnectReason.PING_TIMEOUT else Offence.MALFORMED
    return None


class PeerLink:
    """A connection as a peer actor sees it: every method is safe to call from any thread."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        connection_id: int,
        direction: Direction,
        eth: EthPeer,
        task: asyncio.Task[None] | None,
    ) -> None:
        self.loop = loop
        self.connection_id = connection_id
        self.direction = direction
        self.eth = eth
        self.node_id = eth.session.remote_id
        self.client_id = eth.session.remote_hello.client_id
        self._task = task

    @property
    def label(self) -> str:
        return f"{self.node_id.hex()[:16]} ({self.client_id})"

    def submit(self, work: Callable[[], Coroutine[Any, Any, T]]) -> concurrent.futures.Future[T]:
        """Run `work()` (e.g. `lambda: link.eth.get_block_headers(request)`) on the loop."""
        return asyncio.run_coroutine_threadsafe(work(), self.loop)

    def send(self, name: str, code: int, payload: bytes) -> None:
        """Queue message `code` of capability `name` to the peer (errors end the connection)."""
        self.submit(lambda: self._send(name, code, payload))

    async def _send(self, name: str, code: int, payload: bytes) -> None:
        try:
            await self.eth.session.send(name, code, payload)
        except (P2PError, OSError) as exc:
            log.debug("sending to peer %s failed: %r", self.label, exc)

    def disconnect(self, reason: DisconnectReason) -> None:
        """Say Disconnect with `reason` and end the connection; never raises."""
        if self.loop.is_closed():
            return
        # RuntimeError: the loop is stopping, and the connection goes with it.
        with contextlib.suppress(RuntimeError):
            self.submit(lambda: self._disconnect(reason))

    async def _disconnect(self, reason: DisconnectReason) -> None:
        await self.eth.session.disconnect(reason)
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()


class PeerConnection:
    """Runs one session from Hello to its end under the PeerManager's decisions."""

    def __init__(
        self,
        session: Session,
        direction: Direction,
        connection_id: int,
        chain: ChainReader,
        tell_manager: Tell,
        *,
        snap_state: StateReader | None = None,
    ) -> None:
        self.session = session
        self.snap_state = snap_state  # given: snap/1 requests are answered from it
        self.direction = direction
        self.connection_id = connection_id
        self.chain = chain
        self.tell_manager = tell_manager
        self.label = f"{session.remote_id.hex()[:16]} ({session.remote_hello.client_id})"
        self._actor: Any = None  # the peer actor's ref once it runs

    async def run(self) -> None:
        """Admission, Status, then the message loop until the peer or we end it. Never raises
        for anything the peer does; always tells the manager the connection ended."""
        why, offence, label = "refused", None, "refused"
        try:
            admission = await self._admit()
            if not admission.admitted:
                reason = admission.reason or DisconnectReason.DISCONNECT_REQUESTED
                log.debug("refused peer %s: %s", self.label, admission.why)
                await self.session.disconnect(reason)
                why = f"refused: {admission.why}"
                return
            why, offence, label = await self._serve_peer()
        except asyncio.CancelledError:
            # Cancelled by a PeerLink disconnect or the host stopping, after the session was
            # closed: this coroutine is its task's whole work, so it ends here (re-raising would
            # make the listener's stream callback log the cancelled handler as an error).
            why, label = "disconnected by us", "local"
        except Exception as exc:  # a bug of ours: this peer only
            log.warning("peer %s failed: %r", self.label, exc, exc_info=True)
            await self.session.disconnect(DisconnectReason.TCP_SUBSYSTEM_ERROR)
            why, label = f"internal error: {exc!r}", "internal_error"
        finally:
            self.session.close()
            left = PeerLeft(self.connection_id, self.session.remote_id, why, offence, label)
            try:
                self.tell_manager(left)
            except Exception as exc:  # the manager is gone (shutdown): nothing to record
                log.debug("could not report %s: %r", left, exc)

    async def _admit(self) -> Admission:
        loop = asyncio.get_running_loop()
        future, reply = loop_reply(loop)
        hello = self.session.remote_hello
        address = self.session.connection.remote_address
        caps = tuple(str(cap) for cap in hello.capabilities)
        try:
            self.tell_manager(
                AdmitPeer(
                    self.connection_id,
                    self.session.remote_id,
                    self.direction,
                    address,
                    hello.client_id,
                    caps,
                    reply,
                )
            )
            answer: Admission = await asyncio.wait_for(future, DECISION_TIMEOUT)
        except Exception as exc:  # no manager (restarting, stopping): not now
            return Admission(False, DisconnectReason.TOO_MANY_PEERS, f"no peer manager: {exc!r}")
        return answer

    async def _serve_peer(self) -> tuple[str, Offence | None, str]:
        try:
            local = LocalChain.from_reader(self.chain)
        except Exception as exc:  # the store is restarting: come back later
            await self.session.disconnect(DisconnectReason.TCP_SUBSYSTEM_ERROR)
            return f"store unavailable: {exc!r}", None, "store_unavailable"
        peer = EthPeer(
            self.session, local, self.chain, snap_state=self.snap_state, server=self._ask_actor
        )
        try:
            status = await peer.exchange_status()
        except P2PError as exc:
            return f"status failed: {exc}", offence_of(exc), reason_label(exc)
        loop = asyncio.get_running_loop()
        link = PeerLink(loop, self.connection_id, self.direction, peer, asyncio.current_task())
        cap = self.session.capability("eth")
        eth_info: dict[str, object] = {
            "version": cap.version if cap else 0,
            "head": "0x" + status.head_hash.hex(),
        }
        if status.total_difficulty is not None:
            eth_info["difficulty"] = status.total_difficulty
        if status.block_range is not None:
            eth_info["earliestBlock"] = status.block_range.earliest
            eth_info["latestBlock"] = status.block_range.latest
        protocols: dict[str, object] = {"eth": eth_info}
        if self.session.capability("snap") is not None:
            protocols["snap"] = {"version": 1}
        future, reply = loop_reply(loop)
        try:
            self.tell_manager(PeerReady(self.connection_id, link, protocols, reply))
            self._actor = await asyncio.wait_for(future, DECISION_TIMEOUT)
        except Exception as exc:
            self._actor = None
            log.debug("no actor for peer %s: %r", self.label, exc)
        if self._actor is None:
            await self.session.disconnect(DisconnectReason.TOO_MANY_PEERS)
            return "no peer actor", None, "no_peer_actor"
        peer.on_block_range = self._range_updated
        ended = await peer.run()
        return str(ended), offence_of(ended), reason_label(ended)

    def _range_updated(self, block_range: BlockRange) -> None:
        try:
            self.tell_manager(PeerRangeUpdated(self.connection_id, block_range))
        except Exception as exc:  # the manager is restarting: the next update will tell it
            log.debug("could not report the range of %s: %r", self.label, exc)

    async def _ask_actor(self, code: int, payload: bytes) -> tuple[int, bytes] | None:
        """The peer actor's answer to request `code`; raises what ends the connection if the
        actor is gone, stuck, or found the request malformed."""
        future, reply = loop_reply(asyncio.get_running_loop())
        try:
            self._actor.tell(ServeRequest(code, payload, reply))
            answer = await asyncio.wait_for(future, SERVE_TIMEOUT)
        except Exception as exc:
            await self.session.disconnect(DisconnectReason.TCP_SUBSYSTEM_ERROR)
            raise PeerDisconnected(f"peer actor of {self.label} is gone: {exc!r}") from exc
        if isinstance(answer, PeerMisbehaved | IncompatiblePeer):
            raise answer
        result: tuple[int, bytes] | None = answer
        return result
