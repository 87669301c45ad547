"""The node's Prometheus metrics, named in one place, and the HTTP server that exposes them."""

from __future__ import annotations

import http.server
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import choose_encoder

logger = logging.getLogger("khipu.metrics")

DEFAULT_METRICS_ADDR = "127.0.0.1"
DEFAULT_METRICS_PORT = 6060
DEFAULT_METRICS_PATH = "/metrics"

# RPC latencies: sub-millisecond cache hits up to multi-second archive queries.
RPC_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)


class NodeMetrics:
    """Every metric the node exports, registered in its own registry (not the global one), so a
    test or a second node in one process gets a fresh set.

    Components receive this object and update the attribute they own; the names below are the
    only place the exported names are spelled.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        # import and execution
        self.blocks_imported = Counter(
            "khipu_blocks_imported", "Blocks executed, verified and committed.", registry=r
        )
        self.transactions_imported = Counter(
            "khipu_transactions_imported", "Transactions in committed blocks.", registry=r
        )
        self.gas_used = Counter("khipu_gas_used", "Gas used by committed blocks.", registry=r)
        self.head_block = Gauge("khipu_head_block_number", "Number of the head block.", registry=r)
        self.import_rate = Gauge(
            "khipu_import_rate_blocks_per_second", "Blocks imported per second, recent.", registry=r
        )
        self.gas_rate = Gauge(
            "khipu_import_rate_gas_per_second", "Gas executed per second, recent.", registry=r
        )
        self.parallel_rate = Gauge(
            "khipu_parallel_rate",
            "Share of transactions committed from parallel execution without a re-run (0..1).",
            registry=r,
        )
        self.workers = Gauge(
            "khipu_execution_workers", "Worker processes by state.", ["state"], registry=r
        )
        self.reexecutions = Counter(
            "khipu_reexecutions",
            "Transactions re-executed in the merge (their speculative run was not usable).",
            registry=r,
        )
        self.blocks_executed = Counter(
            "khipu_blocks_executed",
            "Blocks executed, by mode: parallel, serial (chosen as cheaper), serial-only (cannot "
            "run in parallel), serial-fallback (the parallel attempt was not usable).",
            ["mode"],
            registry=r,
        )
        self.execution_tasks = Counter(
            "khipu_execution_tasks", "Tasks completed by execution worker processes.", registry=r
        )
        self.storage_root_tasks = Counter(
            "khipu_storage_root_tasks",
            "Storage-trie update tasks (a block's accounts' storage roots) sent to the workers.",
            registry=r,
        )
        self.execution_retries = Counter(
            "khipu_execution_task_retries",
            "Tasks retried because their worker died or overran its time limit.",
            registry=r,
        )
        self.execution_kills = Counter(
            "khipu_execution_worker_kills",
            "Worker processes killed for overrunning a task's time limit.",
            registry=r,
        )
        self.execution_restarts = Counter(
            "khipu_execution_worker_restarts",
            "Worker processes started to replace one that died or was killed.",
            registry=r,
        )
        # actors
        self.actor_restarts = Counter(
            "khipu_actor_restarts", "Restarts of an actor by its supervisor.", ["actor"], registry=r
        )
        self.actor_mailbox = Gauge(
            "khipu_actor_mailbox_messages",
            "Messages waiting in an actor's mailbox.",
            ["actor"],
            registry=r,
        )
        self.actor_state = Gauge(
            "khipu_actor_state",
            "1 for an actor's current state, else 0.",
            ["actor", "state"],
            registry=r,
        )
        # JSON-RPC
        self.rpc_requests = Counter(
            "khipu_rpc_requests",
            "JSON-RPC requests by method and outcome (ok or error).",
            ["method", "outcome"],
            registry=r,
        )
        self.rpc_latency = Histogram(
            "khipu_rpc_request_duration_seconds",
            "JSON-RPC request latency.",
            ["method"],
            buckets=RPC_LATENCY_BUCKETS,
            registry=r,
        )
        # storage: measured when scraped, once the node names its datadir
        self.store_size = DatadirSizes()
        r.register(self.store_size)

    def observe_rpc(self, method: str, ok: bool, seconds: float) -> None:
        """Count one JSON-RPC call of `method` (a known method name, or "unknown") and its
        latency; the RPC dispatcher calls this for every request."""
        self.rpc_requests.labels(method=method, outcome="ok" if ok else "error").inc()
        self.rpc_latency.labels(method=method).observe(seconds)


class DatadirSizes:
    """`khipu_store_size_bytes{topic}`: bytes on disk of each Kesque topic (segments and
    indexes) and of the LevelDB index store (`chaindata`), listed from the datadir at each
    scrape, so the numbers are never stale and cost nothing between scrapes."""

    NAME = "khipu_store_size_bytes"
    HELP = "Bytes on disk per Kesque topic, and of the LevelDB indexes (topic=chaindata)."

    def __init__(self) -> None:
        self.datadir: Path | None = None

    def watch(self, datadir: Path) -> None:
        """Report the stores of `datadir` from now on."""
        self.datadir = Path(datadir)

    def sizes(self) -> dict[str, int]:
        """Bytes per topic (and `chaindata`) of the watched datadir; empty before `watch`."""
        if self.datadir is None:
            return {}
        folders = {"chaindata": self.datadir / "chaindata"}
        kesque = self.datadir / "kesque"
        if kesque.is_dir():
            folders |= {
                entry.name: Path(entry.path) for entry in os.scandir(kesque) if entry.is_dir()
            }
        return {name: _folder_bytes(folder) for name, folder in sorted(folders.items())}

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(self.NAME, self.HELP, labels=["topic"])

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(self.NAME, self.HELP, labels=["topic"])
        for topic, size in self.sizes().items():
            family.add_metric([topic], size)
        yield family


def _folder_bytes(folder: Path) -> int:
    """Bytes of the regular files directly in `folder` (0 if it is gone or unreadable)."""
    total = 0
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                try:
                    if entry.is_file(follow_symlinks=False):
                        total += entry.stat(follow_symlinks=False).st_size
                except OSError:  # removed while listing (a segment rolled, an index regrown)
                    continue
    except OSError:
        return 0
    return total


class MetricsServer:
    """Serves the registry in the Prometheus text format at `path` on `addr:port` (port 0 picks
    a free port; read it back from `port`). Any other path is 404.

    Raises OSError if the address cannot be bound.
    """

    def __init__(
        self,
        metrics: NodeMetrics,
        addr: str = DEFAULT_METRICS_ADDR,
        port: int = DEFAULT_METRICS_PORT,
        path: str = DEFAULT_METRICS_PATH,
    ) -> None:
        registry = metrics.registry

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?", 1)[0] != path:
                    self.send_error(404, f"metrics are at {path}")
                    return
                encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
                body = encoder(registry)
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                logger.debug("metrics %s: " + format, self.client_address[0], *args)

        self._server = http.server.ThreadingHTTPServer((addr, port), Handler)
        self._server.daemon_threads = True
        self.addr = addr
        self.port: int = self._server.server_address[1]
        self.path = path
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.1,), name="metrics-http", daemon=True
        )

    @property
    def url(self) -> str:
        """The scrape URL, e.g. 'http://127.0.0.1:6060/metrics'."""
        return f"http://{self.addr}:{self.port}{self.path}"

    def start(self) -> MetricsServer:
        """Start serving in a daemon thread; returns self."""
        self._thread.start()
        logger.info("metrics at %s", self.url)
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()
