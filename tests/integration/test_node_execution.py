"""The ExecutionSupervisor inside a running node: its workers are children of the tree, a worker
SIGKILLed or hung in the middle of a block is replaced and the block still imported, a failing
ExecutionSupervisor is restarted; and the RpcServer as a supervised child on the same port."""

from __future__ import annotations

import json
import os
import signal
import threading
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from khipu.actors.children import ChildSlot
from khipu.actors.health import HealthConfig
from khipu.node import Node, NodeSettings
from khipu.node_actors.execution import ExecutionSettings
from khipu.node_actors.faults import FaultPlan
from khipu.rpc.config import RpcConfig
from tests.integration.node_helpers import (
    ReferenceChain,
    fast_strategy,
    make_chain,
    stored_head,
    wait_until,
)

IMPORT_TIMEOUT = 180.0  # a bound for a loaded machine, not a measurement
# The writer answers heartbeats between blocks only, and a block waits for its speculation (and
# here for a restarted ExecutionSupervisor or a hung worker's time limit): no stall before 10 s.
PATIENT = HealthConfig(
    heartbeat_interval=0.5, heartbeat_timeout=2.0, stall_misses=5, log_interval=0.5
)


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> ReferenceChain:
    return make_chain(tmp_path_factory.mktemp("node-exec"), blocks=6, txs_per_block=12, seed=13)


@pytest.fixture
def start_node(tmp_path: Path, chain: ReferenceChain) -> Iterator[Callable[..., Node]]:
    nodes: list[Node] = []

    def start(
        faults: FaultPlan | None = None,
        execution: ExecutionSettings | None = None,
        health: HealthConfig | None = None,
        rpc: RpcConfig | None = None,
        import_files: tuple[Path, ...] | None = None,
    ) -> Node:
        settings = NodeSettings(
            import_files=(chain.chain_path,) if import_files is None else import_files,
            check_seal=False,
            execution=execution or ExecutionSettings(workers=2, always_parallel=True),
            health=health or PATIENT,
            strategy=fast_strategy(5),
            progress_interval=0.5,
            rpc=rpc,
        )
        lines: list[str] = []
        node = Node(chain.selection(tmp_path / "datadir"), settings, faults=faults,
                    emit_health_line=lines.append)  # fmt: skip
        node.health_lines = lines  # type: ignore[attr-defined]
        nodes.append(node)
        node.start()
        return node

    yield start
    for node in nodes:
        if node.tree is not None and not node.tree.stopped:
            node.shutdown("test over")


def import_ended(node: Node) -> bool:
    return node.import_status.snapshot()["state"] in ("done", "failed")


def finish_and_check(node: Node, chain: ReferenceChain, datadir: Path) -> None:
    """Wait for the import, stop the node, and compare the store with the serial reference."""
    ended = ("done", "failed")
    wait_until(lambda: node.import_status.snapshot()["state"] in ended, IMPORT_TIMEOUT, "import")
    assert node.import_status.snapshot()["state"] == "done", node.import_status.snapshot()
    outcome = node.shutdown("test over")
    assert outcome.clean, outcome.reason
    assert stored_head(chain, datadir) == (chain.blocks, chain.head_hash, chain.head_state_root)


def worker_slots(node: Node) -> list[ChildSlot]:
    assert node.tree is not None
    subtree = node.tree.table.slot("ExecutionSupervisor").subtree
    return list(subtree.slots) if subtree is not None else []


def metric(node: Node, name: str, **labels: str) -> float:
    return node.metrics.registry.get_sample_value(name, labels or None) or 0.0


def act_on_a_busy_worker(node: Node, signum: int) -> tuple[threading.Thread, list[int]]:
    """A thread that sends `signum` to the first worker seen busy (in the middle of a block's
    speculation); the list gets its pid."""
    hit: list[int] = []

    def watch() -> None:
        while not hit and node.import_status.snapshot()["state"] not in ("done", "failed"):
            for slot in worker_slots(node):
                runtime = slot.runtime
                if runtime is not None and runtime.activity() == "busy":
                    pid = runtime.pid()
                    if pid is not None:
                        os.kill(pid, signum)
                        hit.append(pid)
                        return
            threading.Event().wait(0.002)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread, hit


def test_workers_are_children_in_health_and_metrics(
    start_node: Callable[..., Node], chain: ReferenceChain, tmp_path: Path
) -> None:
    node = start_node()
    wait_until(lambda: node.import_status.snapshot()["state"] == "done", IMPORT_TIMEOUT, "import")
    names = {"ExecutionSupervisor/worker-0", "ExecutionSupervisor/worker-1"}
    wait_until(lambda: names <= {h.actor for h in node.board.all()}, 10, "workers on the board")

    def workers() -> list[dict[str, Any]]:
        return [a for a in node.health_snapshot()["actors"] if a["actor"] in names]

    # A worker reports idle once its last reply is read, a moment after the import is done.
    wait_until(lambda: all(w["activity"] == "idle" for w in workers()), 10, "workers idle")
    assert {(w["kind"], w["state"]) for w in workers()} == {("process", "running")}
    assert all(isinstance(w["pid"], int) for w in workers()), workers()
    assert sum(w["processed"] for w in workers()) >= 1
    assert metric(node, "khipu_blocks_executed_total", mode="parallel") == chain.blocks
    assert metric(node, "khipu_execution_tasks_total") >= 2 * chain.blocks
    assert metric(node, "khipu_execution_workers", state="idle") == 2
    assert 0.0 < metric(node, "khipu_parallel_rate") <= 1.0
    lines = node.health_lines  # type: ignore[attr-defined]
    wait_until(lambda: any("actor=ExecutionSupervisor/worker-1" in x for x in lines), 10, "line")
    line = next(x for x in lines if "actor=ExecutionSupervisor/worker-1" in x)
    assert "activity=" in line and "pid=" in line
    finish_and_check(node, chain, tmp_path / "datadir")


def test_a_worker_killed_in_the_middle_of_a_block(
    start_node: Callable[..., Node], chain: ReferenceChain, tmp_path: Path
) -> None:
    node = start_node()
    thread, killed = act_on_a_busy_worker(node, signal.SIGKILL)
    wait_until(lambda: import_ended(node), IMPORT_TIMEOUT, "the import to end")
    thread.join(5)
    assert killed, "no worker was ever seen busy"
    assert metric(node, "khipu_execution_worker_restarts_total") >= 1
    assert metric(node, "khipu_execution_task_retries_total") >= 1
    assert metric(node, "khipu_blocks_executed_total", mode="serial-fallback") == 0
    replaced = [slot for slot in worker_slots(node) if slot.restarts]
    assert replaced and "ProcessExited" in str(replaced[0].last_error), replaced
    assert "-9" in str(replaced[0].last_error)
    finish_and_check(node, chain, tmp_path / "datadir")


def test_a_hung_worker_is_killed_at_the_time_limit_and_its_task_retried(
    start_node: Callable[..., Node], chain: ReferenceChain, tmp_path: Path
) -> None:
    settings = ExecutionSettings(workers=2, always_parallel=True, task_timeout=2.0)
    node = start_node(execution=settings)
    thread, stopped = act_on_a_busy_worker(node, signal.SIGSTOP)  # alive, but never answers
    wait_until(lambda: import_ended(node), IMPORT_TIMEOUT, "the import to end")
    thread.join(5)
    assert stopped, "no worker was ever seen busy"
    assert metric(node, "khipu_execution_worker_kills_total") == 1
    assert metric(node, "khipu_execution_task_retries_total") >= 1
    killed = [slot for slot in worker_slots(node) if slot.restarts]
    assert killed and "overran" in str(killed[0].last_error), killed
    assert node.tree is not None and node.tree.table.slot("StorageWriter").restarts == 0
    finish_and_check(node, chain, tmp_path / "datadir")


def test_a_failing_execution_supervisor_is_restarted_and_the_block_retried(
    start_node: Callable[..., Node], chain: ReferenceChain, tmp_path: Path
) -> None:
    faults = FaultPlan()
    faults.arm_raise("ExecutionSupervisor.run_tasks", skip=2)
    node = start_node(faults=faults)
    finish_and_check(node, chain, tmp_path / "datadir")
    assert faults.fired("ExecutionSupervisor.run_tasks") == 1
    assert node.tree is not None
    slot = node.tree.table.slot("ExecutionSupervisor")
    assert slot.restarts == 1 and "fault injected" in str(slot.last_error)
    assert node.tree.table.slot("StorageWriter").restarts == 0  # its block was re-sent
    assert metric(node, "khipu_blocks_executed_total", mode="serial-fallback") == 0


def rpc_call(url: str, method: str) -> object:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": []}).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())["result"]


def test_the_rpc_server_is_restarted_on_the_same_port_and_health_is_there_at_start(
    start_node: Callable[..., Node], chain: ReferenceChain, tmp_path: Path
) -> None:
    slow_rounds = HealthConfig(heartbeat_interval=60.0, heartbeat_timeout=2.0, log_interval=60.0)
    node = start_node(rpc=RpcConfig(port=0), health=slow_rounds)
    # The first health round runs at start, not a heartbeat interval (60 s) later.
    first = {"StorageWriter", "ExecutionSupervisor", "Importer", "HealthMonitor"}
    wait_until(lambda: first <= {h.actor for h in node.board.all()}, 20, "the first round")
    assert node.tree is not None
    node.tree.handle("HealthMonitor").call("check_tree")  # the RpcServer joined after it
    url = node.rpc_servers[0].url
    actors = [a["actor"] for a in rpc_call(url, "khipu_health")["actors"]]  # type: ignore[index]
    assert actors[:2] == ["StorageWriter", "ExecutionSupervisor"] and "RpcServer" in actors
    node.rpc_servers[0].stop()  # the server stops serving on its own: a crash
    slot = node.tree.table.slot("RpcServer")
    wait_until(lambda: slot.restarts == 1 and bool(node.rpc_servers), 20, "the restart")
    assert node.rpc_servers[0].url == url
    wait_until(lambda: node.import_status.snapshot()["state"] == "done", IMPORT_TIMEOUT, "import")
    assert int(str(rpc_call(url, "eth_blockNumber")), 16) == chain.blocks
    assert "RpcServingStopped" in str(slot.last_error)
    finish_and_check(node, chain, tmp_path / "datadir")


def test_idle_workers_are_reclaimed_on_the_supervisors_timer(
    chain: ReferenceChain, tmp_path: Path
) -> None:
    from khipu.actors import ChildSpec, SupervisionTree
    from khipu.actors.metrics import NodeMetrics
    from khipu.node_actors.execution import ExecutionSupervisor

    selection = chain.selection(tmp_path / "datadir")
    settings = ExecutionSettings(workers=2, idle_timeout=0.5, reclaim_interval=0.2)
    metrics = NodeMetrics()
    spec = ChildSpec(
        "ExecutionSupervisor",
        lambda ctx: ExecutionSupervisor.start(ctx, selection, settings, metrics=metrics),
    )
    tree = SupervisionTree("NodeSupervisor", [spec], fast_strategy(5))
    try:
        supervisor = tree.table.slot("ExecutionSupervisor")

        def worker_names() -> list[str]:
            subtree = supervisor.subtree
            return [slot.name for slot in subtree.slots] if subtree is not None else []

        wait_until(lambda: worker_names() == ["worker-0", "worker-1"], 60, "the warm-up")
        wait_until(lambda: worker_names() == [], 30, "the idle workers to be reclaimed")
        gauge = metrics.registry.get_sample_value
        assert gauge("khipu_execution_workers", {"state": "idle"}) == 0
        assert gauge("khipu_execution_workers", {"state": "ready"}) == 0
        assert supervisor.restarts == 0
    finally:
        tree.shutdown("test over")
