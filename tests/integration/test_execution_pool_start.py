"""Workers started in the background (`khipu import`): blocks run in order here until the
pool is up, then the adaptive choice may send them to the workers."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from khipu.chain.chain import KhipuChain
from khipu.chain.importer import BlockImporter, decode_block
from khipu.devnet.generate import generate_chain
from khipu.execution.block_executor import LocalPool, ParallelBlockExecutor
from khipu.execution.executor import speculate
from tests.chain_helpers import memory_chain, read_blocks


class SlowStartingPool:
    """A pool whose workers come up only when `up` is set; tasks run here, on `chain`."""

    def __init__(self, chain: KhipuChain) -> None:
        self.chain = chain
        self.up = threading.Event()
        self.started = 0
        self.tasks = 0

    def start_workers(self) -> int:
        assert self.up.wait(30), "the test never let the workers start"
        self.started += 1
        return 2

    def map(self, tasks: Sequence[Any]) -> list[Any]:
        self.tasks += len(tasks)
        return [speculate(self.chain, task) for task in tasks]

    def close(self) -> None:
        pass


def test_blocks_run_in_order_until_the_workers_are_up(tmp_path: Path) -> None:
    generate_chain(tmp_path, 3, 12, "erc20", seed=4)
    chain, rules = memory_chain(json.loads((tmp_path / "genesis.json").read_text()))
    blocks = [decode_block(raw, rules) for raw in read_blocks(tmp_path / "chain.rlp")]
    pool = SlowStartingPool(chain)
    runner = LocalPool(pool)  # type: ignore[arg-type]
    runner.start_in_background()
    executor = ParallelBlockExecutor(chain, runner, workers=2)
    importer = BlockImporter(chain, check_seal=False, executor=executor)
    try:
        assert not runner.ready()
        assert importer.import_block(blocks[0]).header.hash == blocks[0].header.hash
        assert executor.modes == {"batched": 1}  # did not wait for the workers
        assert pool.tasks == 0
        pool.up.set()
        runner.map([])  # waits for the start
        assert runner.ready() and pool.started == 1
        for block in blocks[1:]:
            assert importer.import_block(block).header.hash == block.header.hash
    finally:
        executor.close()
    # the adaptive choice measures parallel execution first, now that there are workers
    assert executor.modes["parallel"] >= 1, executor.summary()
    assert pool.tasks > 0


def test_always_parallel_waits_for_the_workers(tmp_path: Path) -> None:
    generate_chain(tmp_path, 1, 12, "erc20", seed=4)
    chain, rules = memory_chain(json.loads((tmp_path / "genesis.json").read_text()))
    block = decode_block(read_blocks(tmp_path / "chain.rlp")[0], rules)
    pool = SlowStartingPool(chain)
    runner = LocalPool(pool)  # type: ignore[arg-type]
    runner.start_in_background()
    executor = ParallelBlockExecutor(chain, runner, workers=2, always_parallel=True)
    threading.Timer(0.2, pool.up.set).start()
    try:
        assert executor(block).header.hash == block.header.hash
    finally:
        executor.close()
    assert executor.modes == {"parallel": 1}
    assert pool.started == 1
