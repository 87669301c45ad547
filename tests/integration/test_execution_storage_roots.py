"""Storage roots on a real pool: forked workers, a worker crash, workers that always crash."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest

from khipu.execution.pool import PoolLimits, WorkerPool
from khipu.execution.storage_roots import (
    StorageBatch,
    StorageRoot,
    StorageRoots,
    StorageRootTask,
    compute_storage_roots,
    storage_root_here,
)
from tests.unit.execution.test_storage_roots import make_batch

# -- a real pool: the workers fork with the store and may crash ---------------------------------

STORE: dict[bytes, bytes] = {}


def crash_first_time(marker: Path) -> Any:
    def handler(task: StorageRootTask) -> list[StorageRoot]:
        if not marker.exists():
            marker.write_text("crashed")
            os.kill(os.getpid(), signal.SIGKILL)
        return compute_storage_roots(STORE, task)

    return handler


def always_crash(task: StorageRootTask) -> list[StorageRoot]:
    if os.environ.get("KHIPU_TEST_IN_SUPERVISOR") != str(os.getpid()):
        os.kill(os.getpid(), signal.SIGKILL)
    return compute_storage_roots(STORE, task)


@pytest.fixture()
def batches() -> list[StorageBatch]:
    STORE.clear()
    return [make_batch(STORE, seed, 20 + seed, bytes([seed]) * 20) for seed in range(6)]


def expected(batches: list[StorageBatch]) -> dict[bytes, Any]:
    return {batch.address: storage_root_here(STORE, batch) for batch in batches}


def test_forked_workers_give_the_in_process_roots(batches: list[StorageBatch]) -> None:
    pool: WorkerPool[StorageRootTask, list[StorageRoot]]
    with WorkerPool(lambda task: compute_storage_roots(STORE, task), PoolLimits(workers=2)) as pool:
        roots = StorageRoots(pool, 2, min_updates=0)
        assert roots.compute(STORE, batches) == expected(batches)
        assert roots.counters["tasks"] >= 1
        assert roots.counters["remote"] >= 3


def test_a_worker_crash_is_retried_and_the_roots_are_the_same(
    batches: list[StorageBatch], tmp_path: Path
) -> None:
    with WorkerPool(crash_first_time(tmp_path / "crashed"), PoolLimits(workers=2)) as pool:
        roots = StorageRoots(pool, 2, min_updates=0, share_here=False)
        assert roots.compute(STORE, batches) == expected(batches)
        assert pool.counters["deaths"] == 1


def test_workers_that_always_crash_leave_the_roots_to_this_process(
    batches: list[StorageBatch], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KHIPU_TEST_IN_SUPERVISOR", str(os.getpid()))
    with WorkerPool(always_crash, PoolLimits(workers=2)) as pool:
        roots = StorageRoots(pool, 2, min_updates=0, share_here=False)
        assert roots.compute(STORE, batches) == expected(batches)
        assert pool.counters["in_process"] == 2  # the pool ran both tasks here


def raise_in_worker(task: StorageRootTask) -> list[StorageRoot]:
    raise RuntimeError("store unreadable")


def test_a_task_that_raises_falls_back_to_this_process(batches: list[StorageBatch]) -> None:
    with WorkerPool(raise_in_worker, PoolLimits(workers=2)) as pool:
        roots = StorageRoots(pool, 2, min_updates=0, share_here=False)
        assert roots.compute(STORE, batches) == expected(batches)
        assert roots.counters["fallbacks"] == 1
        assert roots.counters["remote"] == 0
