"""Serial against parallel block execution on generated chains of every workload profile.

For each profile a dev chain is generated and imported into memory; then every block is executed
on its parent state twice in this run: serially (py-evm's `import_block`) and in parallel (a
long-lived pool of forked workers speculating, then the in-order merge here). Nothing is stored
by either. Prints blocks/s for both, the ratio, how many transactions the merge re-executed, and
where the parallel time went (speculation in the workers vs the merge and block work here).

    python -m benchmarks.parallel_execution [--blocks 4] [--txs 40] [--workers N]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from khipu.chain.block_files import iter_rlp_blocks
from khipu.chain.importer import BlockImporter, decode_block
from khipu.devnet.generate import generate_chain
from khipu.execution.executor import (
    SpeculationTask,
    TxOutcome,
    execute_block_parallel,
    execute_block_serial,
    speculate,
)
from khipu.execution.pool import PoolLimits, WorkerPool

PROFILES = ("transfers", "erc20", "amm", "mixed")


def bench_profile(folder: Path, workers: int) -> str:
    """One result line for the chain in `folder`."""
    from tests.chain_helpers import memory_chain

    chain, rules = memory_chain(json.loads((folder / "genesis.json").read_text()))
    importer = BlockImporter(chain, check_seal=False)
    blocks = [decode_block(raw, rules) for raw in iter_rlp_blocks(folder / "chain.rlp")]
    for block in blocks:
        importer.import_block(block)

    started = time.perf_counter()
    for block in blocks:
        execute_block_serial(chain, block)
    serial = time.perf_counter() - started

    txs = reexecuted = 0
    speculating = merging = 0.0
    pool: WorkerPool[SpeculationTask, list[TxOutcome]]
    with WorkerPool(lambda task: speculate(chain, task), PoolLimits(workers=workers)) as pool:
        pool.map([])  # nothing: the workers fork on the first block
        started = time.perf_counter()
        for block in blocks:
            execution = execute_block_parallel(chain, block, pool, workers=workers)
            assert execution.block.header.hash == block.header.hash, block.number
            txs += execution.transactions
            reexecuted += execution.reexecuted
            speculating += execution.speculate_seconds
            merging += execution.merge_seconds
        parallel = time.perf_counter() - started
    n = len(blocks)
    return (
        f"{folder.name:10s} serial {n / serial:6.2f} blk/s  parallel {n / parallel:6.2f} blk/s  "
        f"ratio {serial / parallel:4.2f}x  re-executed {reexecuted}/{txs}  "
        f"parallel time: speculation {speculating:5.2f}s, merge+block work {merging:5.2f}s, "
        f"other {parallel - speculating - merging:5.2f}s (serial {serial:5.2f}s)"
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument("--txs", type=int, default=40)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args(argv)
    print(f"parallel execution: {args.blocks} blocks x {args.txs} txs, {args.workers} workers, "
          f"{os.cpu_count()} cores")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        for profile in PROFILES:
            folder = Path(tmp) / profile
            generate_chain(folder, args.blocks, args.txs, profile, seed=11)
            print(bench_profile(folder, args.workers), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
