"""What every method handler gets: the chain view, the server's limits, filters and health."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from khipu.rpc.chain_view import ChainView
from khipu.rpc.config import RpcConfig

HealthSource = Callable[[], dict[str, Any]]


class Gauge:
    """A thread-safe count that goes up and down."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value = 0

    def add(self, amount: int) -> None:
        with self._lock:
            self._value += amount

    @property
    def value(self) -> int:
        return self._value


@dataclass
class Filter:
    """An installed eth_newFilter / eth_newBlockFilter and where its polling stands."""

    kind: str  # "logs" or "blocks"
    criteria: Any
    next_block: int
    last_poll: float = field(default_factory=time.monotonic)


class FilterTable:
    """Installed filters by id; safe to use from server threads."""

    def __init__(self, timeout: float) -> None:
        self._filters: dict[str, Filter] = {}
        self._lock = threading.Lock()
        self._timeout = timeout
        self._counter = 0

    def install(self, flt: Filter) -> str:
        with self._lock:
            self._expire()
            self._counter += 1
            filter_id = hex((int(time.time() * 1000) << 20) + self._counter)
            self._filters[filter_id] = flt
            return filter_id

    def get(self, filter_id: str) -> Filter | None:
        with self._lock:
            self._expire()
            flt = self._filters.get(filter_id)
            if flt is not None:
                flt.last_poll = time.monotonic()
            return flt

    def remove(self, filter_id: str) -> bool:
        with self._lock:
            return self._filters.pop(filter_id, None) is not None

    def _expire(self) -> None:
        now = time.monotonic()
        for filter_id in [k for k, f in self._filters.items() if now - f.last_poll > self._timeout]:
            del self._filters[filter_id]


def default_health() -> dict[str, Any]:
    """The health snapshot when the node passes none: the RPC server alone, running."""
    return {
        "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "actors": [
            {
                "actor": "RpcServer",
                "state": "running",
                "mailbox": 0,
                "processed": None,
                "restarts": 0,
                "last_error": None,
            }
        ],
    }


class RpcContext:
    """Shared by all requests: read-only chain access plus the few bits of mutable state."""

    def __init__(
        self,
        view: ChainView,
        config: RpcConfig,
        health: HealthSource | None = None,
        sync_status: HealthSource | None = None,
    ) -> None:
        self.view = view
        self.config = config
        self.health = health or default_health
        self.sync_status = sync_status
        self.filters = FilterTable(config.filter_timeout)
        self.stopping = threading.Event()  # set by RpcServer.stop(): running EVM calls end
        self.requests_in_flight = Gauge()  # HTTP requests being handled now
        # Set by the node when it serves devp2p: a callable giving P2PHost.node_info().
        self.p2p_info: Callable[[], dict[str, Any]] | None = None
        self.started_at = time.time()
