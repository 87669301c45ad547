"""Storage roots on the workers of a datadir pool (what `khipu import` and the node run): the
workers read each block's parent storage tries from the datadir the importer commits to."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from khipu.actors.metrics import NodeMetrics
from khipu.chain.chain import open_chain
from khipu.chain.config import Genesis
from khipu.chain.importer import BlockImporter, decode_block
from khipu.chain.rules import ChainRules
from khipu.devnet.generate import generate_chain
from khipu.execution.block_executor import ParallelBlockExecutor
from khipu.storage.chain_store import ChainStore
from tests.chain_helpers import read_blocks
from tests.conformance.contention_blocks import ContentionChain, genesis_document
from tests.conformance.test_parallel_differential import EXPLICIT
from tests.conftest import conformance_full

pytestmark = pytest.mark.filterwarnings("ignore:SELFDESTRUCT opcode:DeprecationWarning")


def test_datadir_workers_compute_every_storage_root_from_the_committed_parent(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="khipu.execution")
    folder = tmp_path / "chain"
    folder.mkdir()
    generate_chain(folder, 3, 30, "mixed", seed=11)
    document = json.loads((folder / "genesis.json").read_text())
    genesis = Genesis.from_json(document)
    rules = ChainRules(genesis.config)
    store = ChainStore.open(tmp_path / "datadir", genesis, document)
    metrics = NodeMetrics()
    try:
        chain = open_chain(rules, store.db)
        executor = ParallelBlockExecutor.with_own_pool(
            chain,
            tmp_path / "datadir",
            workers=2,
            always_parallel=True,
            roots_min_updates=0,
            metrics=metrics,
        )
        try:
            importer = BlockImporter(chain, check_seal=False, executor=executor)
            for raw in read_blocks(folder / "chain.rlp"):
                block = decode_block(raw, rules)
                assert importer.import_block(block).header.hash == block.header.hash
        finally:
            executor.close()
    finally:
        store.close()
    counters = executor.storage_roots.counters
    assert executor.modes["parallel"] == 3
    assert counters["tasks"] >= 3
    assert counters["remote"] > 0
    assert counters["missing"] == 0  # every parent storage trie was visible to the workers
    assert counters["fallbacks"] == 0
    lines = [r.fields for r in caplog.records if r.getMessage() == "block executed"]  # type: ignore[attr-defined]
    assert len(lines) == 3
    assert all(float(fields["roots_ms"]) > 0 for fields in lines)
    assert sum(fields["roots_tasks"] for fields in lines) == counters["tasks"]
    exported = metrics.registry.get_sample_value("khipu_storage_root_tasks_total")
    assert exported == counters["tasks"]


# Wipes and re-creation, delegations and system contracts, a contract deployed and called; each
# changes the storage of several accounts in a block. Full: every scenario.
DEFAULT_SCENARIOS = ("create2-destroy-recreate", "delegations-and-requests", "deploy-and-call")
SCENARIOS = sorted(EXPLICIT) if conformance_full() else list(DEFAULT_SCENARIOS)


@pytest.mark.parametrize("name", SCENARIOS)
def test_contention_scenarios_with_every_storage_root_on_the_workers(
    name: str, tmp_path: Path
) -> None:
    """The conformance contention scenarios (wipes, self-destructs, CREATE2 collisions, system
    contracts) imported through a datadir pool that gets every storage root it can."""
    scenario = EXPLICIT[name]
    built = ContentionChain(scenario.fork, scenario.coinbase_is_sender)
    blocks = [built.build(list(actions)).block for actions in scenario.blocks]
    document = genesis_document(scenario.fork)
    store = ChainStore.open(tmp_path / "data", Genesis.from_json(document), document)
    try:
        chain = open_chain(built.builder.rules, store.db)
        executor = ParallelBlockExecutor.with_own_pool(
            chain, tmp_path / "data", workers=2, always_parallel=True, roots_min_updates=0
        )
        try:
            importer = BlockImporter(chain, check_seal=False, executor=executor)
            for block in blocks:
                assert importer.import_block(block).header.hash == block.header.hash
        finally:
            executor.close()
    finally:
        store.close()
    assert executor.modes == {"parallel": len(blocks)}, executor.summary()
    counters = executor.storage_roots.counters
    if name in DEFAULT_SCENARIOS:
        assert counters["remote"] >= 2
    assert counters["missing"] == counters["fallbacks"] == counters["rejected"] == 0
