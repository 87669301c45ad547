"""Choosing serial or parallel execution per block, from what recent blocks cost.

Parallel execution only pays when transactions mostly commute and there are cores to spare; a
block whose transactions mostly conflict costs the speculation on top of a serial re-execution.
`AdaptiveExecutor` keeps each mode's seconds per gas (the median of its last blocks), runs the
cheaper one, runs serially after a parallel block that re-executed more than `conflict_limit` of its
transactions or whose speculation was split fewer than `min_parallelism` ways (its transactions
over those of its largest share: a block of swaps on one pool is speculated as one long chain),
and probes the other mode every `probe_every` blocks so the averages stay current.
"""

from __future__ import annotations

import statistics
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from eth.abc import BlockAPI

from khipu.execution.executor import BlockExecution

PARALLEL, SERIAL = "parallel", "serial"
RECENT_BLOCKS = 5  # each mode's cost is the median of its last blocks (one outlier is outvoted)


@dataclass
class AdaptiveStats:
    """What the executor has learnt so far (also for metrics)."""

    seconds_per_gas: dict[str, float] = field(default_factory=dict)
    last_conflict_ratio: float = 0.0
    last_parallelism: float = float("inf")  # transactions / transactions of the largest share
    blocks: dict[str, int] = field(default_factory=lambda: {PARALLEL: 0, SERIAL: 0})
    samples: dict[str, int] = field(default_factory=lambda: {PARALLEL: 0, SERIAL: 0})


class AdaptiveExecutor:
    """Runs each block with `run_parallel` or `run_serial`, whichever recent blocks say is faster.

    `can_parallel(block)` says whether the block may run in parallel at all (fork, transaction
    count); blocks it refuses run serially and teach nothing. The first `warmup` blocks of each
    mode teach nothing about its cost either (workers starting, cold caches), and each mode is
    measured on `min_samples` blocks before the averages choose (one noisy block decided it).
    """

    def __init__(
        self,
        run_serial: Callable[[BlockAPI], BlockExecution],
        run_parallel: Callable[[BlockAPI], BlockExecution],
        can_parallel: Callable[[BlockAPI], bool],
        *,
        probe_every: int = 16,
        conflict_limit: float = 0.5,
        min_parallelism: float = 1.8,
        clock: Callable[[], float] = time.perf_counter,
        warmup: int = 0,
        min_samples: int = 1,
    ) -> None:
        self.run_serial = run_serial
        self.run_parallel = run_parallel
        self.can_parallel = can_parallel
        self.probe_every = probe_every
        self.conflict_limit = conflict_limit
        self.min_parallelism = min_parallelism
        self.clock = clock
        self.warmup = warmup
        self.min_samples = max(1, min_samples)
        self.stats = AdaptiveStats()
        self._recent: dict[str, deque[float]] = {}
        self._eligible = 0

    def choose(self, block: BlockAPI) -> str:
        """The mode the next eligible block should run in."""
        costs = self.stats.seconds_per_gas
        # The last parallel block re-executed too much, or was speculated as one long chain.
        conflicted = (
            self.stats.last_conflict_ratio > self.conflict_limit
            or self.stats.last_parallelism < self.min_parallelism
        )
        for mode in (PARALLEL, SERIAL):
            if mode == PARALLEL and conflicted:
                continue  # no more samples of a mode that does not suit these blocks
            if mode not in costs or self.stats.samples[mode] < self.min_samples:
                return mode  # no estimate yet, or too few blocks behind it: measure it
        if conflicted or PARALLEL not in costs:
            preferred = SERIAL
        else:
            preferred = PARALLEL if costs[PARALLEL] < costs[SERIAL] else SERIAL
        if self._eligible % self.probe_every == 0:
            return SERIAL if preferred == PARALLEL else PARALLEL
        return preferred

    def execute(self, block: BlockAPI) -> BlockExecution:
        """Execute `block` in the chosen mode and learn from what it cost."""
        if not self.can_parallel(block):
            return self.run_serial(block)
        self._eligible += 1
        mode = self.choose(block)
        started = self.clock()
        execution = self.run_parallel(block) if mode == PARALLEL else self.run_serial(block)
        elapsed = self.clock() - started
        self.stats.blocks[mode] += 1
        gas = block.header.gas_used
        if gas > 0 and self.stats.blocks[mode] > self.warmup:
            recent = self._recent.setdefault(mode, deque(maxlen=RECENT_BLOCKS))
            recent.append(elapsed / gas)
            self.stats.seconds_per_gas[mode] = statistics.median(recent)
            self.stats.samples[mode] += 1
        if mode == PARALLEL and execution.transactions:
            self.stats.last_conflict_ratio = execution.reexecuted / execution.transactions
            largest = execution.largest_share
            self.stats.last_parallelism = (
                execution.transactions / largest if largest else float("inf")
            )
        return execution
