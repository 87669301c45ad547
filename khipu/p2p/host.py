"""The node's devp2p presence: an RLPx listener serving eth/68 from the node's chain (and snap/1
from its state, advertised only when the host is given a StateReader), and discv4, on an asyncio
loop in a thread of its own (DESIGN.md: network I/O runs on asyncio in its own thread).

Inbound peers get our Status and are served headers, bodies and receipts until they leave; over
`max_peers` a new peer is told "too many peers" right after Hello. Discovery answers pings and
lookups and, given boot nodes, bonds with them and looks up our own id to fill its table.
Outbound dialling and peer scoring (a PeerManager actor) are not part of this host.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from coincurve import PrivateKey

from khipu.chain.forkid import ForkId
from khipu.logs import event
from khipu.p2p.abc import ChainReader
from khipu.p2p.discv4.packets import Endpoint
from khipu.p2p.discv4.service import Discovery, start_discovery
from khipu.p2p.errors import DisconnectReason, P2PError
from khipu.p2p.eth import messages as eth
from khipu.p2p.eth.peer import EthPeer, LocalChain
from khipu.p2p.keys import Enode, public_key_bytes
from khipu.p2p.server import listen
from khipu.p2p.session import Session
from khipu.p2p.snap import messages as snap
from khipu.p2p.snap.abc import StateReader

log = logging.getLogger("khipu.p2p")

DEFAULT_PORT = 30303
DEFAULT_MAX_PEERS = 50
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0


@dataclass(frozen=True)
class P2PConfig:
    """What `khipu run` asks of devp2p (geth's flag names in brackets)."""

    port: int = DEFAULT_PORT  # [--port] TCP for RLPx and UDP for discv4; 0 picks a free one
    host: str = "127.0.0.1"  # [--p2p.addr] the address bound and advertised
    discovery: bool = True  # [--nodiscover] turns it off
    max_peers: int = DEFAULT_MAX_PEERS  # [--maxpeers]
    bootnodes: tuple[str, ...] = ()  # [--bootnodes] enode URLs
    client_id: str = "khipu"
    port_chosen: bool = True  # False: the default port; if it is busy the node runs without


class P2PUnavailable(OSError):
    """The devp2p port cannot be bound, or a boot node URL is malformed."""


class P2PHost:
    """Runs the listener and discovery on a private event loop; `start` and `stop` are called
    from the node's (synchronous) thread."""

    def __init__(
        self,
        config: P2PConfig,
        private_key: PrivateKey,
        chain: ChainReader,
        state: StateReader | None = None,
    ) -> None:
        self.config = config
        self.private_key = private_key
        self.chain = chain
        self.state = state  # given: snap/1 is advertised and served from it
        self.peers: dict[bytes, EthPeer] = {}
        self.refused = 0  # inbound peers turned away over max_peers
        self.enode: Enode | None = None
        self.discovery: Discovery | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="p2p", daemon=True)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._last_fork_id: ForkId | None = None
        try:
            self._bootnodes = [Enode.parse(url) for url in config.bootnodes]
        except P2PError as exc:
            raise P2PUnavailable(f"bad --bootnodes entry: {exc}") from exc

    # -- from the node's thread ----------------------------------------------------------------

    def start(self) -> Enode:
        """Bind RLPx (TCP) and discv4 (UDP) and start serving; return our enode URL.

        Raises P2PUnavailable if a port cannot be bound (nothing is left running then).
        """
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        try:
            self.enode = future.result(START_TIMEOUT)
        except OSError as exc:
            self.stop()
            raise P2PUnavailable(
                f"cannot serve devp2p on {self.config.host}:{self.config.port}: {exc}"
            ) from exc
        except BaseException:
            self.stop()
            raise
        event(
            log,
            "devp2p serving",
            enode=str(self.enode),
            discovery=self.config.discovery,
            maxpeers=self.config.max_peers,
        )
        return self.enode

    def stop(self) -> None:
        """Disconnect every peer (client quitting), close the sockets and end the thread.
        Never raises; safe to call twice."""
        if self._thread.is_alive():
            future = asyncio.run_coroutine_threadsafe(self._stop(), self._loop)
            try:
                future.result(STOP_TIMEOUT)
            except Exception as exc:  # a stuck peer must not stop the node from stopping
                log.warning("devp2p did not stop cleanly: %r", exc)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(STOP_TIMEOUT)
        if not self._thread.is_alive() and not self._loop.is_closed():
            self._loop.close()

    def peer_count(self) -> int:
        """How many eth peers are connected right now."""
        return len(self.peers)

    def peer_infos(self) -> list[dict[str, object]]:
        """admin_peers: one entry per connected eth peer, in geth's shape."""
        infos: list[dict[str, object]] = []
        for node_id, peer in list(self.peers.items()):
            hello = peer.session.remote_hello
            infos.append(
                {
                    "id": node_id.hex(),
                    "name": hello.client_id,
                    "caps": [str(cap) for cap in hello.capabilities],
                    "network": {"inbound": True, "trusted": False, "static": False},
                    "protocols": {
                        cap.name: {"version": cap.version} for cap in peer.session.shared
                    },
                }
            )
        return infos

    def node_info(self) -> dict[str, object]:
        """What admin_nodeInfo and net_ tell of devp2p: enode, id, address, ports, peers."""
        enode = self.enode
        if enode is None:
            return {"listening": False, "peers": 0}
        return {
            "listening": True,
            "enode": str(enode),
            "id": enode.node_id.hex(),
            "ip": enode.ip,
            "ports": {"discovery": enode.udp_port, "listener": enode.tcp_port},
            "listenAddr": f"{enode.ip}:{enode.tcp_port}",
            "peers": self.peer_count(),
            "peer_infos": self.peer_infos(),
        }

    # -- on the loop ---------------------------------------------------------------------------

    async def _start(self) -> Enode:
        config = self.config
        self._fork_id()  # the chain must be readable now: the ENR falls back on this one
        self._server = await listen(
            config.host,
            config.port,
            self.private_key,
            {eth.ETH68: eth.MESSAGE_COUNT}
            | ({snap.SNAP1: snap.MESSAGE_COUNT} if self.state is not None else {}),
            self._on_session,
            config.client_id,
        )
        tcp_port = int(self._server.sockets[0].getsockname()[1])
        udp_port = tcp_port
        if config.discovery:
            try:
                self.discovery = await start_discovery(
                    self.private_key,
                    config.host,
                    tcp_port,
                    Endpoint(config.host, tcp_port, tcp_port),
                    self._fork_id,
                )
            except OSError:
                self._server.close()
                raise
            self._spawn(self._run_discovery(self.discovery))
        return Enode(public_key_bytes(self.private_key), config.host, tcp_port, udp_port)

    def _fork_id(self) -> ForkId:
        """Our current fork id for the ENR; the last one known while the store restarts."""
        try:
            self._last_fork_id = LocalChain.from_reader(self.chain).status().fork_id
        except Exception as exc:
            if self._last_fork_id is None:
                raise
            log.debug("fork id from the store failed, keeping the last: %r", exc)
        return self._last_fork_id

    async def _run_discovery(self, discovery: Discovery) -> None:
        if self._bootnodes:
            nodes = [(b.node_id, Endpoint(b.ip, b.udp_port, b.tcp_port)) for b in self._bootnodes]
            known = await discovery.bootstrap(nodes)
            event(log, "discv4 bootstrapped", bootnodes=len(nodes), table=known)
        await asyncio.gather(discovery.refresh_forever(), discovery.revalidate_forever())

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("devp2p task failed: %r", task.exception())

    async def _on_session(self, session: Session) -> None:
        """Own one inbound session: refuse it over the limit, else Status and serve."""
        label = f"{session.remote_id.hex()[:16]} ({session.remote_hello.client_id})"
        if len(self.peers) >= self.config.max_peers or session.remote_id in self.peers:
            reason = (
                DisconnectReason.ALREADY_CONNECTED
                if session.remote_id in self.peers
                else DisconnectReason.TOO_MANY_PEERS
            )
            self.refused += 1
            await session.disconnect(reason)
            log.debug("refused peer %s: %s", label, reason.name.lower())
            return
        try:
            local = LocalChain.from_reader(self.chain)
        except Exception as exc:  # the store is restarting: come back later
            log.debug("cannot serve peer %s now: %r", label, exc)
            await session.disconnect(DisconnectReason.TCP_SUBSYSTEM_ERROR)
            return
        peer = EthPeer(session, local, self.chain, snap_state=self.state)
        self.peers[session.remote_id] = peer
        try:
            await peer.exchange_status()
            event(log, "peer connected", peer=label, peers=len(self.peers))
            ended = await peer.run()
            log.debug("peer %s left: %s", label, ended)
        except P2PError as exc:
            log.debug("peer %s failed: %s", label, exc)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug of ours, or the store restarting: this peer only
            debugging = log.isEnabledFor(logging.DEBUG)
            log.warning("serving peer %s failed: %r", label, exc, exc_info=debugging)
            await session.disconnect(DisconnectReason.TCP_SUBSYSTEM_ERROR)
        finally:
            self.peers.pop(session.remote_id, None)

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        if self.discovery is not None:
            self.discovery.close()
        for task in list(self._tasks):
            task.cancel()
        for peer in list(self.peers.values()):
            await peer.session.disconnect(DisconnectReason.CLIENT_QUITTING)
        # Each peer's handler ends once its stream is closed; cancel only what lingers (the
        # streams' callback logs a cancelled handler as an error).
        for _ in range(40):
            if not self.peers:
                break
            await asyncio.sleep(0.05)
        current = asyncio.current_task()
        others = [t for t in asyncio.all_tasks() if t is not current]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
