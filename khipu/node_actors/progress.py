"""Import progress the node shows to people: head, target, recent rates, and what the import does.

`ImportStatus` is written by the StorageWriter (the committed head) and the Importer (target,
rates, state) and read from any thread (`Node.health_snapshot`, health lines). It mirrors storage
and the block files; no actor rebuilds its state from it.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


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

    `state` is one of: starting, importing, done (every block of the files is stored),
    failed (an invalid block or unreadable file stopped it; `error` says which), idle (nothing
    to import).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.state = "starting"
        self.head: int | None = None
        self.target: int | None = None
        self.rates = ImportRates(0.0, 0.0, 0.0)
        self.imported = 0  # blocks committed by this node process
        self.error: str | None = None

    def update(self, **fields: Any) -> None:
        """Set some of: state, head, target, rates, imported, error."""
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
            return {
                "stage": "import",
                "state": self.state,
                "head": self.head,
                "target": self.target,
                "imported": self.imported,
                "blocks_per_s": round(self.rates.blocks_per_s, 2),
                "tx_per_s": round(self.rates.tx_per_s, 1),
                "mgas_per_s": round(self.rates.mgas_per_s, 3),
                "error": self.error,
            }
