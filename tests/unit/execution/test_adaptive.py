"""The adaptive choice between serial and parallel execution, on a clock the test drives."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from khipu.execution.adaptive import PARALLEL, SERIAL, AdaptiveExecutor
from khipu.execution.executor import BlockExecution


class Harness:
    """Fake blocks of 10 transactions and 1000 gas; each mode advances the clock by its cost."""

    def __init__(
        self, serial_cost: float, parallel_cost: float, reexecuted: int, largest_share: int = 4
    ) -> None:
        self.now = 0.0
        self.costs = {SERIAL: serial_cost, PARALLEL: parallel_cost}
        self.reexecuted = reexecuted
        self.largest_share = largest_share
        self.modes: list[str] = []

    def run(self, mode: str, block: Any) -> BlockExecution:
        self.now += self.costs[mode]
        self.modes.append(mode)
        if mode == SERIAL:
            return BlockExecution(block, mode, 10)
        return BlockExecution(block, mode, 10, self.reexecuted, largest_share=self.largest_share)

    def executor(
        self, probe_every: int = 4, warmup: int = 0, min_samples: int = 1
    ) -> AdaptiveExecutor:
        return AdaptiveExecutor(
            lambda block: self.run(SERIAL, block),
            lambda block: self.run(PARALLEL, block),
            lambda block: len(block.transactions) >= 2,
            probe_every=probe_every,
            clock=lambda: self.now,
            warmup=warmup,
            min_samples=min_samples,
        )


def block(transactions: int = 10) -> Any:
    return SimpleNamespace(transactions=[object()] * transactions,
                           header=SimpleNamespace(gas_used=1000))  # fmt: skip


def test_a_faster_parallel_mode_is_kept_apart_from_probes() -> None:
    harness = Harness(serial_cost=2.0, parallel_cost=1.0, reexecuted=1)
    executor = harness.executor(probe_every=4)
    for _ in range(9):
        executor.execute(block())
    # measure both, then parallel, with a serial probe on every 4th eligible block
    assert harness.modes[:2] == [PARALLEL, SERIAL]
    assert harness.modes[2:] == [PARALLEL, SERIAL, PARALLEL, PARALLEL, PARALLEL, SERIAL, PARALLEL]


def test_a_slower_parallel_mode_is_left_for_serial() -> None:
    harness = Harness(serial_cost=1.0, parallel_cost=3.0, reexecuted=0)
    executor = harness.executor(probe_every=100)
    for _ in range(6):
        executor.execute(block())
    assert harness.modes == [PARALLEL, SERIAL, SERIAL, SERIAL, SERIAL, SERIAL]


def test_mostly_conflicting_blocks_run_serially_even_if_parallel_looked_cheaper() -> None:
    harness = Harness(serial_cost=2.0, parallel_cost=1.0, reexecuted=9)
    executor = harness.executor(probe_every=100)
    for _ in range(5):
        executor.execute(block())
    assert harness.modes == [PARALLEL, SERIAL, SERIAL, SERIAL, SERIAL]
    assert executor.stats.last_conflict_ratio == 0.9


def test_blocks_speculated_as_one_long_chain_run_serially_even_if_parallel_looked_cheaper() -> None:
    # nothing re-executed, but 7 of 10 transactions speculated in one share: 1.4 ways
    harness = Harness(serial_cost=2.0, parallel_cost=1.0, reexecuted=0, largest_share=7)
    executor = harness.executor(probe_every=100)
    for _ in range(4):
        executor.execute(block())
    assert harness.modes == [PARALLEL, SERIAL, SERIAL, SERIAL]
    assert executor.stats.last_parallelism == 10 / 7


def test_blocks_that_cannot_run_in_parallel_teach_nothing() -> None:
    harness = Harness(serial_cost=1.0, parallel_cost=1.0, reexecuted=0)
    executor = harness.executor()
    executor.execute(block(transactions=1))
    assert harness.modes == [SERIAL]
    assert executor.stats.seconds_per_gas == {}
    assert executor.stats.blocks == {PARALLEL: 0, SERIAL: 0}


def test_a_slow_first_parallel_block_is_a_warmup_and_not_held_against_parallel() -> None:
    harness = Harness(serial_cost=2.0, parallel_cost=1.0, reexecuted=0)
    harness.costs[PARALLEL] = 50.0  # the first parallel block waits for the workers to start
    executor = harness.executor(probe_every=100, warmup=1)
    executor.execute(block())
    harness.costs[PARALLEL] = 1.0
    for _ in range(5):
        executor.execute(block())
    # each mode's first block is a warm-up: measure each on its second, then keep parallel
    assert harness.modes == [PARALLEL, PARALLEL, SERIAL, SERIAL, PARALLEL, PARALLEL]
    assert executor.stats.seconds_per_gas[PARALLEL] < executor.stats.seconds_per_gas[SERIAL]


def test_each_mode_is_measured_on_several_blocks_before_the_averages_choose() -> None:
    harness = Harness(serial_cost=1.0, parallel_cost=3.0, reexecuted=0)
    harness.costs[SERIAL] = 9.0  # one unlucky serial block (the machine was busy)
    executor = harness.executor(probe_every=100, min_samples=3)
    for _ in range(4):
        executor.execute(block())
    harness.costs[SERIAL] = 1.0
    for _ in range(4):
        executor.execute(block())
    # three parallel blocks, then serial until it has three too; the outlier is outvoted
    assert harness.modes == [PARALLEL] * 3 + [SERIAL] * 5
    assert executor.stats.samples == {PARALLEL: 3, SERIAL: 5}
