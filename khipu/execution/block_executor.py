"""The block executor the importer calls: parallel where it pays, serial where it does not.

`ParallelBlockExecutor` is what `khipu import` and the node's StorageWriter hand to
`BlockImporter(executor=...)`. It merges every block on the caller's own chain; only the
speculation tasks go to a `TaskRunner`: a `WorkerPool` of its own (`khipu import`) or the node's
ExecutionSupervisor (`khipu run`). Workers read the parent state from the datadir through
`ChainStore.open_readonly`; the store commits each block as it persists it, so the parent of
every block is visible to them.

Each block runs in one of four modes, chosen per block:

- parallel: speculation on the workers, then the in-order merge;
- serial: the AdaptiveExecutor judged serial cheaper (most transactions conflict, as in a block
  of swaps on one AMM pool), or it is probing serial's cost;
- serial-only: the block cannot run in parallel (before Byzantium with
  KHIPU_PARALLEL_PRE_BYZANTIUM=0; blocks of fewer than two transactions run batched, in order);
- serial-fallback: the parallel result disagreed with the header, or no worker could run the
  speculation (the ExecutionSupervisor restarting past its deadline, a task that raised).

Every block logs one line (`block executed`: block, mode, txs, parallel_rate, reexecuted,
largest_share: transactions in the largest speculation chain, ms, speculate_ms, merge_ms,
roots_ms: the state root's share of merge_ms, roots_tasks: storage-root tasks sent to the
workers, senders_ahead: 1 if the workers recovered its senders ahead, see below) and feeds
the same figures to the metrics. The end-of-block storage tries of a block with enough slot
updates are updated on the same workers (storage_roots.py).

With `sender_lookahead` (`khipu import`, whose loop calls `expect(next_block)` before importing
the current one), after a block that ran in parallel one worker recovers the next block's
senders (and checks the signatures py-evm would check) while this process persists the current
block; executing the next block then finds them cached (senders.worker_senders). After a block
run otherwise it does not: the adaptive choice found no core to spare then, and measured here
with the second core busy, a worker recovering senders slowed this process's persist by more
than the recovery saved. A block whose senders did not arrive recovers them here as before.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Protocol, cast

import rlp
from eth.abc import BlockAPI

from khipu.actors.metrics import NodeMetrics
from khipu.chain.chain import KhipuChain
from khipu.chain.rules import ChainRules
from khipu.execution.adaptive import AdaptiveExecutor
from khipu.execution.executor import (
    BlockExecution,
    SpeculationTask,
    TxOutcome,
    execute_block_batched,
    execute_block_parallel,
    execute_block_serial,
    supports_parallel,
)
from khipu.execution.pool import PoolLimits, TaskError, WorkerPool
from khipu.execution.senders import SenderTask, worker_senders
from khipu.execution.storage_roots import MIN_UPDATES_FOR_WORKERS, RootTaskRunner, StorageRoots
from khipu.execution.worker import DatadirWorker
from khipu.logs import event

log = logging.getLogger("khipu.execution")

MIN_TRANSACTIONS = 2  # fewer transactions than this run serially (nothing to overlap)
MODES = ("parallel", "batched", "serial", "serial-only", "serial-fallback")


class SpeculationUnavailable(RuntimeError):
    """No worker could run a block's speculation; the block is then executed serially."""


class TaskRunner(Protocol):
    """Runs speculation tasks on workers and returns their results in order.

    Raises SpeculationUnavailable when it cannot (the block then runs serially).
    """

    def map(self, tasks: Sequence[SpeculationTask]) -> list[list[TxOutcome]]: ...


class LocalPool:
    """A `TaskRunner` over a `WorkerPool` owned by this process (`khipu import`).

    `start_in_background()` starts the workers from another thread (the first worker also
    starts the forkserver, which imports py-evm: over a second here) while this process goes
    on; `ready()` says whether that is done, and `map` first waits for it.
    """

    def __init__(self, pool: WorkerPool[SpeculationTask, list[TxOutcome]]) -> None:
        self.pool = pool
        self._starting: Future[int] | None = None
        self._starter: ThreadPoolExecutor | None = None

    def start_in_background(self) -> None:
        """Start the pool's workers from a thread of its own (safe: the forkserver, not this
        process, forks them). A start that fails is retried by the next `map`."""
        self._starter = ThreadPoolExecutor(1, thread_name_prefix="khipu-pool-start")
        self._starting = self._starter.submit(self.pool.start_workers)

    def ready(self) -> bool:
        """False while the workers are being started in the background."""
        return self._starting is None or self._starting.done()

    def map(self, tasks: Sequence[SpeculationTask]) -> list[list[TxOutcome]]:
        """The pool's results; a task that raised in a worker is SpeculationUnavailable."""
        self._started()
        try:
            return self.pool.map(tasks)
        except TaskError as error:
            raise SpeculationUnavailable(str(error)) from error

    def close(self) -> None:
        """Stop the workers."""
        self._started()
        self.pool.close()

    def _started(self) -> None:
        starting, self._starting = self._starting, None
        if starting is None:
            return
        try:
            starting.result()
        except Exception as error:  # map forks what is missing (and raises if it cannot)
            log.warning("starting the workers failed: %s", error)
        assert self._starter is not None
        self._starter.shutdown(wait=True)


def speculation_pool(
    datadir: Path, rules: ChainRules, limits: PoolLimits, start_method: str
) -> WorkerPool[SpeculationTask, list[TxOutcome]]:
    """A pool whose workers speculate on the parent states stored in `datadir`."""
    # Fresh rules: the caller's may hold VM classes built at run time, which do not pickle.
    handler = DatadirWorker(Path(datadir), ChainRules(rules.config))
    return WorkerPool(handler, limits, start_method=start_method)


class ParallelBlockExecutor:
    """Executes blocks of `chain` with speculation on `runner` and the merge in this thread.

    Calling it with a block returns the executed block, as py-evm's serial `import_block` would;
    raises py-evm's ValidationError for a block that is invalid. `modes` counts blocks by mode.
    `workers` is how many tasks a block's transactions are split into. `always_parallel` skips
    the adaptive choice (every block that can run in parallel does: tests and benchmarks).
    The end-of-block storage roots go to the same runner (`roots_on_workers`) when a block has
    at least `roots_min_updates` slot updates (storage_roots.StorageRoots; `storage_roots`
    holds its counters). With `sender_lookahead` the block announced by `expect` has its
    senders recovered on the runner from a background thread after the current block is
    executed (the runner must then take `SenderTask`s and be safe to call from that thread
    while this one persists: a pool that never forks this process, see `with_own_pool`).
    `senders_ahead` counts the blocks that found their senders so recovered.
    """

    def __init__(
        self,
        chain: KhipuChain,
        runner: TaskRunner,
        *,
        workers: int,
        metrics: NodeMetrics | None = None,
        always_parallel: bool = False,
        roots_on_workers: bool = True,
        roots_min_updates: int = MIN_UPDATES_FOR_WORKERS,
        sender_lookahead: bool = False,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, not {workers}")
        self.chain = chain
        self.runner = runner
        self.workers = workers
        self.metrics = metrics
        self.modes: Counter[str] = Counter()
        self.always_parallel = always_parallel
        # The storage roots of every block go to the same workers (see storage_roots).
        roots_runner = cast(RootTaskRunner, runner) if roots_on_workers else None
        self.storage_roots = StorageRoots(roots_runner, workers, min_updates=roots_min_updates)
        # The first parallel block waits for the workers to start: not a measure of its cost.
        self.adaptive = AdaptiveExecutor(
            self._run_serial, self._run_parallel, lambda _block: True, warmup=1, min_samples=3
        )
        self._transactions = 0
        self._committed = 0  # transactions committed from the speculative pass
        self._roots_tasks = 0  # storage-root tasks sent to the workers before this block
        self._expected: BlockAPI | None = None  # the block `expect` announced
        self._lookahead = (
            ThreadPoolExecutor(1, thread_name_prefix="khipu-senders") if sender_lookahead else None
        )
        self._senders: tuple[bytes, Future[list[bytes | None]]] | None = None  # (hash, result)
        self.senders_ahead = 0

    @classmethod
    def with_own_pool(
        cls,
        chain: KhipuChain,
        datadir: Path,
        *,
        workers: int,
        start_method: str = "forkserver",
        metrics: NodeMetrics | None = None,
        always_parallel: bool = False,
        roots_min_updates: int = MIN_UPDATES_FOR_WORKERS,
    ) -> ParallelBlockExecutor:
        """An executor with a pool of its own over `datadir` (`close()` stops it), whose
        workers start in the background: until they are up, blocks run in order here.

        Workers come from the forkserver even in a single-threaded process: a forked worker
        would inherit the open store's lock (a flock) and, orphaned by a SIGKILL of this
        process, keep the datadir locked."""
        pool = speculation_pool(datadir, chain.rules, PoolLimits(workers=workers), start_method)
        runner = LocalPool(pool)
        if start_method != "fork":
            runner.start_in_background()
        return cls(
            chain,
            runner,
            workers=workers,
            metrics=metrics,
            always_parallel=always_parallel,
            roots_min_updates=roots_min_updates,
            # a forkserver pool never forks this process, so a background thread may use it
            sender_lookahead=start_method != "fork",
        )

    def expect(self, block: BlockAPI) -> None:
        """`block` is the next one to be executed: with `sender_lookahead`, its senders are
        recovered on the workers once the current block is executed."""
        self._expected = block

    def _runner_ready(self) -> bool:
        ready = getattr(self.runner, "ready", None)
        return ready is None or bool(ready())

    def can_parallel(self, block: BlockAPI) -> bool:
        """supports_parallel (every fork unless told otherwise), at least MIN_TRANSACTIONS txs."""
        vm_class = self.chain.rules.vm_class_for_header(block.header)
        return supports_parallel(vm_class) and len(block.transactions) >= MIN_TRANSACTIONS

    def __call__(self, block: BlockAPI) -> BlockAPI:
        started = time.perf_counter()
        senders = self._senders_of(block)
        with nullcontext() if senders is None else worker_senders(block.transactions, senders):
            if self.can_parallel(block) and self.always_parallel:
                execution = self._run_parallel(block)
            elif self.can_parallel(block) and self._runner_ready():
                execution = self.adaptive.execute(block)
            else:  # in order, batched (py-evm's serial path if supports_parallel says no;
                # also while the workers start: that block would wait for them, ~1-2 s)
                execution = execute_block_batched(self.chain, block, self.storage_roots)
                if execution.mode == "serial":
                    execution.mode = "serial-only"
        self._record(block, execution, time.perf_counter() - started, senders is not None)
        if execution.mode == "parallel":
            self._recover_senders_ahead(block)
        else:
            self._expected = None
        return execution.block

    def _senders_of(self, block: BlockAPI) -> list[bytes | None] | None:
        """The senders the workers recovered ahead for `block`, or None. Waits for a recovery
        still running first (for any block): the runner is then free for this one."""
        pending, self._senders = self._senders, None
        if pending is None:
            return None
        block_hash, future = pending
        try:
            senders = future.result()
        except Exception as error:  # the block recovers its senders itself, as before
            log.debug("senders of block 0x%s not recovered ahead: %s", block_hash.hex(), error)
            return None
        if block_hash != block.header.hash or len(senders) != len(block.transactions):
            return None
        self.senders_ahead += 1
        return senders

    def _recover_senders_ahead(self, current: BlockAPI) -> None:
        """Start recovering the expected block's senders on the runner (see the class)."""
        following, self._expected = self._expected, None
        if (
            self._lookahead is None
            or following is None
            or following.header.parent_hash != current.header.hash
            or len(following.transactions) < MIN_TRANSACTIONS
        ):
            return
        future = self._lookahead.submit(self._recover_senders, following)
        self._senders = (following.header.hash, future)

    def _recover_senders(self, block: BlockAPI) -> list[bytes | None]:
        # One task: one worker recovers them while the other core persists the current block.
        (senders,) = cast(Any, self.runner).map([SenderTask(bytes(rlp.encode(block)))])
        return cast(list[bytes | None], senders)

    def _run_serial(self, block: BlockAPI) -> BlockExecution:
        """The adaptive choice's other arm: in order in this process, with batched trie roots
        and the merge's cheap block work (`execute_block_batched`), no speculation."""
        return execute_block_batched(self.chain, block, self.storage_roots)

    def _run_parallel(self, block: BlockAPI) -> BlockExecution:
        # execute_block_parallel only calls `map` on its pool: any TaskRunner does.
        pool = cast(WorkerPool[SpeculationTask, list[TxOutcome]], self.runner)
        try:
            return execute_block_parallel(
                self.chain,
                block,
                pool,
                workers=self.workers,
                min_transactions=MIN_TRANSACTIONS,
                storage_roots=self.storage_roots,
            )
        except SpeculationUnavailable as error:
            log.warning("block #%d: speculation unavailable (%s); executing it serially",
                        block.number, error)  # fmt: skip
            serial = execute_block_serial(self.chain, block)
            return BlockExecution(serial, "serial-fallback", len(block.transactions))

    def _record(
        self, block: BlockAPI, execution: BlockExecution, seconds: float, senders_ahead: bool
    ) -> None:
        """The per-block line and metrics."""
        mode, count = execution.mode, execution.transactions
        committed = count - execution.reexecuted if mode == "parallel" else 0
        rate = committed / count if count else 0.0
        self.modes[mode] += 1
        self._transactions += count
        self._committed += committed
        roots_tasks = self.storage_roots.counters["tasks"] - self._roots_tasks
        self._roots_tasks += roots_tasks
        event(
            log,
            "block executed",
            block=block.number,
            mode=mode,
            txs=count,
            parallel_rate=f"{rate:.3f}",
            reexecuted=execution.reexecuted if mode == "parallel" else 0,
            largest_share=execution.largest_share if mode == "parallel" else 0,
            ms=f"{seconds * 1000:.1f}",
            speculate_ms=f"{execution.speculate_seconds * 1000:.1f}",
            merge_ms=f"{execution.merge_seconds * 1000:.1f}",
            roots_ms=f"{execution.roots_seconds * 1000:.1f}",
            roots_tasks=roots_tasks,
            senders_ahead=int(senders_ahead),
        )
        if self.metrics is not None:
            self.metrics.blocks_executed.labels(mode=mode).inc()
            if mode == "parallel":
                self.metrics.reexecutions.inc(execution.reexecuted)
            self.metrics.storage_root_tasks.inc(roots_tasks)
            if self._transactions:
                self.metrics.parallel_rate.set(self._committed / self._transactions)

    @property
    def parallel_rate(self) -> float:
        """Share of all transactions so far committed from the speculative pass."""
        return self._committed / self._transactions if self._transactions else 0.0

    def summary(self) -> str:
        """How many blocks ran in each mode, for a log line."""
        return ", ".join(f"{count} {mode}" for mode, count in sorted(self.modes.items())) or "none"

    def close(self) -> None:
        """Stop the runner's workers if they are this executor's own; closing twice is harmless."""
        if self._lookahead is not None:
            self._lookahead.shutdown(wait=True)
        self._senders = None
        close = getattr(self.runner, "close", None)
        if close is not None:
            close()
