"""Where storage roots on the workers start to pay: in-process against a pool of forked workers.

Builds 64 storage tries of 300 slots in memory, then for each total of slot updates (spread over
16 accounts) computes the new storage roots three ways, interleaved, best of `--rounds`: all in
this process; all on the workers (`share_here=False`); on the workers with this process taking
one share (what the executor does). Printed per total: wall time and this process's CPU time of
each. The threshold `storage_roots.MIN_UPDATES_FOR_WORKERS` is where "workers + here" stops
losing to "here" in wall time on this machine.

    python -m benchmarks.storage_roots [--workers 2] [--rounds 7] [--updates 100,200,400,800,1600]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time

import rlp
from eth_hash.auto import keccak

from khipu.execution.pool import PoolLimits, WorkerPool
from khipu.execution.storage_roots import (
    StorageBatch,
    StorageRoot,
    StorageRoots,
    StorageRootTask,
    compute_storage_roots,
)
from khipu.execution.trie_batch import BLANK_ROOT, update_trie

ACCOUNTS = 16
STORE: dict[bytes, bytes] = {}


def build_tries(rng: random.Random, count: int, slots: int) -> list[bytes]:
    """`count` storage tries of `slots` random slots in STORE; their roots."""
    roots: list[bytes] = []
    for _ in range(count):
        values = {
            keccak(rng.randbytes(32)): rlp.encode(rng.randrange(1, 2**64)) for _ in range(slots)
        }
        tree = update_trie(STORE, BLANK_ROOT, values)
        STORE.update(tree.nodes)
        roots.append(tree.root_hash)
    return roots


def make_batches(rng: random.Random, roots: list[bytes], total: int) -> list[StorageBatch]:
    """`total` new slots spread evenly over ACCOUNTS of the tries."""
    per = max(1, total // ACCOUNTS)
    batches = []
    for number in range(ACCOUNTS):
        updates = {
            keccak(rng.randbytes(32)): rlp.encode(rng.randrange(1, 2**64)) for _ in range(per)
        }
        batches.append(
            StorageBatch(bytes([number]) * 20, roots[number], tuple(sorted(updates.items())))
        )
    return batches


def on_workers(task: StorageRootTask) -> list[StorageRoot]:
    return compute_storage_roots(STORE, task)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--updates", default="100,200,400,800,1600")
    args = parser.parse_args(argv)
    rng = random.Random(1)
    roots = build_tries(rng, ACCOUNTS, 300)
    load = os.getloadavg()[0]
    print(f"storage roots: {ACCOUNTS} accounts, tries of 300 slots, {args.workers} workers, "
          f"best of {args.rounds}, {os.cpu_count()} cores, load {load:.1f}")  # fmt: skip
    with WorkerPool(on_workers, PoolLimits(workers=args.workers)) as pool:
        pool.start_workers()
        modes = {
            "here": StorageRoots(None, args.workers),
            "workers": StorageRoots(pool, args.workers, min_updates=0, share_here=False),
            "workers+here": StorageRoots(pool, args.workers, min_updates=0),
        }
        for total in [int(n) for n in args.updates.split(",")]:
            batches = make_batches(rng, roots, total)
            best = {name: (float("inf"), 0.0) for name in modes}
            for _round in range(args.rounds):
                for name, roots_of in modes.items():
                    started, cpu = time.perf_counter(), time.process_time()
                    roots_of.compute(STORE, batches)
                    wall = time.perf_counter() - started
                    if wall < best[name][0]:
                        best[name] = (wall, time.process_time() - cpu)
            cells = "  ".join(
                f"{name} {wall * 1000:6.1f} ms (cpu here {cpu * 1000:5.1f})"
                for name, (wall, cpu) in best.items()
            )
            print(f"{total:5d} updates  {cells}", flush=True)
    print(f"load at the end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
