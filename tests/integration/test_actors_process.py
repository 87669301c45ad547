"""A worker process is a supervised child: killed with SIGKILL, it is replaced by a new process."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from khipu.actors import ChildSpec, ProcessChild, ProcessExited, SupervisionTree
from khipu.actors.health import HealthBoard, HealthConfig, HealthMonitor
from khipu.actors.messages import ChildFailed, ChildRestarted, ChildStopped

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "actors"))
from actors_demo import WAIT, EventLog, fast_strategy


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_gone(pid: int) -> bool:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.01)
    return False


@pytest.fixture
def worker_tree() -> Iterator[tuple[SupervisionTree, EventLog, HealthBoard]]:
    events, board = EventLog(), HealthBoard()
    config = HealthConfig(heartbeat_interval=60.0, heartbeat_timeout=1.0)
    children = [
        # time.sleep is importable by a spawned process, so the worker needs no test module.
        ChildSpec("Worker", lambda ctx: ProcessChild(ctx, time.sleep, (3600,)), stop_timeout=2),
        ChildSpec("HealthMonitor", lambda ctx: HealthMonitor.start(ctx, board, config)),
    ]
    tree = SupervisionTree(
        "ExecutionSupervisor", children, fast_strategy(), watch_interval=0.05, listeners=[events]
    )
    yield tree, events, board
    if not tree.stopped:
        tree.shutdown("test over", timeout=10)


def test_a_killed_worker_process_is_replaced(worker_tree) -> None:
    tree, events, board = worker_tree
    slot = tree.table.slot("Worker")
    first = slot.runtime.pid()  # type: ignore[union-attr]
    assert first is not None and pid_alive(first)

    os.kill(first, 9)

    failed = events.wait_for(lambda e: isinstance(e, ChildFailed))
    assert isinstance(failed.error, ProcessExited)
    assert failed.error.exit_code == -9 and failed.error.pid == first
    restarted = events.wait_for(lambda e: isinstance(e, ChildRestarted))
    assert restarted.path == "ExecutionSupervisor/Worker" and restarted.incarnation == 2
    second = slot.runtime.pid()  # type: ignore[union-attr]
    assert second is not None and second != first and pid_alive(second)
    assert "exited with code -9" in (slot.last_error or "")

    tree.handle("HealthMonitor").call("check_tree")
    health = board.get("Worker")
    assert health is not None
    assert (health.kind, health.state, health.pid, health.restarts) == (
        "process",
        "running",
        second,
        1,
    )


def test_shutdown_terminates_the_worker_without_a_restart(worker_tree) -> None:
    tree, events, _ = worker_tree
    pid = tree.table.slot("Worker").runtime.pid()  # type: ignore[union-attr]
    assert pid is not None
    outcome = tree.shutdown("test shutdown")
    assert outcome.clean
    assert wait_gone(pid)
    assert [e.path for e in events.of(ChildStopped)] == [
        "ExecutionSupervisor/HealthMonitor",
        "ExecutionSupervisor/Worker",
    ]
    assert not events.of(ChildFailed) and not events.of(ChildRestarted)
