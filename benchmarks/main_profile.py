"""Where the importing process's time goes in a parallel block: cProfile of this process only.

A generated chain of one profile is imported into memory, a pool of forked workers (speculation
and storage roots) is started, every block is executed once to warm the caches, then each block
is executed again `--rounds` times from freshly decoded transactions (no sender cached) under
cProfile. The workers are not profiled: what is printed is what the merge process pays. Printed:
the top entries by own time, then the cumulative time of the steps that matter here (speculation
here, the merge's import_block, the state root, sender recovery).

    python -m benchmarks.main_profile [--profile erc20] [--blocks 4] [--txs 100] [--rounds 2]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import sys
import tempfile
from pathlib import Path
from typing import Any

from khipu.chain.block_files import iter_rlp_blocks
from khipu.chain.importer import BlockImporter, decode_block
from khipu.devnet.generate import generate_chain
from khipu.execution.executor import execute_block_parallel
from khipu.execution.pool import PoolLimits, WorkerPool
from khipu.execution.worker import run_task

STEPS = (
    "recover_public_key_from_msg_hash|import_block|state_root.py.*persist|update_trie|"
    "_speculate_with|speculate_block|compute"
)


def profile_chain(folder: Path, workers: int, rounds: int, top: int) -> str:
    """The printed profile of executing the chain in `folder` with `workers` workers."""
    from tests.chain_helpers import memory_chain

    chain, rules = memory_chain(json.loads((folder / "genesis.json").read_text()))
    raws = list(iter_rlp_blocks(folder / "chain.rlp"))
    importer = BlockImporter(chain, check_seal=False)
    for raw in raws:
        importer.import_block(decode_block(raw, rules))
    profiler = cProfile.Profile()

    def handler(task: Any) -> Any:
        return run_task(chain, task)

    with WorkerPool(handler, PoolLimits(workers=workers)) as pool:
        pool.start_workers()
        for raw in raws:
            execute_block_parallel(chain, decode_block(raw, rules), pool, workers=workers)
        for _round in range(rounds):
            for raw in raws:
                block = decode_block(raw, rules)
                profiler.enable()
                execution = execute_block_parallel(chain, block, pool, workers=workers)
                profiler.disable()
                if execution.block.header.hash != block.header.hash:
                    raise AssertionError(f"block #{block.number}: parallel result differs")
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(STEPS)
    return "\n".join(line for line in out.getvalue().splitlines() if line.strip())


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="erc20")
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument("--txs", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / args.profile
        generate_chain(folder, args.blocks, args.txs, args.profile, seed=11)
        print(profile_chain(folder, args.workers, args.rounds, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
