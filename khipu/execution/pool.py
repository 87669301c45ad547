"""A pool of worker processes after ChainMaker's VM Engine, started so they skip py-evm's import.

Workers start in one of two ways (`start_method`):

- "forkserver" (what the node uses): a single-threaded server process, started once, imports
  py-evm and khipu's execution modules (`PRELOADED_MODULES`) and forks each worker from itself.
  The node's own process, which runs actor threads, is never forked. The handler must be
  picklable (a module-level function or an instance of a module-level class); it is pickled once,
  when the pool is made, so later changes to it in this process do not reach new workers.
- "spawn": each worker is a fresh interpreter that imports everything itself (about a second
  with py-evm); kept for comparison and for platforms without forkserver.
- "fork": workers are forked from this process and inherit everything, including in-memory state,
  handlers that cannot be pickled (closures) and open files with their locks: only for a process
  without other threads that holds no lock a worker must not keep (a store's), e.g. tests.

Either way tasks and results travel pickled over a pipe.

Each worker moves through created -> ready -> busy -> idle -> closing, logged at DEBUG and counted
in `state_counts()`. The pool never runs more than `workers` processes. An idle worker is reclaimed
after `idle_timeout` s, a worker is recycled after `max_tasks` tasks, a worker's address space is
capped at `memory_limit` bytes and its CPU time per task at `cpu_limit` s (RLIMIT_AS, RLIMIT_CPU).
A task that overruns `task_timeout` s is killed and retried; a worker that dies is replaced and its
task retried; a task that has killed workers twice runs in the supervisor process, logged.

Workers occupy numbered slots (0 .. workers-1); a replacement takes the slot of the worker it
replaces. An `observer` hears of every worker start and end (`WorkerStarted`, `WorkerEnded`), so
a supervisor can show the workers as its children.
"""

from __future__ import annotations

import enum
import logging
import multiprocessing
import multiprocessing.connection
import os
import pickle
import resource
import time
import traceback
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from typing import Any, Generic, TypeVar

log = logging.getLogger("khipu.execution.pool")

T = TypeVar("T")
R = TypeVar("R")

MAX_WORKER_FAILURES = 2  # a task that killed this many workers runs in the supervisor

# Imported once by the forkserver, so that a worker forked from it starts in milliseconds.
PRELOADED_MODULES = [
    "khipu.execution.pool",
    "khipu.execution.executor",
    "khipu.chain.chain",
    "khipu.storage.chain_store",
]
START_METHODS = ("forkserver", "spawn", "fork")


class WorkerState(enum.Enum):
    CREATED = "created"
    READY = "ready"
    BUSY = "busy"
    IDLE = "idle"
    CLOSING = "closing"


class TaskError(Exception):
    """A task's handler raised in a worker; carries the task's index and the worker traceback."""

    def __init__(self, index: int, detail: str) -> None:
        super().__init__(f"task {index} failed in a worker: {detail}")
        self.index = index
        self.detail = detail


class WorkerStartFailed(RuntimeError):
    """A worker process died before it was ready (bad handler, resource limit too low)."""

    def __init__(self, slot: int, pid: int | None, exit_code: int | None) -> None:
        super().__init__(f"worker in slot {slot} (pid {pid}) died while starting: exit {exit_code}")
        self.slot = slot
        self.pid = pid
        self.exit_code = exit_code


@dataclass(frozen=True)
class PoolLimits:
    """Limits of a pool (None: no limit)."""

    workers: int = os.cpu_count() or 1
    task_timeout: float | None = None
    idle_timeout: float = 30.0
    max_tasks: int | None = None
    memory_limit: int | None = None  # bytes of address space per worker
    cpu_limit: int | None = None  # CPU seconds per task


@dataclass(frozen=True)
class WorkerStarted:
    """Worker `wid` (process `pid`) is ready in `slot`; `replaces` says why the slot was empty
    before ("died", "overran its time limit") when it replaces a worker that failed."""

    slot: int
    wid: int
    pid: int | None
    replaces: str | None = None


@dataclass(frozen=True)
class WorkerEnded:
    """Worker `wid` left `slot`: `reason` is "idle", "recycled ...", "pool closed", "died" or
    "overran its time limit"; `failed` is True for the last two (exit code in `exit_code`)."""

    slot: int
    wid: int
    pid: int | None
    reason: str
    failed: bool
    exit_code: int | None = None
    killed: bool = False  # killed by the pool for overrunning its task's time limit


WorkerObserver = Callable[[WorkerStarted | WorkerEnded], None]


@dataclass
class _Worker:
    wid: int
    slot: int
    process: BaseProcess
    conn: multiprocessing.connection.Connection
    state: WorkerState = WorkerState.CREATED
    tasks_done: int = 0
    task: int | None = None
    deadline: float | None = None
    idle_since: float = field(default_factory=time.monotonic)


def _worker_main(
    conn: multiprocessing.connection.Connection,
    handler: Callable[[Any], Any] | bytes,
    limits: PoolLimits,
) -> None:
    if isinstance(handler, bytes):
        handler = pickle.loads(handler)
    assert callable(handler)
    if limits.memory_limit is not None:
        resource.setrlimit(resource.RLIMIT_AS, (limits.memory_limit, limits.memory_limit))
    conn.send(("ready", None, None))
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if message is None:
            return
        index, task = message
        if limits.cpu_limit is not None:
            usage = resource.getrusage(resource.RUSAGE_SELF)
            used = int(usage.ru_utime + usage.ru_stime) + 1
            _soft, hard = resource.getrlimit(resource.RLIMIT_CPU)
            resource.setrlimit(resource.RLIMIT_CPU, (used + limits.cpu_limit, hard))
        try:
            conn.send(("ok", index, handler(task)))
        except Exception:
            conn.send(("error", index, traceback.format_exc()))


class WorkerPool(Generic[T, R]):
    """Runs `handler` on tasks in worker processes; see the module docstring for the rules.

    Raises ValueError for fewer than one worker or an unknown start method, and
    pickle.PicklingError (or TypeError, AttributeError) for a forkserver pool whose handler
    cannot be pickled. `counters` counts "spawned", "tasks", "retries", "timeouts" (killed),
    "deaths", "recycled", "reclaimed" and "in_process".
    """

    def __init__(
        self,
        handler: Callable[[T], R],
        limits: PoolLimits | None = None,
        *,
        start_method: str = "fork",
        observer: WorkerObserver | None = None,
    ) -> None:
        self.handler = handler
        self.limits = limits or PoolLimits()
        if self.limits.workers < 1:
            raise ValueError(f"a pool needs at least one worker, not {self.limits.workers}")
        if start_method not in START_METHODS:
            raise ValueError(f"start_method must be one of {START_METHODS}, not {start_method!r}")
        self.start_method = start_method
        self.observer = observer
        self._context: Any = multiprocessing.get_context(start_method)
        self._handler_arg: Callable[[T], R] | bytes = handler
        if start_method == "forkserver":
            # Effective only before the server first starts: it is one per node process.
            self._context.set_forkserver_preload(PRELOADED_MODULES)
        if start_method != "fork":
            self._handler_arg = pickle.dumps(handler)
        self._workers: dict[int, _Worker] = {}
        self._next_id = 0
        self._vacated: dict[int, str] = {}  # slot -> why its last worker failed
        self.counters: Counter[str] = Counter()

    # -- lifecycle ----------------------------------------------------------------------

    def state_counts(self) -> dict[str, int]:
        """How many workers are in each state now (for metrics)."""
        counts = {state.value: 0 for state in WorkerState}
        for worker in self._workers.values():
            counts[worker.state.value] += 1
        return counts

    def worker_pids(self) -> dict[int, int | None]:
        """Worker id -> process id of the live workers."""
        return {wid: worker.process.pid for wid, worker in self._workers.items()}

    def slot_states(self) -> dict[int, str]:
        """Slot -> state of the worker in it, for the occupied slots (read from any thread)."""
        return {worker.slot: worker.state.value for worker in list(self._workers.values())}

    def slot_tasks(self) -> dict[int, int]:
        """Slot -> tasks done by the worker in it (read from any thread)."""
        return {worker.slot: worker.tasks_done for worker in list(self._workers.values())}

    def start_workers(self, count: int | None = None) -> int:
        """Start workers until `count` (default: the cap) are running, so that the first tasks
        do not wait for them; returns how many were started. Raises WorkerStartFailed."""
        wanted = min(self.limits.workers, self.limits.workers if count is None else count)
        started = 0
        while len(self._workers) < wanted:
            self._spawn()
            started += 1
        return started

    def close(self) -> None:
        """Stop every worker; the pool can still be used afterwards (it forks new ones)."""
        for worker in list(self._workers.values()):
            self._close(worker, "pool closed")

    def __enter__(self) -> WorkerPool[T, R]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def reclaim_idle(self) -> int:
        """Close workers idle (or ready and never used) longer than `idle_timeout`; returns how
        many were closed."""
        now = time.monotonic()
        stale = [
            w
            for w in self._workers.values()
            if w.state in (WorkerState.READY, WorkerState.IDLE)
            and now - w.idle_since >= self.limits.idle_timeout
        ]
        for worker in stale:
            self.counters["reclaimed"] += 1
            self._close(worker, "idle")
        return len(stale)

    def _set_state(self, worker: _Worker, state: WorkerState) -> None:
        log.debug("worker %d (pid %s): %s -> %s", worker.wid, worker.process.pid,
                  worker.state.value, state.value)  # fmt: skip
        worker.state = state

    def _spawn(self) -> _Worker:
        taken = {worker.slot for worker in self._workers.values()}
        slot = min(set(range(self.limits.workers)) - taken)
        parent_conn, child_conn = self._context.Pipe()
        process = self._context.Process(
            target=_worker_main, args=(child_conn, self._handler_arg, self.limits), daemon=True
        )
        process.start()
        child_conn.close()
        worker = _Worker(self._next_id, slot, process, parent_conn)
        self._next_id += 1
        self._workers[worker.wid] = worker
        self.counters["spawned"] += 1
        log.debug("worker %d (pid %s): created", worker.wid, process.pid)
        try:
            status, _index, _value = parent_conn.recv()
        except EOFError:
            self._close(worker, "died while starting", failed=True)
            raise WorkerStartFailed(slot, process.pid, process.exitcode) from None
        if status == "ready":
            self._set_state(worker, WorkerState.READY)
        self._notify(WorkerStarted(slot, worker.wid, process.pid, self._vacated.pop(slot, None)))
        return worker

    def _notify(self, event: WorkerStarted | WorkerEnded) -> None:
        if self.observer is None:
            return
        try:
            self.observer(event)
        except Exception:
            log.exception("worker pool observer raised on %r", event)

    def _close(self, worker: _Worker, why: str, failed: bool = False, killed: bool = False) -> None:
        self._set_state(worker, WorkerState.CLOSING)
        log.debug("worker %d closing: %s", worker.wid, why)
        try:
            if worker.process.is_alive() and worker.task is None:
                worker.conn.send(None)
                worker.process.join(1.0)
        except (BrokenPipeError, OSError):
            pass
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join()
        worker.conn.close()
        self._workers.pop(worker.wid, None)
        if failed:
            self._vacated[worker.slot] = why
        code = worker.process.exitcode
        ended = WorkerEnded(worker.slot, worker.wid, worker.process.pid, why, failed, code, killed)
        self._notify(ended)

    # -- running tasks ------------------------------------------------------------------

    def map(self, tasks: Sequence[T]) -> list[R]:
        """Results of `handler` on each task, in order.

        Raises TaskError if a handler raised (the first such task, after the others ended).
        """
        self.reclaim_idle()
        pending: deque[int] = deque(range(len(tasks)))
        failures: Counter[int] = Counter()
        results: dict[int, R] = {}
        error: TaskError | None = None
        while len(results) < len(tasks) and (error is None or self._busy()):
            while pending and error is None:
                index = pending[0]
                if failures[index] >= MAX_WORKER_FAILURES:
                    pending.popleft()
                    log.warning("task %d killed %d workers: running it in the supervisor",
                                index, failures[index])  # fmt: skip
                    self.counters["in_process"] += 1
                    results[index] = self.handler(tasks[index])
                    continue
                worker = self._free_worker()
                if worker is None:
                    break
                pending.popleft()
                self._assign(worker, index, tasks[index])
            if not self._busy():
                continue
            error = self._collect(tasks, pending, failures, results) or error
        if error is not None:
            raise error
        return [results[i] for i in range(len(tasks))]

    def _busy(self) -> list[_Worker]:
        return [w for w in self._workers.values() if w.state is WorkerState.BUSY]

    def _free_worker(self) -> _Worker | None:
        for worker in list(self._workers.values()):
            if worker.state not in (WorkerState.READY, WorkerState.IDLE):
                continue
            if not worker.process.is_alive():  # killed while idle: replace it
                log.warning("worker %d (pid %s) died while idle (exit code %s)",
                            worker.wid, worker.process.pid, worker.process.exitcode)  # fmt: skip
                self.counters["deaths"] += 1
                self._close(worker, "died", failed=True)
                continue
            return worker
        if len(self._workers) < self.limits.workers:
            return self._spawn()
        return None

    def _assign(self, worker: _Worker, index: int, task: T) -> None:
        worker.task = index
        timeout = self.limits.task_timeout
        worker.deadline = None if timeout is None else time.monotonic() + timeout
        self._set_state(worker, WorkerState.BUSY)
        worker.conn.send((index, task))

    def _collect(
        self,
        tasks: Sequence[T],
        pending: deque[int],
        failures: Counter[int],
        results: dict[int, R],
    ) -> TaskError | None:
        busy = self._busy()
        deadlines = [w.deadline for w in busy if w.deadline is not None]
        wait = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
        handles: list[Any] = [w.conn for w in busy] + [w.process.sentinel for w in busy]
        multiprocessing.connection.wait(handles, wait)
        error: TaskError | None = None
        for worker in busy:
            index = worker.task
            assert index is not None
            message = None
            try:
                if worker.conn.poll():
                    message = worker.conn.recv()
            except (EOFError, OSError):
                message = None
            if message is not None:
                status, _index, value = message
                worker.task = None
                worker.tasks_done += 1
                worker.idle_since = time.monotonic()
                self._set_state(worker, WorkerState.IDLE)
                if status == "ok":
                    results[index] = value
                    self.counters["tasks"] += 1
                elif error is None:
                    error = TaskError(index, value)
                max_tasks = self.limits.max_tasks
                if max_tasks is not None and worker.tasks_done >= max_tasks:
                    self._close(worker, f"recycled after {worker.tasks_done} tasks")
                    self.counters["recycled"] += 1
                continue
            overdue = worker.deadline is not None and time.monotonic() >= worker.deadline
            if worker.process.is_alive() and not overdue:
                continue
            overran = worker.process.is_alive()
            why = "overran its time limit" if overran else "died"
            log.warning("worker %d (pid %s) %s on task %d (exit code %s): retrying the task",
                        worker.wid, worker.process.pid, why, index,
                        worker.process.exitcode)  # fmt: skip
            self.counters["timeouts" if overran else "deaths"] += 1
            self.counters["retries"] += 1
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
            worker.task = None
            self._close(worker, why, failed=True, killed=overran)
            failures[index] += 1
            pending.appendleft(index)
        return error
