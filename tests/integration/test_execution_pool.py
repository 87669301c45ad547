"""The worker pool: cap, states, recycling, timeouts, dead workers, and a task that kills twice."""

from __future__ import annotations

import logging
import os
import pickle
import signal
import threading
import time
from pathlib import Path

import pytest

from khipu.execution.pool import (
    PoolLimits,
    TaskError,
    WorkerEnded,
    WorkerPool,
    WorkerStarted,
    WorkerStartFailed,
)


def square(n: int) -> int:
    return n * n


def test_results_come_back_in_order_within_the_cap() -> None:
    with WorkerPool(square, PoolLimits(workers=2)) as pool:
        assert pool.map(list(range(10))) == [n * n for n in range(10)]
        assert pool.counters["spawned"] == 2
        assert pool.state_counts()["idle"] == 2
        assert len(set(pool.worker_pids().values())) == 2
        assert pool.map([3]) == [9]
        assert pool.counters["spawned"] == 2  # the workers are long-lived


def test_worker_states_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="khipu.execution.pool")
    with WorkerPool(square, PoolLimits(workers=1)) as pool:
        pool.map([1])
    text = caplog.text
    for transition in ("created", "created -> ready", "ready -> busy", "busy -> idle",
                       "idle -> closing"):  # fmt: skip
        assert transition in text


def test_idle_workers_are_reclaimed() -> None:
    with WorkerPool(square, PoolLimits(workers=2, idle_timeout=0.0)) as pool:
        pool.map([1, 2])
        assert pool.reclaim_idle() == 2
        assert pool.state_counts()["idle"] == 0
        assert pool.counters["reclaimed"] == 2


def test_a_worker_is_recycled_after_max_tasks() -> None:
    with WorkerPool(square, PoolLimits(workers=1, max_tasks=2)) as pool:
        assert pool.map([1, 2, 3, 4, 5]) == [1, 4, 9, 16, 25]
        assert pool.counters["recycled"] == 2
        assert pool.counters["spawned"] == 3


def test_a_handler_error_is_raised_with_the_worker_traceback() -> None:
    def fail(n: int) -> int:
        raise ValueError(f"bad task {n}")

    with WorkerPool(fail, PoolLimits(workers=1)) as pool, pytest.raises(TaskError) as caught:
        pool.map([4])
    assert caught.value.index == 0
    assert "bad task 4" in caught.value.detail


def first_time(marker: Path) -> bool:
    """True the first time it is called for `marker`, in any process."""
    try:
        marker.touch(exist_ok=False)
    except FileExistsError:
        return False
    return True


def test_an_overrunning_task_is_killed_and_retried(tmp_path: Path) -> None:
    def hang_once(n: int) -> int:
        if first_time(tmp_path / "hung"):
            time.sleep(600)
        return n + 1

    with WorkerPool(hang_once, PoolLimits(workers=1, task_timeout=0.5)) as pool:
        assert pool.map([41]) == [42]
        assert pool.counters["timeouts"] == 1
        assert pool.counters["spawned"] == 2


def test_a_worker_killed_mid_task_is_replaced_and_the_task_retried(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"

    def slow_once(n: int) -> int:
        if first_time(tmp_path / "slow"):
            pid_file.write_text(str(os.getpid()))
            time.sleep(600)
        return n * 2

    def killer() -> None:
        for _ in range(600):
            if pid_file.exists() and pid_file.read_text():
                os.kill(int(pid_file.read_text()), signal.SIGKILL)
                return
            time.sleep(0.05)

    thread = threading.Thread(target=killer)
    thread.start()
    with WorkerPool(slow_once, PoolLimits(workers=2)) as pool:
        assert pool.map([1, 2, 3]) == [2, 4, 6]
        assert pool.counters["deaths"] == 1
        assert int(pid_file.read_text()) not in pool.worker_pids().values()
    thread.join()


def test_a_task_that_kills_workers_twice_runs_in_the_supervisor(
    caplog: pytest.LogCaptureFixture,
) -> None:
    supervisor = os.getpid()

    def poison(n: int) -> int:
        if os.getpid() != supervisor:
            os.kill(os.getpid(), signal.SIGKILL)
        return -n

    with WorkerPool(poison, PoolLimits(workers=2)) as pool:
        assert pool.map([5]) == [-5]
        assert pool.counters["deaths"] == 2
        assert pool.counters["in_process"] == 1
    assert "running it in the supervisor" in caplog.text


def test_cpu_time_per_task_is_limited() -> None:
    supervisor = os.getpid()

    def spin(n: int) -> int:
        while os.getpid() != supervisor:
            pass
        return n

    with WorkerPool(spin, PoolLimits(workers=1, cpu_limit=1)) as pool:
        assert pool.map([7]) == [7]
        assert pool.counters["deaths"] == 2  # SIGXCPU, twice, then in the supervisor


def test_address_space_is_limited() -> None:
    def allocate(size: int) -> int:
        return len(bytearray(size))

    with open("/proc/self/statm") as statm:
        virtual = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    limit = virtual + 256 * 2**20
    with WorkerPool(allocate, PoolLimits(workers=1, memory_limit=limit)) as pool:
        assert pool.map([2**20]) == [2**20]
        with pytest.raises(TaskError) as caught:
            pool.map([2**30])
        assert "MemoryError" in caught.value.detail


def test_forkserver_workers_run_a_picklable_handler_and_refuse_a_closure() -> None:
    with WorkerPool(abs, PoolLimits(workers=2), start_method="forkserver") as pool:
        assert pool.map([-1, -2, -3]) == [1, 2, 3]
        assert os.getpid() not in pool.worker_pids().values()
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        WorkerPool(lambda n: n, PoolLimits(workers=1), start_method="forkserver")
    with pytest.raises(ValueError, match="start_method"):
        WorkerPool(abs, start_method="thread")


def test_slots_are_reported_to_the_observer_and_a_replacement_takes_the_same_slot() -> None:
    events: list[WorkerStarted | WorkerEnded] = []
    with WorkerPool(square, PoolLimits(workers=2), observer=events.append) as pool:
        assert pool.start_workers() == 2
        assert sorted(pool.slot_states().items()) == [(0, "ready"), (1, "ready")]
        victim = next(e for e in events if isinstance(e, WorkerStarted) and e.slot == 1)
        assert victim.pid is not None
        os.kill(victim.pid, signal.SIGKILL)  # dies while idle
        assert pool.map([3, 4]) == [9, 16]
        assert pool.map([5, 6]) == [25, 36]
        assert victim.pid not in pool.worker_pids().values()
        assert sorted(pool.slot_states()) == [0, 1]
    ended = [e for e in events if isinstance(e, WorkerEnded) and e.pid == victim.pid]
    assert ended and ended[0].failed and ended[0].slot == 1
    replacement = [e for e in events if isinstance(e, WorkerStarted) and e.replaces == "died"]
    assert [e.slot for e in replacement] == [1]
    closed = [e for e in events if isinstance(e, WorkerEnded) and e.reason == "pool closed"]
    assert sorted(e.slot for e in closed) == [0, 1]


class DiesOnArrival:
    """A handler whose unpickling in the worker ends the process (as a broken install would)."""

    def __call__(self, n: int) -> int:
        return n

    def __reduce__(self) -> tuple[object, tuple[int]]:
        return (os._exit, (3,))


def test_a_worker_that_dies_while_starting_is_a_clear_error() -> None:
    with WorkerPool(DiesOnArrival(), PoolLimits(workers=1), start_method="forkserver") as pool:
        with pytest.raises(WorkerStartFailed, match="slot 0") as caught:
            pool.map([1])
        assert caught.value.exit_code == 3
        assert pool.worker_pids() == {}
