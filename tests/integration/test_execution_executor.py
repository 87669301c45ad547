"""The parallel executor with a long-lived pool, its serial fallback, and how it splits work."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from khipu.chain.chain import open_chain
from khipu.chain.config import Genesis
from khipu.chain.importer import BlockImporter, decode_block
from khipu.chain.rules import ChainRules
from khipu.devnet.generate import generate_chain
from khipu.execution.executor import (
    DatadirSpeculator,
    SpeculationTask,
    TxOutcome,
    chunks,
    execute_block_parallel,
    speculate,
)
from khipu.execution.pool import PoolLimits, WorkerPool
from khipu.storage.chain_store import ChainStore
from tests.chain_helpers import memory_chain, read_blocks


def test_chunks_cover_every_index_once_in_order() -> None:
    assert chunks(7, 3) == [(0, 1, 2), (3, 4), (5, 6)]
    assert chunks(2, 8) == [(0,), (1,)]
    assert chunks(1, 1) == [(0,)]


@pytest.fixture(scope="module")
def erc20_chain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("erc20")
    generate_chain(folder, 1, 12, "erc20", seed=3)
    return folder


def test_a_wrong_speculation_is_caught_by_the_header_and_rerun_serially(
    erc20_chain: Path,
) -> None:
    chain, rules = memory_chain(json.loads((erc20_chain / "genesis.json").read_text()))
    block = decode_block(read_blocks(erc20_chain / "chain.rlp")[0], rules)

    def tampered(task: SpeculationTask) -> list[TxOutcome]:
        outcomes = speculate(chain, task)
        first = outcomes[0]
        if first.index != 0 or first.rwset is None:
            return outcomes
        writes = dict(first.rwset.writes)
        address, write = next(iter(writes.items()))
        writes[address] = dataclasses.replace(write, balance=1, balance_delta=None)
        rwset = dataclasses.replace(first.rwset, writes=writes)
        return [dataclasses.replace(first, rwset=rwset), *outcomes[1:]]

    with WorkerPool(tampered, PoolLimits(workers=2)) as pool:
        execution = execute_block_parallel(chain, block, pool)
    assert execution.mode == "serial-fallback"
    assert execution.block.header.hash == block.header.hash


def test_a_long_lived_pool_runs_block_after_block(tmp_path: Path) -> None:
    generate_chain(tmp_path, 3, 10, "mixed", seed=5)
    chain, rules = memory_chain(json.loads((tmp_path / "genesis.json").read_text()))
    importer = BlockImporter(chain, check_seal=False)
    raws = read_blocks(tmp_path / "chain.rlp")
    # The workers read the chain they inherited; a chain in memory must hold every parent
    # before the fork, so import first and execute afterwards against the stored parents.
    for raw in raws:
        importer.import_block(decode_block(raw, rules))
    pool: WorkerPool[SpeculationTask, list[TxOutcome]]
    with WorkerPool(lambda task: speculate(chain, task), PoolLimits(workers=2)) as pool:
        for raw in raws:
            block = decode_block(raw, rules)
            execution = execute_block_parallel(chain, block, pool)
            assert execution.mode == "parallel"
            assert execution.block.header.hash == block.header.hash
        assert pool.counters["spawned"] == 2


def test_workers_follow_a_datadir_written_by_this_process(tmp_path: Path) -> None:
    chain_dir, datadir = tmp_path / "chain", tmp_path / "data"
    generate_chain(chain_dir, 3, 10, "erc20", seed=9)
    document = json.loads((chain_dir / "genesis.json").read_text())
    genesis = Genesis.from_json(document)
    rules = ChainRules(genesis.config)
    store = ChainStore.open(datadir, genesis, document)
    try:
        chain = open_chain(rules, store.db)
        importer = BlockImporter(chain, check_seal=False)
        speculator = DatadirSpeculator(datadir, rules)
        pool: WorkerPool[SpeculationTask, list[TxOutcome]]
        with WorkerPool(speculator, PoolLimits(workers=2)) as pool:
            for raw in read_blocks(chain_dir / "chain.rlp"):
                block = decode_block(raw, rules)
                execution = execute_block_parallel(chain, block, pool)
                assert execution.mode == "parallel", block.number
                assert execution.block.header.hash == block.header.hash
                importer.import_block(block)
                store.sync()  # the workers read the parent once it is committed
            assert pool.counters["spawned"] == 2
    finally:
        store.close()
