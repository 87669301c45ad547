"""Import progress the node shows to people: head, target, recent rates, and what the import does.

`ImportStatus` is written by the StorageWriter (the committed head) and the Importer (target,
rates, state) and read from any thread (`Node.health_snapshot`, health lines). It mirrors storage
and the block files; no actor rebuilds its state from it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from khipu.actors.metrics import NodeMetrics
from khipu.logs import event


@dataclass(frozen=True)
class ImportRates:
    """Recent throughput: blocks, transactions and million gas per second."""

    blocks_per_s: float
    tx_per_s: float
    mgas_per_s: float


class RateWindow:
    """Rates over the blocks committed in the last `seconds` (a sliding window)."""

    def __init__(self, seconds: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self.clock = clock
        self._started = clock()
        self._samples: deque[tuple[float, int, int]] = deque()  # (time, txs, gas) per block

    def add(self, txs: int, gas: int) -> None:
        """Count one committed block now."""
        now = self.clock()
        self._samples.append((now, txs, gas))
        self._forget(now)

    def rates(self) -> ImportRates:
        """Rates over the window, or since the first block when the window is not yet full."""
        now = self.clock()
        self._forget(now)
        if not self._samples:
            return ImportRates(0.0, 0.0, 0.0)
        span = max(min(self.seconds, now - self._started), 1e-3)
        blocks = len(self._samples)
        txs = sum(sample[1] for sample in self._samples)
        gas = sum(sample[2] for sample in self._samples)
        return ImportRates(blocks / span, txs / span, gas / span / 1e6)

    def _forget(self, now: float) -> None:
        while self._samples and self._samples[0][0] < now - self.seconds:
            self._samples.popleft()


class ImportStatus:
    """What the import is doing; thread-safe.

    `stage` is who moves the head: "import" (block files, the Importer) or "sync" (peers,
    RegularSync). For the import, `state` is one of: starting, importing, done (every block of
    the files is stored), failed (an invalid block or unreadable file stopped it; `error` says
    which), idle (nothing to import). For the sync: waiting (no peer ahead of us yet), syncing,
    synced (no peer has a block beyond our head).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.stage = "import"
        self.state = "starting"
        self.starting_block: int | None = None  # the head when the current stage began
        self.peer: str | None = None  # the peer the sync downloads from
        self.head: int | None = None
        self.target: int | None = None
        self.rates = ImportRates(0.0, 0.0, 0.0)
        self.imported = 0  # blocks committed by this node process
        self.error: str | None = None

    def update(self, **fields: Any) -> None:
        """Set some of: stage, state, starting_block, peer, head, target, rates, imported,
        error."""
        with self._lock:
            for name, value in fields.items():
                if not hasattr(self, name) or name.startswith("_"):
                    raise AttributeError(f"ImportStatus has no field {name!r}")
                setattr(self, name, value)

    def record_commit(self, number: int) -> None:
        """The StorageWriter committed block `number`: it is the head now."""
        with self._lock:
            self.head = number
            self.imported += 1

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready picture, the `sync` part of `khipu_health`."""
        with self._lock:
            snapshot: dict[str, Any] = {
                "stage": self.stage,
                "state": self.state,
                "head": self.head,
                "target": self.target,
                "imported": self.imported,
                "blocks_per_s": round(self.rates.blocks_per_s, 2),
                "tx_per_s": round(self.rates.tx_per_s, 1),
                "mgas_per_s": round(self.rates.mgas_per_s, 3),
                "eta_s": eta_seconds(self.head, self.target, self.rates.blocks_per_s),
                "error": self.error,
            }
            if self.stage == "sync":  # what eth_syncing and khipu_syncStatus report
                snapshot["starting_block"] = self.starting_block
                snapshot["highest_block"] = self.target
                snapshot["peer"] = self.peer
            return snapshot


def eta_seconds(head: int | None, target: int | None, blocks_per_s: float) -> int | None:
    """Seconds until `head` reaches `target` at the current rate; None if unknown or stalled."""
    if head is None or target is None or blocks_per_s <= 0:
        return None
    return round(max(0, target - head) / blocks_per_s)


class ProgressReporter:
    """Counts committed blocks into `status`'s rates and the rate gauges, and logs a progress
    line (`message`, with head, target, rates and ETA) at most every `interval` seconds."""

    def __init__(
        self,
        status: ImportStatus,
        log: logging.Logger,
        message: str,
        interval: float,
        metrics: NodeMetrics | None = None,
    ) -> None:
        self.status = status
        self.log = log
        self.message = message
        self.interval = interval
        self.metrics = metrics
        self.window = RateWindow()
        self.counted = 0
        self._last_line = time.monotonic()

    def record(self, number: int, transactions: int, gas_used: int) -> None:
        """Block `number` was committed with these transactions and gas."""
        self.counted += 1
        self.window.add(transactions, gas_used)
        rates = self.window.rates()
        self.status.update(rates=rates)
        if self.metrics is not None:
            self.metrics.import_rate.set(rates.blocks_per_s)
            self.metrics.gas_rate.set(rates.mgas_per_s * 1e6)
        now = time.monotonic()
        if now - self._last_line >= self.interval:
            self._last_line = now
            self.line(self.message, head=number)

    def line(self, message: str, **fields: Any) -> None:
        """Log `message` with the status's head, target, rates and ETA (and `fields`)."""
        snapshot = self.status.snapshot()
        shown = {
            "head": snapshot["head"],
            "target": snapshot["target"],
            "blocks_per_s": snapshot["blocks_per_s"],
            "tx_per_s": snapshot["tx_per_s"],
            "mgas_per_s": snapshot["mgas_per_s"],
            "eta_s": snapshot["eta_s"],
        }
        shown.update(fields)
        event(self.log, message, **shown)

    def idle(self) -> None:
        """Nothing is being committed: rates to zero."""
        self.status.update(rates=ImportRates(0.0, 0.0, 0.0))
        if self.metrics is not None:
            self.metrics.import_rate.set(0)
            self.metrics.gas_rate.set(0)
