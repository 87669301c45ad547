"""The parallel executor as a `BlockImporter` hook: one long-lived pool over a datadir.

`ParallelBlockExecutor` is what `khipu import --execution.parallel` and `khipu run
--execution.parallel` hand to `BlockImporter(executor=...)`. Its workers are forked once (after
py-evm is imported, so they skip the import) and read the parent state from the datadir through
`ChainStore.open_readonly`. The store commits each block to Kesque as it persists it, so the
parent of every block is already visible to them.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

from eth.abc import BlockAPI

from khipu.chain.chain import KhipuChain
from khipu.execution.executor import (
    DatadirSpeculator,
    SpeculationTask,
    TxOutcome,
    execute_block_parallel,
)
from khipu.execution.pool import PoolLimits, WorkerPool

log = logging.getLogger("khipu.execution")

MIN_TRANSACTIONS = 2  # fewer transactions than this run serially (nothing to overlap)


class ParallelBlockExecutor:
    """Executes blocks of `chain` (whose store lives in `datadir`) with `workers` processes.

    Calling it with a block returns the executed block, as py-evm's serial `import_block` would
    (a parallel result that disagrees with the header is re-run serially inside). Raises py-evm's
    ValidationError for a block that is invalid. `modes` counts blocks by how they ran
    ("parallel", "serial", "serial-fallback"). Close it to stop the workers.
    """

    def __init__(
        self,
        chain: KhipuChain,
        datadir: Path,
        *,
        workers: int,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, not {workers}")
        self.chain = chain
        self.workers = workers
        self.modes: Counter[str] = Counter()
        self.pool: WorkerPool[SpeculationTask, list[TxOutcome]] = WorkerPool(
            DatadirSpeculator(Path(datadir), chain.rules), PoolLimits(workers=workers)
        )

    def __call__(self, block: BlockAPI) -> BlockAPI:
        execution = execute_block_parallel(
            self.chain,
            block,
            self.pool,
            workers=self.workers,
            min_transactions=MIN_TRANSACTIONS,
        )
        self.modes[execution.mode] += 1
        log.debug("block #%d: %s, %d txs, %d re-executed", block.number, execution.mode,
                  execution.transactions, execution.reexecuted)  # fmt: skip
        return execution.block

    def summary(self) -> str:
        """How many blocks ran in each mode, for a log line."""
        return ", ".join(f"{count} {mode}" for mode, count in sorted(self.modes.items())) or "none"

    def close(self) -> None:
        """Stop the workers; closing twice is harmless."""
        self.pool.close()
