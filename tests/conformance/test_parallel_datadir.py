"""The contention scenarios through the executor `khipu import --execution.parallel` uses.

`ParallelBlockExecutor` keeps one long-lived pool whose workers read the parent state from the
datadir (Kesque, opened read-only) instead of a fork of the importer's memory. Each scenario's
blocks are imported into a fresh datadir with it: every block must import (the importer checks
every header field, so the result is the serial one) and run in parallel, never through the
fallback. By default three scenarios, with KHIPU_CONFORMANCE=full all of them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from khipu.chain.chain import open_chain
from khipu.chain.config import Genesis
from khipu.chain.importer import BlockImporter
from khipu.execution.block_executor import ParallelBlockExecutor
from khipu.storage.chain_store import ChainStore
from tests.conformance.contention_blocks import ContentionChain, genesis_document
from tests.conformance.test_parallel_differential import EXPLICIT, Scenario
from tests.conftest import conformance_full

pytestmark = [
    pytest.mark.conformance,
    pytest.mark.filterwarnings("ignore:SELFDESTRUCT opcode:DeprecationWarning"),
]

WORKERS = 2


def import_through_datadir(scenario: Scenario, datadir: Path) -> ParallelBlockExecutor:
    """Build the scenario's blocks, then import them into `datadir` with a long-lived
    ParallelBlockExecutor; returns it (closed) with its counts of modes."""
    built = ContentionChain(scenario.fork, scenario.coinbase_is_sender)
    blocks = [built.build(list(actions)).block for actions in scenario.blocks]
    document = genesis_document(scenario.fork)
    genesis = Genesis.from_json(document)
    store = ChainStore.open(datadir, genesis, document)
    try:
        chain = open_chain(built.builder.rules, store.db)
        executor = ParallelBlockExecutor.with_own_pool(
            chain, datadir, workers=WORKERS, always_parallel=True
        )
        try:
            importer = BlockImporter(chain, check_seal=False, executor=executor)
            for block in blocks:
                result = importer.import_block(block)
                assert result.header.hash == block.header.hash
        finally:
            executor.close()
    finally:
        store.close()
    return executor


# The default sample: one scenario each of a wipe, the coinbase, delegations; full: all.
DEFAULT_SCENARIOS = (
    "coinbase-is-sender",
    "create2-destroy-recreate",
    "delegations-and-requests",
    "shanghai-destroy-then-credit",
)
SCENARIOS = sorted(EXPLICIT) if conformance_full() else DEFAULT_SCENARIOS


@pytest.mark.parametrize("name", SCENARIOS)
def test_scenario_through_a_datadir_pool(name: str, tmp_path: Path) -> None:
    scenario = EXPLICIT[name]
    executor = import_through_datadir(scenario, tmp_path / "data")
    assert executor.modes == {"parallel": len(scenario.blocks)}, executor.summary()
