"""The node: a supervised actor tree over one datadir, health a person can watch, clean stops.

`Node.start()` opens the datadir once to check it (the right chain, not in use), prepares the dev
chain on a dev network, starts the metrics server and the tree; `run_node` then waits for a
signal (GracefulShutdown) or for supervision to give up, and returns the exit code.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from khipu.actors import (
    ChildSpec,
    Directive,
    ExponentialBackoff,
    SupervisionStrategy,
    SupervisionTree,
    decider_from_map,
)
from khipu.actors.health import HealthBoard, HealthConfig
from khipu.actors.messages import TreeStopped
from khipu.actors.metrics import (
    DEFAULT_METRICS_ADDR,
    DEFAULT_METRICS_PORT,
    MetricsServer,
    NodeMetrics,
)
from khipu.actors.shutdown import EXIT_FORCED, GracefulShutdown
from khipu.chain.forkid import ForkId
from khipu.chain.rules import ChainRules
from khipu.config import ChainSelection
from khipu.devnet.generate import DevChainSpec, generate_chain
from khipu.logs import event
from khipu.node_actors.execution import ExecutionSettings, ExecutionSupervisor
from khipu.node_actors.faults import FaultPlan
from khipu.node_actors.health import NodeHealthMonitor
from khipu.node_actors.importer import Importer
from khipu.node_actors.live_store import LiveStore
from khipu.node_actors.progress import ImportStatus
from khipu.node_actors.rpc_service import RpcEndpoints, RpcServerActor
from khipu.node_actors.storage_writer import StorageWriter
from khipu.p2p.host import P2PConfig, P2PHost, P2PUnavailable
from khipu.p2p.peers.board import PeerBoard
from khipu.rpc.config import RpcConfig
from khipu.storage.chain_store import ChainStore, GenesisMismatch

log = logging.getLogger("khipu.node")


def default_strategy() -> SupervisionStrategy:
    """The root's rules: restart a failed actor after 0.2 s, 0.4 s, ... (at most 10 s), at most 5
    times a minute; a datadir of another chain stops the node at once."""
    return SupervisionStrategy(
        decider=decider_from_map({GenesisMismatch: Directive.ESCALATE}),
        max_restarts=5,
        within_seconds=60.0,
        backoff=ExponentialBackoff(initial=0.2, maximum=10.0),
    )


@dataclass(frozen=True)
class MetricsSettings:
    """Where /metrics is served (as geth: 127.0.0.1:6060)."""

    addr: str = DEFAULT_METRICS_ADDR
    port: int = DEFAULT_METRICS_PORT


@dataclass(frozen=True)
class NodeSettings:
    """What the node does beyond opening its datadir, and how it watches itself."""

    import_files: tuple[Path, ...] = ()
    dev_chain: DevChainSpec | None = None
    check_seal: bool = True
    execution: ExecutionSettings | None = None  # None: serial execution
    health: HealthConfig = field(default_factory=HealthConfig)
    metrics: MetricsSettings | None = None  # None: no metrics server
    strategy: SupervisionStrategy = field(default_factory=default_strategy)
    progress_interval: float = 10.0
    rpc: RpcConfig | None = None  # None: no JSON-RPC server
    p2p: P2PConfig | None = None  # None: no devp2p (RLPx listener and discv4)
    writer_stop_timeout: float = 60.0  # long enough to finish the block being committed
    shutdown_timeout: float = 90.0


class MetricsUnavailable(OSError):
    """The metrics address cannot be bound (in use, or not an address of this host)."""

    def __init__(self, addr: str, port: int, cause: OSError) -> None:
        super().__init__(f"cannot serve metrics on {addr}:{port}: {cause}")
        self.addr = addr
        self.port = port


class RpcUnavailable(OSError):
    """The JSON-RPC address cannot be bound (in use, or not an address of this host)."""

    def __init__(self, host: str, port: int, cause: OSError) -> None:
        super().__init__(f"cannot serve JSON-RPC on {host}:{port}: {cause}")


class Node:
    """A node over one datadir, run as a supervised Pykka actor tree."""

    def __init__(
        self,
        selection: ChainSelection,
        settings: NodeSettings | None = None,
        *,
        faults: FaultPlan | None = None,
        emit_health_line: Callable[[str], None] | None = None,
    ) -> None:
        self.selection = selection
        self.settings = settings if settings is not None else NodeSettings()
        self.rules = ChainRules(selection.genesis.config)
        self.faults = faults if faults is not None else FaultPlan()
        self.emit_health_line = emit_health_line or _print_line
        self.board = HealthBoard()
        self.metrics = NodeMetrics()
        self.import_status = ImportStatus()
        self.metrics_server: MetricsServer | None = None
        self.tree: SupervisionTree | None = None
        self.live_store = LiveStore()
        self.rpc: RpcEndpoints | None = None
        self.p2p_host: P2PHost | None = None
        self.peer_board = PeerBoard()
        self._genesis_hash: bytes | None = None  # read when the datadir is checked
        self._fork_id: ForkId | None = None  # likewise, with devp2p on

    # -- the tree ------------------------------------------------------------------------------

    def child_specs(self, files: list[Path]) -> list[ChildSpec]:
        """The children of NodeSupervisor, in start order (stopped in reverse)."""
        settings, selection = self.settings, self.selection
        writer_open_timeout = 30.0
        execution = settings.execution
        optional: list[ChildSpec] = []
        if execution is not None:
            optional.append(
                ChildSpec(
                    "ExecutionSupervisor",
                    lambda ctx: ExecutionSupervisor.start(
                        ctx, selection, execution, metrics=self.metrics, faults=self.faults
                    ),
                )
            )
        specs = [
            ChildSpec(
                "StorageWriter",
                lambda ctx: StorageWriter.start(
                    ctx,
                    selection,
                    check_seal=settings.check_seal,
                    execution=execution,
                    status=self.import_status,
                    metrics=self.metrics,
                    faults=self.faults,
                    open_timeout=writer_open_timeout,
                    publish=self.live_store.publish,
                ),
                stop_timeout=settings.writer_stop_timeout,
                start_timeout=writer_open_timeout + 5.0,
            ),
            *optional,
            ChildSpec(
                "Importer",
                lambda ctx: Importer.start(
                    ctx,
                    files,
                    self.rules,
                    status=self.import_status,
                    metrics=self.metrics,
                    faults=self.faults,
                    progress_interval=settings.progress_interval,
                ),
            ),
            ChildSpec(
                "HealthMonitor",
                lambda ctx: NodeHealthMonitor.start(
                    ctx,
                    self.board,
                    settings.health,
                    emit=self.emit_health_line,
                    metrics=self.metrics,
                    faults=self.faults,
                ),
                stop_timeout=settings.health.heartbeat_timeout + 5.0,
            ),
        ]
        if self.p2p_host is not None:  # before the HealthMonitor, which stops first
            specs.insert(len(specs) - 1, self._peer_manager_spec(self.p2p_host))
            if self.p2p_host.config.sync:
                specs.insert(len(specs) - 1, self._regular_sync_spec())
        return specs

    def start(self) -> None:
        """Check the datadir, prepare the dev chain, start the metrics server and the tree.

        Raises GenesisMismatch or StoreLocked (before anything runs) for a datadir of another
        chain or in use, and MetricsUnavailable if the metrics address cannot be bound.
        """
        selection = self.selection
        store = ChainStore.open(
            selection.datadir, selection.genesis, selection.genesis_json, config=selection.storage
        )
        try:
            head = store.head()
            self._genesis_hash = store.genesis_hash
            if self.settings.p2p is not None:  # the ENR's fork id while the writer restarts
                self._fork_id = self._stored_fork_id(store)
        finally:
            store.close()
        event(
            log,
            "node starting",
            network=self.selection.name,
            datadir=str(self.selection.datadir),
            head=head.block_number,
            hash="0x" + head.hash.hex(),
        )
        files = list(self.settings.import_files)
        if self.settings.dev_chain is not None:
            files.insert(0, self._dev_chain_file(self.settings.dev_chain))
        if self.settings.p2p is not None:
            self.p2p_host = self._make_p2p_host(self.settings.p2p)
        self.metrics.store_size.watch(self.selection.datadir)
        if self.settings.metrics is not None:
            addr, port = self.settings.metrics.addr, self.settings.metrics.port
            try:
                self.metrics_server = MetricsServer(self.metrics, addr, port).start()
            except OSError as error:
                raise MetricsUnavailable(addr, port, error) from error
        self.tree = SupervisionTree(
            "NodeSupervisor", self.child_specs(files), self.settings.strategy
        )
        if self.settings.rpc is not None:
            # The StorageWriter (started first, synchronously) has published its store by now.
            try:
                self._bind_rpc(self.settings.rpc)
            except RpcUnavailable:
                self.shutdown("the JSON-RPC address cannot be bound")
                raise
        if self.settings.p2p is not None:
            try:
                self._start_p2p(self.settings.p2p)
            except P2PUnavailable:
                self.shutdown("devp2p cannot start")
                raise

    def _stored_fork_id(self, store: ChainStore) -> ForkId:
        """Our fork id at the stored head (EIP-2124)."""
        from khipu.p2p.eth.peer import LocalChain
        from khipu.p2p.store_reader import StoreChainReader

        reader = StoreChainReader(store, self.selection.genesis, store.genesis_hash)
        return LocalChain.from_reader(reader).status().fork_id

    def _make_p2p_host(self, config: P2PConfig) -> P2PHost:
        """The devp2p host (not started) over the writer's live store, with the key at
        DATADIR/nodekey. Raises P2PUnavailable for a bad node key or enode URL."""
        from khipu.p2p.errors import P2PError
        from khipu.p2p.keys import load_or_create_node_key
        from khipu.p2p.store_reader import StoreChainReader
        from khipu.p2p.store_state import StoreStateReader

        try:
            key = load_or_create_node_key(self.selection.datadir)
        except P2PError as error:
            raise P2PUnavailable(str(error)) from error
        reader = StoreChainReader(
            self.live_store,  # type: ignore[arg-type]
            self.selection.genesis,
            self._genesis_hash,
        )
        state = StoreStateReader(self.live_store)  # type: ignore[arg-type]
        return P2PHost(config, key, reader, self.peer_board, state=state, fork_id=self._fork_id)

    def _peer_manager_spec(self, host: P2PHost) -> ChildSpec:
        from khipu.p2p.peers.bad_list_file import FILE_NAME as BAD_LIST_FILE
        from khipu.p2p.peers.board import PeerMetrics
        from khipu.p2p.peers.manager import PeerSettings, peer_manager_spec
        from khipu.p2p.peers.roster import PeerLimits

        config = host.config
        settings = PeerSettings(
            limits=PeerLimits(config.max_peers),
            static_nodes=host.staticnodes,
            boot_nodes=host.bootnodes,
            dial=config.dial,
            bad_peer_expiry=config.bad_peer_expiry,
            bad_list_path=self.selection.datadir / BAD_LIST_FILE,
        )
        metrics = PeerMetrics(self.metrics.registry)
        return peer_manager_spec(host, settings, self.peer_board, metrics)

    def _regular_sync_spec(self) -> ChildSpec:
        """RegularSync, downloading from the PeerManager's peers into the StorageWriter."""
        from khipu.sync.regular import RegularSync

        def peers() -> list[Any]:
            if self.tree is None:
                return []  # the tree is still starting
            links: list[Any] = self.tree.handle("PeerManager").call("active_links", timeout=5.0)
            return links

        def report(message: Any) -> None:
            assert self.tree is not None
            self.tree.handle("PeerManager").tell(message, timeout=0.0)

        return ChildSpec(
            "RegularSync",
            lambda ctx: RegularSync.start(
                ctx,
                self.rules,
                peers,
                report,
                status=self.import_status,
                metrics=self.metrics,
                faults=self.faults,
                progress_interval=self.settings.progress_interval,
            ),
        )

    def _start_p2p(self, config: P2PConfig) -> None:
        """Serve eth/68 and discv4, the PeerManager deciding on peers.

        Raises P2PUnavailable for a busy port the user chose; a busy default port is logged and
        the node runs without devp2p (its PeerManager idle).
        """
        host = self.p2p_host
        assert host is not None and self.tree is not None
        manager = self.tree.handle("PeerManager")
        host.attach(lambda message: manager.tell(message, timeout=0.0))
        try:
            host.start()
        except P2PUnavailable as error:
            self.p2p_host = None
            if config.port_chosen:
                raise
            log.warning("devp2p is off: %s (choose a free one with --port)", error)
            return
        if config.discovery:  # --nodiscover: no Discovery actor
            from khipu.p2p.peers.discovery_actor import discovery_spec

            self.tree.add_child(discovery_spec(host, self.peer_board, faults=self.faults))
        if self.rpc is not None:  # admin_nodeInfo, admin_peers, net_listening, net_peerCount
            self.rpc.set_p2p_info(host.node_info)

    def _bind_rpc(self, config: RpcConfig) -> None:
        """Bind JSON-RPC over the writer's live store, on the HTTP port and, with --ws, on the
        WebSocket port too; the RpcServer actor, added to the tree, adopts the servers and
        rebinds the same ports after a restart. Raises RpcUnavailable if a port cannot be bound."""
        self.rpc = RpcEndpoints(
            self.live_store,
            self.rules,
            self.selection.genesis,
            self.health_snapshot,
            observer=self.metrics.observe_rpc,
            sync_status=self.import_status.snapshot,
        )
        try:
            self.rpc.bind(config)
        except OSError as error:
            raise RpcUnavailable(config.host, config.port, error) from error
        rpc = self.rpc
        spec = ChildSpec(
            "RpcServer", lambda ctx: RpcServerActor.start(ctx, rpc, faults=self.faults)
        )
        assert self.tree is not None
        self.tree.add_child(spec)

    @property
    def rpc_servers(self) -> list[Any]:
        """The JSON-RPC servers running now (none while the RpcServer actor restarts)."""
        return list(self.rpc.servers) if self.rpc is not None else []

    def _dev_chain_file(self, spec: DevChainSpec) -> Path:
        folder = self.selection.datadir / "devchain"
        chain_file = folder / "chain.rlp"
        if not chain_file.exists():
            event(log, "generating dev chain", blocks=spec.blocks, profile=spec.profile)
            generate_chain(folder, spec.blocks, spec.txs_per_block, spec.profile, spec.seed)
        return chain_file

    # -- watching and stopping -----------------------------------------------------------------

    def health_snapshot(self) -> dict[str, Any]:
        """What `khipu_health` answers: every actor's health and the import progress.

        `{"ts": ..., "actors": [{actor, state, mailbox, processed, restarts, ...}], "sync":
        {stage, state, head, target, imported, blocks_per_s, tx_per_s, mgas_per_s, error}}`.
        """
        snapshot = self.board.health_snapshot()
        snapshot["sync"] = self.import_status.snapshot()
        if self.settings.p2p is not None:
            snapshot["p2p"] = self.peer_board.summary()
        return snapshot

    def wait(self, timeout: float | None = None) -> TreeStopped | None:
        """Block until the tree has stopped (None after `timeout` seconds)."""
        assert self.tree is not None, "the node is not started"
        return self.tree.wait(timeout)

    def shutdown(self, reason: str = "shutdown requested") -> TreeStopped:
        """Stop the tree (the writer finishes its block and closes the store) and the metrics
        server. Raises TimeoutError if the tree does not stop within the shutdown timeout."""
        try:
            if self.tree is None:
                return TreeStopped(reason, clean=True)
            return self.tree.shutdown(reason, timeout=self.settings.shutdown_timeout)
        finally:
            self.close()

    def close(self) -> None:
        """Stop devp2p and the JSON-RPC and metrics servers (the tree must have stopped)."""
        if self.p2p_host is not None:
            self.p2p_host.stop()
            self.p2p_host = None
        if self.rpc is not None:
            self.rpc.stop_all()
        if self.metrics_server is not None:
            self.metrics_server.stop()
            self.metrics_server = None


def _print_line(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def run_node(
    selection: ChainSelection, settings: NodeSettings, faults: FaultPlan | None = None
) -> int:
    """Start the node, serve until SIGINT/SIGTERM or until supervision gives up, and return the
    exit code: 0 after a clean stop, 1 when supervision gave up (the reason is printed), 130 when
    a second signal forced the exit.

    A signal that comes while the node starts (generating the dev chain, opening the store) is
    held and acted on as soon as the tree runs; a second one exits at once.
    """
    early = StartupSignals()
    early.install()
    node = Node(selection, settings, faults=faults)
    try:
        node.start()
    finally:
        early.uninstall()
    assert node.tree is not None
    shutdown = GracefulShutdown(node.tree, stop_timeout=settings.shutdown_timeout)
    shutdown.install()
    if early.received is not None:
        os.kill(os.getpid(), early.received)  # now handled by GracefulShutdown
    event(log, "serving until Ctrl-C", datadir=str(selection.datadir))
    try:
        return shutdown.run()
    finally:
        shutdown.uninstall()
        node.close()
        event(log, "node stopped")


class StartupSignals:
    """SIGINT/SIGTERM handlers for the start-up: the first signal is remembered, a second one
    exits with 130 at once."""

    signals = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.received: signal.Signals | None = None
        self._previous: dict[signal.Signals, Any] = {}

    def install(self) -> None:
        """Install the handlers (main thread only)."""
        for signum in self.signals:
            self._previous[signum] = signal.signal(signum, self._on_signal)

    def uninstall(self) -> None:
        """Put back the handlers found by `install`."""
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.received is not None:
            print(f"khipu: second {name} during start-up, exiting now", file=sys.stderr)
            os._exit(EXIT_FORCED)
        self.received = signal.Signals(signum)
        print(f"khipu: {name} received while starting; stopping once started", file=sys.stderr)


__all__ = [
    "MetricsSettings",
    "MetricsUnavailable",
    "Node",
    "NodeSettings",
    "P2PConfig",
    "P2PUnavailable",
    "RpcUnavailable",
    "default_strategy",
    "run_node",
]
