"""RpcServer as a supervised child: the JSON-RPC servers, restarted on the same ports.

The servers answer requests on their own threads and read the StorageWriter's live store; this
actor only owns their life: it checks every `check_interval` that each server still serves and
fails if one does not, so its supervisor restarts it; every incarnation binds the same ports
(the ports chosen at the node's start, even where 0 asked for a free one).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from khipu.actors import ChildContext, SupervisedActor
from khipu.actors.timers import ActorTimers
from khipu.chain.config import Genesis
from khipu.chain.rules import ChainRules
from khipu.logs import event
from khipu.node_actors.faults import FaultPlan
from khipu.rpc.config import RpcConfig
from khipu.rpc.dispatch import CallObserver
from khipu.rpc.server import RpcServer, start_rpc

log = logging.getLogger("khipu.rpc")


class RpcServingStopped(RuntimeError):
    """A JSON-RPC server stopped serving on its own (its thread ended); names the URL."""

    def __init__(self, url: str) -> None:
        super().__init__(f"the JSON-RPC server at {url} stopped serving")
        self.url = url


@dataclass(frozen=True)
class CheckServing:
    """The RpcServer actor's timer: check that every server still serves."""


@dataclass
class RpcEndpoints:
    """The node's JSON-RPC servers, shared by every incarnation of the RpcServer actor.

    `configs` are the bound addresses (real ports); `servers` the running servers (empty while
    the actor restarts); `p2p_info`, once devp2p runs, is given to every new server.
    """

    store: Any  # a ChainStore or the node's LiveStore proxy
    rules: ChainRules
    genesis: Genesis | None
    health: Callable[[], dict[str, Any]] | None
    configs: list[RpcConfig] = field(default_factory=list)
    servers: list[RpcServer] = field(default_factory=list)
    p2p_info: Callable[[], dict[str, Any]] | None = None
    observer: CallObserver | None = None  # every call's method, outcome and time (metrics)
    sync_status: Callable[[], dict[str, Any]] | None = None  # eth_syncing's source
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def bind(self, config: RpcConfig) -> list[RpcServer]:
        """Start the HTTP server and, if `config.ws_port` is set, the WebSocket one; remember
        their real ports. Raises OSError if a port cannot be bound (nothing is left running)."""
        wanted = [config]
        if config.ws_port is not None:
            wanted.append(dataclasses.replace(config, port=config.ws_port, ws_port=None))
        started: list[RpcServer] = []
        try:
            for each in wanted:
                started.append(self._start(each))
        except OSError:
            for server in started:
                server.stop()
            raise
        with self._lock:
            self.configs = [
                dataclasses.replace(each, port=_port(server))
                for each, server in zip(wanted, started, strict=True)
            ]
        return started

    def rebind(self) -> list[RpcServer]:
        """Start servers on the remembered addresses again. Raises OSError as `bind`."""
        started: list[RpcServer] = []
        try:
            for config in list(self.configs):
                started.append(self._start(config))
        except OSError:
            for server in started:
                server.stop()
            raise
        return started

    def set_p2p_info(self, info: Callable[[], dict[str, Any]]) -> None:
        """Give `info` (admin_nodeInfo, net_listening, net_peerCount) to every server, now and
        after restarts."""
        self.p2p_info = info
        for server in list(self.servers):
            server.context.p2p_info = info

    def _start(self, config: RpcConfig) -> RpcServer:
        server = start_rpc(
            self.store,
            self.rules,
            config,
            health=self.health,
            genesis=self.genesis,
            sync_status=self.sync_status,
        )
        if self.p2p_info is not None:
            server.context.p2p_info = self.p2p_info
        server.dispatcher.observer = self.observer
        self.servers.append(server)
        event(log, "json-rpc serving", url=server.url)
        return server

    def stop_all(self) -> None:
        """Stop every running server (idempotent)."""
        while self.servers:
            self.servers.pop().stop()


def _port(server: RpcServer) -> int:
    return int(server.url.rstrip("/").rsplit(":", 1)[1])


class RpcServerActor(SupervisedActor):
    """Keeps the node's JSON-RPC servers serving: adopts the servers the node bound at start
    (so a busy port is reported before the tree runs), rebinds the same ports after a restart,
    and fails (to be restarted) when a server stops serving."""

    def __init__(
        self,
        context: ChildContext | None,
        endpoints: RpcEndpoints,
        *,
        check_interval: float = 1.0,
        faults: FaultPlan | None = None,
    ) -> None:
        super().__init__(context)
        self.endpoints = endpoints
        self.check_interval = check_interval
        self.faults = faults if faults is not None else FaultPlan()
        self._timers = ActorTimers(self.actor_ref)

    def on_start(self) -> None:
        if not self.endpoints.servers:
            self.endpoints.rebind()
        self._timers.every(self.check_interval, CheckServing())

    def on_stop(self) -> None:
        self._timers.cancel_all()
        self.endpoints.stop_all()

    def _actor_loop_teardown(self) -> None:
        # A failed incarnation frees its ports before its successor binds them.
        self._timers.cancel_all()
        self.endpoints.stop_all()
        super()._actor_loop_teardown()

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, CheckServing):
            self.check_serving()
            return None
        return super().on_receive(message)

    def check_serving(self) -> None:
        """Raise RpcServingStopped if a server no longer serves."""
        self.faults.check("RpcServer.check")
        for server in list(self.endpoints.servers):
            if not server.serving:
                raise RpcServingStopped(server.url)
