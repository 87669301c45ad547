"""The node's devp2p presence: the RLPx listener and dialler and discv4, on an asyncio loop in a
thread of its own (DESIGN.md: network I/O runs on asyncio in its own thread). Peers are served
eth/69 or eth/68 (the highest both speak) from the node's chain, and snap/1 from its state when
the host is given a StateReader (only then is snap/1 advertised).

The host keeps the sockets; the PeerManager actor (khipu.p2p.peers) decides: every connection
past Hello, inbound or dialled, is run by a PeerConnection that asks the manager whether it may
stay and hands the peer's requests to its peer actor. `attach` gives the host the manager's
mailbox; `dial` and `discovered` are what the manager calls back from its thread.

discv4's socket lives here too, but its schedule does not: the Discovery actor
(khipu.p2p.peers.discovery_actor) opens and closes it and runs its rounds (bonding with the boot
nodes, lookups, revalidation) through `open_discovery`, `discovery_round`, `close_discovery`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import logging
import threading
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from coincurve import PrivateKey

from khipu.chain.forkid import ForkId, ForkIdRejected
from khipu.logs import event
from khipu.p2p.abc import ChainReader
from khipu.p2p.discv4.packets import Endpoint
from khipu.p2p.discv4.service import Discovery, start_discovery
from khipu.p2p.enr import NodeRecordV4
from khipu.p2p.errors import DisconnectReason, P2PError
from khipu.p2p.eth import messages as eth
from khipu.p2p.eth.peer import LocalChain
from khipu.p2p.keys import Enode, public_key_bytes
from khipu.p2p.peers.board import PeerBoard
from khipu.p2p.peers.connection import PeerConnection, Tell
from khipu.p2p.peers.messages import DialConnected, DialFailed
from khipu.p2p.peers.roster import Direction
from khipu.p2p.server import listen
from khipu.p2p.session import Capability, Session, dial
from khipu.p2p.snap import messages as snap
from khipu.p2p.snap.abc import StateReader

log = logging.getLogger("khipu.p2p")

DEFAULT_PORT = 30303
DEFAULT_MAX_PEERS = 50
DEFAULT_BAD_PEER_EXPIRY = 3600.0
CAPABILITIES = eth.capabilities()  # eth/69 and eth/68
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0


@dataclass(frozen=True)
class P2PConfig:
    """What `khipu run` asks of devp2p (geth's flag names in brackets)."""

    port: int = DEFAULT_PORT  # [--port] TCP for RLPx and UDP for discv4; 0 picks a free one
    host: str = "127.0.0.1"  # [--p2p.addr] the address bound and advertised
    discovery: bool = True  # [--nodiscover] turns it off
    sync: bool = True  # [--nosync] serve peers but download nothing from them
    max_peers: int = DEFAULT_MAX_PEERS  # [--maxpeers]
    bootnodes: tuple[str, ...] = ()  # [--bootnodes] enode URLs
    staticnodes: tuple[str, ...] = ()  # [--staticnodes] enode URLs always dialled
    bad_peer_expiry: float = DEFAULT_BAD_PEER_EXPIRY  # seconds a dropped peer stays refused
    dial: bool = True  # False: no outbound dials (geth's --nodial)
    client_id: str = "khipu"
    eth_versions: tuple[int, ...] = eth.SUPPORTED_VERSIONS  # offered in Hello; (68,): eth/68 only
    port_chosen: bool = True  # False: the default port; if it is busy the node runs without


class P2PUnavailable(OSError):
    """The devp2p port cannot be bound, or a boot or static node URL is malformed."""


class P2PHost:
    """Runs the listener and discovery on a private event loop; `start` and `stop` are called
    from the node's (synchronous) thread."""

    def __init__(
        self,
        config: P2PConfig,
        private_key: PrivateKey,
        chain: ChainReader,
        board: PeerBoard | None = None,
        *,
        state: StateReader | None = None,
        fork_id: ForkId | None = None,
    ) -> None:
        """`fork_id`, if given, is what the ENR says until the chain can be read (a store that
        is restarting when the host starts); without it the chain must be readable at start."""
        self.config = config
        self.private_key = private_key
        self.chain = chain
        self.state = state  # given: snap/1 is advertised and served from it
        self.board = board if board is not None else PeerBoard()
        self.enode: Enode | None = None
        self._tell: Tell | None = None
        self._connections: dict[int, PeerConnection] = {}
        self._connection_ids = itertools.count(1)
        self.discovery: Discovery | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="p2p", daemon=True)
        self._server: asyncio.Server | None = None
        self._last_fork_id: ForkId | None = fork_id
        self.bootnodes = parse_enodes(config.bootnodes, "--bootnodes")
        self.staticnodes = parse_enodes(config.staticnodes, "--staticnodes")

    @property
    def node_id(self) -> bytes:
        """Our node id: the 64-byte public key."""
        return public_key_bytes(self.private_key)

    def attach(self, tell_manager: Tell) -> None:
        """Route every connection's decisions to the PeerManager through `tell_manager` (a
        thread-safe tell that raises when the manager is down). Without it peers are refused."""
        self._tell = tell_manager

    # -- from the node's thread ----------------------------------------------------------------

    @property
    def capabilities(self) -> dict[Capability, int]:
        """What Hello offers: eth/69 and eth/68 (or the configured versions), and snap/1 when
        there is state to serve it from."""
        offered = eth.capabilities(self.config.eth_versions)
        if self.state is None:
            return offered
        return offered | {snap.SNAP1: snap.MESSAGE_COUNT}

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

    @property
    def running(self) -> bool:
        """True between a successful `start` and `stop`."""
        return self.enode is not None and self._thread.is_alive() and not self._loop.is_closed()

    def peer_count(self) -> int:
        """How many eth peers are connected right now (as the PeerManager published)."""
        return self.board.peer_count()

    def peer_infos(self) -> list[dict[str, object]]:
        """admin_peers: one entry per connected eth peer, in geth's shape."""
        return self.board.admin_peers()

    def dial(self, enode: Enode) -> None:
        """Connect to `enode` in the background (from any thread); the PeerManager hears
        DialConnected or DialFailed, then decides on the connection as on an inbound one."""
        asyncio.run_coroutine_threadsafe(self._dial(enode), self._loop)

    def discovered(self) -> list[Enode]:
        """The nodes in discovery's table now (from any thread; empty without discovery)."""
        if self.discovery is None or not self._thread.is_alive():
            return []
        future = asyncio.run_coroutine_threadsafe(self._discovered(), self._loop)
        return future.result(START_TIMEOUT)

    # -- discovery, driven by the Discovery actor (khipu.p2p.peers.discovery_actor) ----------

    def open_discovery(self) -> None:
        """Make discv4 serve on our UDP port: adopt the service bound by `start`, or bind a new
        one on the same port after `close_discovery`. Raises P2PUnavailable if the host is not
        running or the port cannot be bound again."""
        if not self.running:
            raise P2PUnavailable("devp2p is not running: discovery cannot open")
        future = asyncio.run_coroutine_threadsafe(self._open_discovery(), self._loop)
        try:
            future.result(START_TIMEOUT)
        except OSError as exc:
            raise P2PUnavailable(
                f"cannot serve discv4 on {self.config.host}:{self._udp_port()}: {exc}"
            ) from exc

    def close_discovery(self) -> None:
        """Close the discv4 service (its pending requests fail). Never raises."""
        if self.discovery is None or not self._thread.is_alive():
            return
        future = asyncio.run_coroutine_threadsafe(self._close_discovery(), self._loop)
        try:
            future.result(STOP_TIMEOUT)
        except Exception as exc:
            log.warning("discv4 did not close cleanly: %r", exc)

    def discovery_round(
        self, round_of: Callable[[Discovery], Awaitable[object]]
    ) -> concurrent.futures.Future[int]:
        """Run `round_of(discovery)` on the loop; the future gives the table size after it, or
        the round's error (P2PUnavailable when discovery is not open)."""
        return asyncio.run_coroutine_threadsafe(self._discovery_round(round_of), self._loop)

    def _udp_port(self) -> int:
        return self.enode.udp_port if self.enode is not None else self.config.port

    async def _open_discovery(self) -> None:
        if self.discovery is not None:
            return
        port = self._udp_port()
        self.discovery = await start_discovery(
            self.private_key,
            self.config.host,
            port,
            Endpoint(self.config.host, port, self.enode.tcp_port if self.enode else port),
            self._fork_id,
        )

    async def _close_discovery(self) -> None:
        discovery, self.discovery = self.discovery, None
        if discovery is not None:
            discovery.close()

    async def _discovery_round(self, round_of: Callable[[Discovery], Awaitable[object]]) -> int:
        discovery = self.discovery
        if discovery is None:
            raise P2PUnavailable("discv4 is closed")
        await round_of(discovery)
        return len(discovery.table)

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
        self._fork_id()  # readable now (or a fork id given): the ENR falls back on this one
        self._server = await listen(
            config.host,
            config.port,
            self.private_key,
            self.capabilities,
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

    async def _discovered(self) -> list[Enode]:
        if self.discovery is None:
            return []
        nodes = [
            Enode(node.node_id, node.endpoint.ip, node.endpoint.tcp_port, node.endpoint.udp_port)
            for node in self.discovery.table
            if node.endpoint.tcp_port
        ]
        try:
            local = LocalChain.from_reader(self.chain)
        except Exception as exc:  # the store is restarting: no filter this time
            log.debug("fork id filter skipped: %r", exc)
            return nodes
        return dialable(nodes, self.discovery.records, local)

    async def _on_session(self, session: Session) -> None:
        """Own one inbound session until it ends."""
        await self._run_connection(session, Direction.INBOUND)

    async def _dial(self, enode: Enode) -> None:
        tell = self._tell
        try:
            session = await dial(
                enode.ip,
                enode.tcp_port,
                self.private_key,
                enode.node_id,
                self.capabilities,
                self.config.client_id,
                self.enode.tcp_port if self.enode is not None else 0,
            )
        except P2PError as exc:
            log.debug("dial %s failed: %s", enode, exc)
            if tell is not None:
                tell(DialFailed(enode.node_id, str(exc)))
            return
        if tell is not None:
            tell(DialConnected(enode.node_id))
        await self._run_connection(session, Direction.OUTBOUND)

    async def _run_connection(self, session: Session, direction: Direction) -> None:
        tell = self._tell
        if tell is None:
            await session.disconnect(DisconnectReason.TOO_MANY_PEERS)
            return
        connection_id = next(self._connection_ids)
        connection = PeerConnection(
            session, direction, connection_id, self.chain, tell, snap_state=self.state
        )
        self._connections[connection_id] = connection
        try:
            await connection.run()
        finally:
            self._connections.pop(connection_id, None)

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        if self.discovery is not None:
            self.discovery.close()
        await asyncio.gather(
            *(
                connection.session.disconnect(DisconnectReason.CLIENT_QUITTING)
                for connection in list(self._connections.values())
            )
        )
        # Each peer's handler ends once its stream is closed; cancel only what lingers (the
        # streams' callback logs a cancelled handler as an error).
        for _ in range(40):
            if not self._connections:
                break
            await asyncio.sleep(0.05)
        current = asyncio.current_task()
        others = [t for t in asyncio.all_tasks() if t is not current]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)


def dialable(
    nodes: list[Enode], records: Mapping[bytes, NodeRecordV4], local: LocalChain
) -> list[Enode]:
    """The nodes worth dialling: those whose record (if we hold one) carries no eth fork id or
    one that EIP-2124 accepts for our chain; a known other chain is not dialled (geth filters
    discovered nodes the same way)."""
    kept = []
    for enode in nodes:
        record = records.get(enode.node_id)
        fork_id = record.fork_id if record is not None else None
        if fork_id is not None:
            try:
                local.fork_points.validate(fork_id, local.head_number, local.head_time)
            except ForkIdRejected:
                continue
        kept.append(enode)
    return kept


def parse_enodes(urls: tuple[str, ...], flag: str) -> tuple[Enode, ...]:
    """Enode URLs as given to `flag`; raises P2PUnavailable naming the bad one."""
    try:
        return tuple(Enode.parse(url) for url in urls)
    except P2PError as exc:
        raise P2PUnavailable(f"bad {flag} entry: {exc}") from exc
