"""Progress of long work: blocks/s, tx/s, Mgas/s and ETA, in lines for people and parsers."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO


class ImportProgress:
    """Counts blocks imported (or generated) and reports rates at most once per `interval` s.

    `label` starts each line: "import" for `khipu import`, "generate" for the dev chain builder.
    """

    def __init__(
        self,
        total_blocks: int | None,
        stream: TextIO | None = None,
        interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        label: str = "import",
    ) -> None:
        self.label = label
        self.total_blocks = total_blocks
        self.stream = stream if stream is not None else sys.stderr
        self.interval = interval
        self.clock = clock
        self.started = clock()
        self._last_report = self.started
        self.blocks = 0  # blocks processed, including ones already stored
        self.imported = 0
        self.txs = 0
        self.gas = 0
        self.head = 0

    def advance(self, number: int, txs: int, gas: int, imported: bool = True) -> None:
        """Record one block; report if the interval has passed."""
        self.blocks += 1
        self.head = number
        if imported:
            self.imported += 1
            self.txs += txs
            self.gas += gas
        now = self.clock()
        if now - self._last_report >= self.interval:
            self._last_report = now
            self.report()

    @property
    def seconds(self) -> float:
        return self.clock() - self.started

    def line(self) -> str:
        """One logfmt line: counts, rates and, when the total is known, percent and ETA."""
        elapsed = max(self.seconds, 1e-9)
        parts = [
            f"head={self.head}",
            f"imported={self.imported}",
            f"blocks_per_s={self.imported / elapsed:.1f}",
            f"tx_per_s={self.txs / elapsed:.1f}",
            f"mgas_per_s={self.gas / elapsed / 1e6:.2f}",
        ]
        if self.total_blocks:
            done = min(self.blocks, self.total_blocks)
            rate = self.blocks / elapsed
            eta = (self.total_blocks - done) / rate if rate > 0 else 0.0
            parts.insert(0, f"progress={done}/{self.total_blocks}")
            parts.append(f"pct={100 * done / self.total_blocks:.1f}")
            parts.append(f"eta={_duration(eta)}")
        return f"{self.label} " + " ".join(parts)

    def report(self) -> None:
        print(self.line(), file=self.stream, flush=True)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"
