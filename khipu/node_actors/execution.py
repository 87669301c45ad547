"""ExecutionSupervisor: owns the node's worker pool; its worker processes are its children.

The StorageWriter merges each block on its own chain; only the speculation tasks come here, as
`RunTasks`, through the `ExecutionClient` that the writer's ParallelBlockExecutor uses as its
task runner. Workers are forked from a preloaded forkserver (never from the node's threaded
process) and read parent states from the datadir.

The pool supervises its processes one for one: a worker that dies or overruns its task's time
limit is replaced in the same slot and the task retried; a task that killed two workers runs here.
Each slot shows in the tree as `ExecutionSupervisor/worker-N` (kind process, pid, activity, tasks
done, restarts, last error), so health lines, `khipu_health` and `khipu status` list the workers;
the metrics get worker states, tasks, retries, kills and restarts. Idle workers are reclaimed on
a timer. A failure of this actor closes its pool; the next incarnation starts a new one, and a
block whose speculation was in flight is re-sent to it by the client (or, past the client's
deadline, executed serially by the writer): a block is never lost.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pykka

from khipu.actors import (
    ActorHandle,
    ActorRestarted,
    ActorUnavailable,
    ChildContext,
    ChildRuntime,
    ChildSpec,
    ChildState,
    ProcessExited,
    RequestRejected,
    SupervisedActor,
)
from khipu.actors.children import ChildSlot, ChildTable
from khipu.actors.metrics import NodeMetrics
from khipu.actors.timers import ActorTimers
from khipu.chain.rules import ChainRules
from khipu.config import ChainSelection
from khipu.execution.block_executor import SpeculationUnavailable, speculation_pool
from khipu.execution.executor import SpeculationTask, TxOutcome
from khipu.execution.pool import PoolLimits, TaskError, WorkerEnded, WorkerPool, WorkerStarted
from khipu.logs import event
from khipu.node_actors.faults import FaultPlan

log = logging.getLogger("khipu.execution")


@dataclass(frozen=True)
class ExecutionSettings:
    """How the ExecutionSupervisor runs its pool (see PoolLimits for the limits)."""

    workers: int
    # Below the default --health.stall (60 s): a hung worker is replaced before the writer that
    # waits for its task is taken for stalled.
    task_timeout: float | None = 30.0
    idle_timeout: float = 60.0
    reclaim_interval: float = 10.0
    max_tasks: int | None = 10_000
    memory_limit: int | None = None
    cpu_limit: int | None = None
    start_method: str = "forkserver"
    always_parallel: bool = False  # skip the adaptive choice (tests, benchmarks)

    def limits(self) -> PoolLimits:
        """The pool limits these settings ask for."""
        return PoolLimits(
            workers=self.workers,
            task_timeout=self.task_timeout,
            idle_timeout=self.idle_timeout,
            max_tasks=self.max_tasks,
            memory_limit=self.memory_limit,
            cpu_limit=self.cpu_limit,
        )


@dataclass(frozen=True)
class RunTasks:
    """Asked of the ExecutionSupervisor: run the tasks on the workers, answer their results."""

    tasks: tuple[SpeculationTask, ...]


@dataclass(frozen=True)
class WarmUp:
    """The ExecutionSupervisor's own reminder after start: start the workers before any block."""


@dataclass(frozen=True)
class ReclaimIdle:
    """The ExecutionSupervisor's timer: close workers idle longer than the idle timeout."""


class SpeculationFailed(RequestRejected):
    """A speculation task raised in a worker (a bug or a block the workers cannot read); the
    asker executes the block serially. Carries the worker's traceback in `detail`."""

    def __init__(self, error: TaskError) -> None:
        super().__init__(str(error))
        self.detail = error.detail


class WorkerOverran(Exception):
    """A worker was killed because its task overran the time limit (the task was retried)."""

    def __init__(self, path: str, pid: int | None, limit: float | None) -> None:
        super().__init__(f"{path} (pid {pid}) killed: its task overran the {limit}s limit")
        self.path = path
        self.pid = pid


class PoolWorker(ChildRuntime):
    """One slot of the pool as a child of the tree: the process that is in it now."""

    kind = "process"

    def __init__(self, pool: WorkerPool[Any, Any], slot: int, pid: int | None) -> None:
        self.pool = pool
        self.slot = slot
        self._pid = pid

    def is_alive(self) -> bool:
        return self.slot in self.pool.slot_states()

    def stop(self, timeout: float) -> bool:
        return True  # the pool stops its workers when it closes

    def abandon(self) -> None:
        """Nothing to do: the pool kills and replaces its own workers."""

    def pid(self) -> int | None:
        return self._pid

    def activity(self) -> str | None:
        return self.pool.slot_states().get(self.slot)

    def processed(self) -> int | None:
        return self.pool.slot_tasks().get(self.slot)


def _started_by_the_pool(_context: ChildContext) -> Any:
    raise RuntimeError("worker processes are started by the ExecutionSupervisor's pool")


class ExecutionSupervisor(SupervisedActor):
    """Owns a speculation pool over `selection.datadir`; answers `RunTasks` with the results.

    Raises SpeculationFailed (to the asker only) when a task raised in a worker; any other error
    fails this incarnation, whose pool is closed before its successor starts a new one.
    """

    def __init__(
        self,
        context: ChildContext | None,
        selection: ChainSelection,
        settings: ExecutionSettings,
        *,
        metrics: NodeMetrics | None = None,
        faults: FaultPlan | None = None,
    ) -> None:
        super().__init__(context)
        self.selection = selection
        self.settings = settings
        self.metrics = metrics
        self.faults = faults if faults is not None else FaultPlan()
        self.workers = ChildTable(self.actor_path)
        if context is not None:
            context.slot.subtree = self.workers  # the HealthMonitor walks into it
        self._slots: dict[int, ChildSlot] = {}
        self._timers = ActorTimers(self.actor_ref)
        self._counted: dict[str, int] = {}
        self.pool: WorkerPool[SpeculationTask, list[TxOutcome]] | None = None

    def on_start(self) -> None:
        rules = ChainRules(self.selection.genesis.config)
        pool = speculation_pool(
            self.selection.datadir, rules, self.settings.limits(), self.settings.start_method
        )
        pool.observer = self._on_worker_event
        self.pool = pool
        self.actor_ref.tell(WarmUp())  # not in on_start: the tree's start does not wait for it
        self._timers.every(self.settings.reclaim_interval, ReclaimIdle())
        event(log, "execution supervisor ready", workers=self.settings.workers,
              start_method=self.settings.start_method, incarnation=self.incarnation)  # fmt: skip

    def on_stop(self) -> None:
        self._close_pool()

    def _actor_loop_teardown(self) -> None:
        # Every way out closes the pool, so no worker outlives the incarnation that owned it.
        self._timers.cancel_all()
        self._close_pool()
        super()._actor_loop_teardown()

    def _close_pool(self) -> None:
        pool = self.pool
        if pool is not None:
            pool.close()  # its observer still sees the workers leave
            self._publish_metrics(pool)
        self.pool = None
        for slot in self._slots.values():
            slot.set_state(ChildState.STOPPED, "execution supervisor stopped")

    # -- messages ------------------------------------------------------------------------------

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, RunTasks):
            return self.run_tasks(message)
        if isinstance(message, WarmUp):
            return self._warm_up()
        if isinstance(message, ReclaimIdle):
            return self._reclaim_idle()
        return super().on_receive(message)

    def run_tasks(self, message: RunTasks) -> list[list[TxOutcome]]:
        """The results of the tasks, in order. Raises SpeculationFailed if one raised."""
        assert self.pool is not None, "not started"
        self.faults.check("ExecutionSupervisor.run_tasks")
        try:
            return self.pool.map(message.tasks)
        except TaskError as error:
            raise SpeculationFailed(error) from error
        finally:
            self._publish_metrics(self.pool)

    def _warm_up(self) -> None:
        if self.pool is not None:
            started = time.perf_counter()
            count = self.pool.start_workers()
            event(log, "execution workers started", workers=count,
                  seconds=f"{time.perf_counter() - started:.3f}")  # fmt: skip
            self._publish_metrics(self.pool)

    def _reclaim_idle(self) -> None:
        if self.pool is not None and self.pool.reclaim_idle():
            self._publish_metrics(self.pool)

    # -- the workers as children ---------------------------------------------------------------

    def _on_worker_event(self, change: WorkerStarted | WorkerEnded) -> None:
        """Mirror the pool's slots into this actor's child table (runs in this actor's thread,
        inside the pool's calls)."""
        assert self.pool is not None
        slot = self._slots.get(change.slot)
        if slot is None:
            spec = ChildSpec(f"worker-{change.slot}", _started_by_the_pool)
            slot = self._slots[change.slot] = ChildSlot(spec, self.actor_path)
        if isinstance(change, WorkerStarted):
            if change.replaces is not None:
                slot.restarts += 1
                if self.metrics is not None:
                    self.metrics.execution_restarts.inc()
            slot.set_running(PoolWorker(self.pool, change.slot, change.pid), slot.incarnation + 1)
            if slot not in self.workers.slots:
                self.workers.slots.append(slot)
                self.workers.slots.sort(key=lambda each: each.name)
            return
        if change.failed:
            error: Exception = ProcessExited(slot.path, change.pid, change.exit_code)
            if change.killed:
                error = WorkerOverran(slot.path, change.pid, self.settings.task_timeout)
            slot.record_error(error, time.time())
            slot.set_state(ChildState.RESTARTING)  # the pool replaces it for the retried task
        elif slot in self.workers.slots:
            self.workers.slots.remove(slot)  # reclaimed, recycled or closed: out of the tree
            slot.set_state(ChildState.STOPPED, change.reason)

    def _publish_metrics(self, pool: WorkerPool[Any, Any]) -> None:
        if self.metrics is None:
            return
        for state, count in pool.state_counts().items():
            self.metrics.workers.labels(state=state).set(count)
        for name, metric in (
            ("tasks", self.metrics.execution_tasks),
            ("retries", self.metrics.execution_retries),
            ("timeouts", self.metrics.execution_kills),
        ):
            now = pool.counters[name]
            metric.inc(now - self._counted.get(name, 0))
            self._counted[name] = now


class ExecutionClient:
    """The StorageWriter's task runner: sends speculation tasks to the ExecutionSupervisor.

    A task batch caught in an incarnation that dies is re-sent to the next one; after `attempts`
    failures, or when no incarnation answers within `timeout` seconds, `map` raises
    SpeculationUnavailable and the writer executes the block serially.
    """

    def __init__(self, handle: ActorHandle, *, timeout: float = 600.0, attempts: int = 3) -> None:
        self.handle = handle
        self.timeout = timeout
        self.attempts = attempts

    def map(self, tasks: Sequence[SpeculationTask]) -> list[list[TxOutcome]]:
        """The tasks' results in order. Raises SpeculationUnavailable as the class says."""
        message = RunTasks(tuple(tasks))
        failure: BaseException | None = None
        for attempt in range(1, self.attempts + 1):
            try:
                results: list[list[TxOutcome]] = self.handle.ask(
                    message, timeout=self.timeout, retry=True
                )
                return results
            except SpeculationFailed as error:
                raise SpeculationUnavailable(f"a task raised in a worker: {error}") from error
            except ActorRestarted as error:
                failure = error  # died holding them and no successor took them: try again
                continue
            except (ActorUnavailable, pykka.Timeout) as error:
                raise SpeculationUnavailable(f"{self.handle.path}: {error}") from error
            except Exception as error:
                # The supervisor failed while running these tasks: its successor gets them.
                log.warning("%s failed running speculation (attempt %d of %d): %r",
                            self.handle.path, attempt, self.attempts, error)  # fmt: skip
                failure = error
        raise SpeculationUnavailable(
            f"{self.handle.path} failed {self.attempts} times: {failure!r}"
        )
