"""Faults inside the node's actors: each is restarted, the import goes on, and the final head
and state root equal an uninterrupted import; a crash loop stops the node with a clear reason."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from khipu.actors.health import HealthConfig
from khipu.chain.block_files import iter_rlp_blocks
from khipu.chain.config import Genesis
from khipu.chain.import_job import import_files
from khipu.chain.rules import ChainRules
from khipu.config import ChainSelection
from khipu.node import Node, NodeSettings
from khipu.node_actors.faults import FaultPlan
from khipu.rpc.config import RpcConfig
from khipu.storage.chain_store import ChainStore
from tests.conftest import require_testdata
from tests.integration.node_helpers import (
    ReferenceChain,
    fast_strategy,
    make_chain,
    quick_health,
    rpc_result,
    stored_head,
    wait_until,
)

IMPORT_TIMEOUT = 120.0  # a bound for a loaded machine, not a measurement


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> ReferenceChain:
    return make_chain(tmp_path_factory.mktemp("node-faults"), blocks=12, txs_per_block=10, seed=11)


@pytest.fixture
def start_node(tmp_path: Path, chain: ReferenceChain) -> Iterator[Callable[..., Node]]:
    nodes: list[Node] = []
    plans: list[FaultPlan] = []

    def start(
        faults: FaultPlan | None = None,
        health: HealthConfig | None = None,
        max_restarts: int = 5,
        import_files: tuple[Path, ...] | None = None,
    ) -> Node:
        plan = faults if faults is not None else FaultPlan()
        plans.append(plan)
        settings = NodeSettings(
            import_files=import_files or (chain.chain_path,),
            check_seal=False,
            health=health or quick_health(),
            strategy=fast_strategy(max_restarts),
            progress_interval=0.5,
        )
        lines: list[str] = []
        node = Node(
            chain.selection(tmp_path / "datadir"),
            settings,
            faults=plan,
            emit_health_line=lines.append,
        )
        node.health_lines = lines  # type: ignore[attr-defined]
        nodes.append(node)
        node.start()
        return node

    yield start
    for plan in plans:
        plan.release()  # let stalled handlers return so their threads end
    for node in nodes:
        if node.tree is not None and not node.tree.stopped:
            node.shutdown("test over")


def import_ended(node: Node) -> bool:
    return node.import_status.snapshot()["state"] in ("done", "failed")


def finish_and_check(node: Node, chain: ReferenceChain, datadir: Path) -> None:
    """Wait for the import, stop the node cleanly, and compare the store with the reference."""
    wait_until(lambda: import_ended(node), IMPORT_TIMEOUT, "the import to end")
    sync = node.import_status.snapshot()
    assert sync["state"] == "done", sync
    outcome = node.shutdown("test over")
    assert outcome.clean, outcome.reason
    number, block_hash, state_root = stored_head(chain, datadir)
    assert number == chain.blocks
    assert block_hash == chain.head_hash
    assert state_root == chain.head_state_root


def test_an_undisturbed_node_imports_the_chain_and_reports_it(
    start_node: Callable[..., Node], chain: ReferenceChain, tmp_path: Path
) -> None:
    node = start_node()
    wait_until(lambda: import_ended(node), IMPORT_TIMEOUT, "the import to end")
    wait_until(lambda: len(node.board.all()) == 3, 10, "a health round over every actor")
    snapshot = node.health_snapshot()
    assert [a["actor"] for a in snapshot["actors"]] == [
        "StorageWriter",
        "Importer",
        "HealthMonitor",
    ]
    assert {a["state"] for a in snapshot["actors"]} == {"running"}
    sync = snapshot["sync"]
    assert (sync["state"], sync["head"], sync["target"]) == ("done", chain.blocks, chain.blocks)
    assert sync["imported"] == chain.blocks
    metrics = node.metrics.registry
    assert metrics.get_sample_value("khipu_blocks_imported_total") == chain.blocks
    assert metrics.get_sample_value("khipu_transactions_imported_total") == chain.txs
    assert metrics.get_sample_value("khipu_head_block_number") == chain.blocks
    finish_and_check(node, chain, tmp_path / "datadir")
    health_lines = node.health_lines  # type: ignore[attr-defined]
    assert any("actor=StorageWriter state=running" in line for line in health_lines)


@pytest.mark.parametrize(
    ("point", "actor"),
    [
        ("StorageWriter.import_block", "StorageWriter"),
        ("StorageWriter.start", "StorageWriter"),
        ("Importer.next_block", "Importer"),
        ("HealthMonitor.tick", "HealthMonitor"),
    ],
)
def test_an_exception_in_an_actor_restarts_it_and_the_import_completes(
    start_node: Callable[..., Node],
    chain: ReferenceChain,
    tmp_path: Path,
    point: str,
    actor: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="khipu.importer")
    faults = FaultPlan()
    # Mid-import for the per-block points; the writer's first start for StorageWriter.start.
    faults.arm_raise(point, skip=0 if point == "StorageWriter.start" else 5)
    node = start_node(faults)
    assert node.tree is not None
    slot = node.tree.table.slot(actor)
    wait_until(lambda: slot.restarts >= 1, 30, f"{actor} to be restarted")
    assert faults.fired(point) == 1
    assert "InjectedFault" in (slot.last_error or "")
    others = [s for s in node.tree.table.slots if s.name != actor]
    finish_and_check(node, chain, tmp_path / "datadir")
    assert slot.restarts == 1
    assert all(s.restarts == 0 for s in others)
    restarts = node.metrics.registry.get_sample_value(
        "khipu_actor_restarts_total", {"actor": actor}
    )
    assert restarts in (None, 1.0)  # fed by the next health round, if one came before the stop
    # The importer notices a lost block once, and waits for the writer instead of spinning.
    lost = [r for r in caplog.records if "resuming after its stored head" in r.getMessage()]
    assert len(lost) == (1 if point == "StorageWriter.import_block" else 0)


@pytest.mark.parametrize("point", ["Importer.next_block", "StorageWriter.import_block"])
def test_an_actor_that_stops_answering_is_detected_by_heartbeat_and_replaced(
    start_node: Callable[..., Node], chain: ReferenceChain, tmp_path: Path, point: str
) -> None:
    actor = point.split(".")[0]
    faults = FaultPlan()
    # The writer's stall ends by itself (its successor waits for the store it holds); the
    # importer's would last the whole test.
    faults.arm_stall(point, 3.0 if actor == "StorageWriter" else 600.0, skip=4)
    node = start_node(faults)
    assert node.tree is not None
    slot = node.tree.table.slot(actor)
    wait_until(lambda: slot.restarts >= 1, 60, f"the stalled {actor} to be replaced")
    assert "ActorStalled" in (slot.last_error or ""), slot.last_error
    assert "did not answer a heartbeat" in (slot.last_error or "")
    finish_and_check(node, chain, tmp_path / "datadir")
    assert slot.restarts == 1


def test_a_crash_loop_backs_off_then_escalates_and_the_node_stops_cleanly(
    start_node: Callable[..., Node],
    chain: ReferenceChain,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    faults = FaultPlan()
    faults.arm_raise("StorageWriter.import_block", skip=3, times=None)
    caplog.set_level(logging.WARNING, logger="khipu.actors")
    node = start_node(faults, max_restarts=3)
    outcome = node.wait(IMPORT_TIMEOUT)
    assert outcome is not None, "the node did not stop"
    assert not outcome.clean
    assert "gave up on NodeSupervisor/StorageWriter after 3 restart(s)" in outcome.reason
    assert "InjectedFault: fault injected at StorageWriter.import_block" in outcome.reason
    delays = [
        float(m.group(1))
        for r in caplog.records
        if (m := re.search(r"StorageWriter restarting in ([0-9.]+)s", r.getMessage()))
    ]
    assert len(delays) == 3
    assert delays == sorted(delays) and delays[0] < delays[-1]  # exponential backoff
    node.close()
    # The store was closed cleanly and holds the blocks committed before the loop.
    number, _, _ = stored_head(chain, tmp_path / "datadir")
    assert number == 3


def test_an_invalid_block_stops_the_import_but_not_the_node(
    start_node: Callable[..., Node], chain: ReferenceChain, tmp_path: Path
) -> None:
    raw_blocks = list(iter_rlp_blocks(chain.chain_path))
    gapped = tmp_path / "gapped.rlp"
    gapped.write_bytes(b"".join(raw_blocks[:3] + raw_blocks[4:]))  # block 4 is missing
    node = start_node(import_files=(gapped,))
    wait_until(lambda: import_ended(node), IMPORT_TIMEOUT, "the import to end")
    sync = node.import_status.snapshot()
    assert sync["state"] == "failed"
    assert "invalid block #5" in sync["error"] and "unknown parent" in sync["error"]
    assert str(gapped) in sync["error"]
    assert node.tree is not None
    assert all(slot.restarts == 0 for slot in node.tree.table.slots)  # nobody's failure
    outcome = node.shutdown("test over")
    assert outcome.clean
    number, _, _ = stored_head(chain, tmp_path / "datadir")
    assert number == 3


def test_the_rpc_compat_chain_imports_through_a_writer_restart(tmp_path: Path) -> None:
    """The writer fails on block 21 and is restarted; the import completes, and JSON-RPC,
    started before the restart, reads the store the new writer opened."""
    folder = require_testdata("rpc-compat-prague")
    genesis_json = json.loads((folder / "genesis.json").read_text())
    genesis = Genesis.from_json(genesis_json)
    chain_file = folder / "chain.rlp"
    reference = ChainStore.open(tmp_path / "reference", genesis, genesis_json)
    try:
        expected = import_files(
            reference, ChainRules(genesis.config), [chain_file], check_seal=False
        ).head
    finally:
        reference.close()
    faults = FaultPlan()
    faults.arm_raise("StorageWriter.import_block", skip=20)
    settings = NodeSettings(
        import_files=(chain_file,),
        check_seal=False,
        health=quick_health(),
        strategy=fast_strategy(),
        rpc=RpcConfig(port=0),
    )
    selection = ChainSelection("rpc-compat", tmp_path / "datadir", genesis, genesis_json)
    node = Node(selection, settings, faults=faults, emit_health_line=lambda line: None)
    node.start()
    try:
        wait_until(lambda: import_ended(node), IMPORT_TIMEOUT, "the import to end")
        assert node.import_status.snapshot()["state"] == "done"
        assert faults.fired("StorageWriter.import_block") == 1
        url = node.rpc_servers[0].url
        assert rpc_result(url, "eth_blockNumber") == hex(expected.block_number)
        latest = rpc_result(url, "eth_getBlockByNumber", "latest", False)
        assert latest["hash"] == "0x" + expected.hash.hex()
    finally:
        assert node.shutdown("test over").clean
    store = ChainStore.open(tmp_path / "datadir", genesis, genesis_json)
    try:
        head = store.head()
    finally:
        store.close()
    assert head.block_number == expected.block_number == 45
    assert (head.hash, head.state_root) == (expected.hash, expected.state_root)
