"""Serial against parallel block execution on generated chains of every workload profile.

For each profile a dev chain is generated and imported into memory; then every block is executed
on its parent state in this run: serially (py-evm's `import_block`, khipu's serial import) and in
parallel with each worker count asked for (a long-lived pool of forked workers speculating, this
process speculating one more share meanwhile, then the in-order merge here). 0 workers means
everything speculated here first, then merged; "batched" is every transaction executed in order
on the merging VM with no speculation (execute_block_batched). Both show what the batched state
root, the caches and the cheaper block work gain without any parallelism. Nothing is stored.

The machine is shared, so the modes are interleaved block by block and the whole pass is repeated
`--rounds` times; each block's time in each mode is the best of its rounds. Printed per mode:
blocks/s, tx/s, the speedup over serial, the parallel rate (transactions committed from the
speculative pass), re-executions, and where the parallel time went (speculation in the workers
vs the merge and block work here), summed over the best rounds.

    python -m benchmarks.parallel_execution [--blocks 4] [--txs 100] [--workers 0,1,2] [--rounds 3]
        [--profiles transfers,erc20,amm,mixed] [--no-mainnet]

The real mainnet blocks of mainnet/nimbus-persist-block follow the generated chains (see
benchmarks/parallel_mainnet.py; `--profiles ""` for them alone, skipped if the data is absent).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from khipu.chain.block_files import iter_rlp_blocks
from khipu.chain.importer import BlockImporter, decode_block
from khipu.devnet.generate import generate_chain
from khipu.execution.executor import (
    BlockExecution,
    SpeculationTask,
    TxOutcome,
    execute_block_batched,
    execute_block_parallel,
    execute_block_serial,
)
from khipu.execution.pool import PoolLimits, WorkerPool
from khipu.execution.storage_roots import MIN_UPDATES_FOR_WORKERS, StorageRoots, StorageRootTask
from khipu.execution.worker import run_task

PROFILES = ("transfers", "erc20", "amm", "mixed")
# The benchmark's blocks go through speculation from one transaction on (the node's executor
# runs blocks of fewer than two serially): what the parallel path costs on a tiny block.
PARALLEL_MIN_TRANSACTIONS = 1


class MemoryChainSpeculator:
    """A pool handler speculating (and updating storage tries) on a chain held in memory (the
    workers fork with it)."""

    def __init__(self, chain: Any) -> None:
        self.chain = chain

    def __call__(self, task: SpeculationTask | StorageRootTask) -> Any:
        return run_task(self.chain, task)


@dataclass
class ModeResult:
    """The best time of each block in one mode, the execution that gave it, and the CPU
    seconds that run used in this process and in the workers."""

    seconds: list[float]
    executions: list[BlockExecution | None]
    main_cpu: list[float]
    worker_cpu: list[float]


def workers_cpu(pool: WorkerPool[SpeculationTask, list[TxOutcome]] | None) -> float:
    """CPU seconds used so far by the pool's live workers (Linux /proc; 0 elsewhere)."""
    if pool is None:
        return 0.0
    total = 0.0
    for pid in pool.worker_pids().values():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def bench_profile(
    folder: Path, worker_counts: list[int], rounds: int, roots_min_updates: int | None
) -> list[str]:
    """Result lines (serial, then one per worker count) for the chain in `folder`."""
    from tests.chain_helpers import memory_chain

    chain, rules = memory_chain(json.loads((folder / "genesis.json").read_text()))
    importer = BlockImporter(chain, check_seal=False)
    blocks = [decode_block(raw, rules) for raw in iter_rlp_blocks(folder / "chain.rlp")]
    for block in blocks:
        importer.import_block(block)
    txs = sum(len(block.transactions) for block in blocks)

    pools: dict[int, Any] = {
        n: WorkerPool(MemoryChainSpeculator(chain), PoolLimits(workers=n)) if n else None
        for n in worker_counts
    }
    # The storage roots on the same workers (None: in this process, as before).
    roots = {
        n: StorageRoots(pool, n, min_updates=roots_min_updates)
        for n, pool in pools.items()
        if pool is not None and roots_min_updates is not None
    }
    n = len(blocks)
    results = new_results(worker_counts, n)
    try:
        for _round in range(rounds):
            for position, block in enumerate(blocks):
                measure_block(chain, block, pools, results, position, roots)
    finally:
        for pool in pools.values():
            if pool is not None:
                pool.close()

    serial = sum(results["serial"].seconds)
    lines = [_line(folder.name, "serial", len(blocks), txs, serial, serial, results["serial"])]
    batched_result = results["batched"]
    seconds = sum(batched_result.seconds)
    lines.append(_line(folder.name, "batched", len(blocks), txs, seconds, serial, batched_result))
    for count in worker_counts:
        result = results[count]
        label = f"{count} worker{'s' if count != 1 else ''}"
        seconds = sum(result.seconds)
        lines.append(_line(folder.name, label, len(blocks), txs, seconds, serial, result))
        if count in roots:
            counters = roots[count].counters
            lines.append(
                f"{'':21s} storage roots: {counters['tasks']} tasks, "
                f"{counters['remote']} accounts on workers, {counters['local']} here"
            )
    return lines


def new_results(worker_counts: list[int], blocks: int) -> dict[Any, ModeResult]:
    """Empty results of every mode: serial, batched and each worker count."""
    return {
        mode: ModeResult([float("inf")] * blocks, [None] * blocks, [0.0] * blocks, [0.0] * blocks)
        for mode in ["serial", "batched", *worker_counts]
    }


def measure_block(
    chain: Any,
    block: Any,
    pools: dict[int, WorkerPool[SpeculationTask, list[TxOutcome]] | None],
    results: dict[Any, ModeResult],
    position: int,
    roots: dict[int, StorageRoots] | None = None,
) -> None:
    """Execute `block` once in each mode (serial, batched, each pool's worker count), keeping
    each mode's best time at `position`; `roots[count]` puts the storage roots of that worker
    count's blocks on its workers. Raises AssertionError if a result differs from the block's
    header."""
    roots = roots or {}
    started, cpu = time.perf_counter(), time.process_time()
    execute_block_serial(chain, block)
    elapsed = time.perf_counter() - started
    _keep_best(results["serial"], position, elapsed, None, time.process_time() - cpu)
    started, cpu = time.perf_counter(), time.process_time()
    in_order = execute_block_batched(chain, block, StorageRoots(None, 1))
    elapsed = time.perf_counter() - started
    if in_order.block.header.hash != block.header.hash:
        raise AssertionError(f"block #{block.number}: batched result differs")
    _keep_best(results["batched"], position, elapsed, in_order, time.process_time() - cpu)
    for count, pool in pools.items():
        before = workers_cpu(pool)
        started, cpu = time.perf_counter(), time.process_time()
        execution = execute_block_parallel(
            chain,
            block,
            pool,
            workers=count,
            min_transactions=PARALLEL_MIN_TRANSACTIONS,
            storage_roots=roots.get(count),
        )
        elapsed = time.perf_counter() - started
        main_cpu = time.process_time() - cpu
        if execution.block.header.hash != block.header.hash:
            raise AssertionError(f"block #{block.number}: parallel result differs")
        _keep_best(results[count], position, elapsed, execution, main_cpu,
                   workers_cpu(pool) - before)  # fmt: skip


def _keep_best(
    result: ModeResult,
    position: int,
    seconds: float,
    execution: Any,
    main_cpu: float,
    worker_cpu: float = 0.0,
) -> None:
    if seconds < result.seconds[position]:
        result.seconds[position] = seconds
        result.executions[position] = execution
        result.main_cpu[position] = main_cpu
        result.worker_cpu[position] = worker_cpu


def _line(
    profile: str,
    mode: str,
    blocks: int,
    txs: int,
    seconds: float,
    serial: float,
    result: ModeResult,
    gas: int | None = None,
) -> str:
    line = (
        f"{profile:10s} {mode:10s} {blocks / seconds:6.2f} blk/s {txs / seconds:7.1f} tx/s  "
        + ("" if gas is None else f"{gas / seconds / 1e6:6.2f} Mgas/s  ")
        + f"speedup {serial / seconds:4.2f}x"
    )
    cpu = f"cpu {sum(result.main_cpu):5.2f}s here"
    if mode == "serial":
        return line + f"  ({seconds:5.2f}s; {cpu})"
    cpu += f" + {sum(result.worker_cpu):5.2f}s workers"
    executions = [e for e in result.executions if e is not None]
    reexecuted = sum(e.reexecuted for e in executions)
    modes = sorted({e.mode for e in executions})
    speculating = sum(e.speculate_seconds for e in executions)
    merging = sum(e.merge_seconds for e in executions)
    rooting = sum(e.roots_seconds for e in executions)
    # Committed from the speculative pass, over all transactions (blocks run serially commit none).
    committed = sum(e.transactions - e.reexecuted for e in executions if e.mode == "parallel")
    rate = "n/a" if mode == "batched" else f"{100 * committed / max(1, txs):5.1f}%"
    return line + (
        f"  parallel rate {rate}  "
        f"re-executed {reexecuted}/{txs}  ({seconds:5.2f}s: speculation {speculating:5.2f}s, "
        f"merge+block work {merging:5.2f}s, of it state root {rooting:5.2f}s; {cpu}; "
        f"modes {','.join(modes)})"
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument("--txs", type=int, default=100)
    parser.add_argument(
        "--workers",
        default="0,1,2",
        help="worker counts, comma-separated (0: speculate here, then merge: no parallelism)",
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profiles", default=",".join(PROFILES))
    parser.add_argument(
        "--roots-min-updates",
        type=int,
        default=MIN_UPDATES_FOR_WORKERS,
        help="slot updates from which a block's storage roots go to the workers (-1: never)",
    )
    parser.add_argument(
        "--mainnet",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also the real mainnet blocks of mainnet/nimbus-persist-block ($KHIPU_TESTDATA)",
    )
    args = parser.parse_args(argv)
    worker_counts = [int(n) for n in args.workers.split(",")]
    profiles = [profile for profile in args.profiles.split(",") if profile]
    chains = f"{args.blocks} blocks x {args.txs} txs of {','.join(profiles)}" if profiles else ""
    print(f"parallel execution: {chains}{' + ' if chains and args.mainnet else ''}"
          f"{'mainnet witness blocks' if args.mainnet else ''}, workers {worker_counts}, "
          f"best of {args.rounds} interleaved rounds, {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.1f}")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        for profile in profiles:
            folder = Path(tmp) / profile
            generate_chain(folder, args.blocks, args.txs, profile, seed=11)
            threshold = None if args.roots_min_updates < 0 else args.roots_min_updates
            for line in bench_profile(folder, worker_counts, args.rounds, threshold):
                print(line, flush=True)
    if args.mainnet:
        from benchmarks.parallel_mainnet import bench_mainnet_blocks

        for line in bench_mainnet_blocks(worker_counts, args.rounds):
            print(line, flush=True)
    print(f"load at the end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
