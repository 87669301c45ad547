"""A steady append run across one hash index growth: in the writer vs in a child process.

    python -m benchmarks.kesque_growth --keys 600000 --appends 200000 --commit 1000

Preloads `--keys` records into a store whose index was made big enough for them (no growth
yet, slots = the power of two that `--keys` fills to under hash_index_max_load), then appends
`--appends` more in commits of `--commit`, crossing the growth; prints, per mode, records/s
over the append run, the slowest commit and the commit that switched generation. Both modes
run in one process, one after the other, on the same keys.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import resource
import tempfile
import time
from pathlib import Path

from benchmarks.kesque_vs_leveldb import key_of, value_of


def run(
    mode: str, path: Path, keys: int, appends: int, commit: int, fsync: bool
) -> dict[str, float]:
    from khipu.storage.kesque import Kesque, KesqueConfig

    slots = 1 << 10
    while slots * 0.6 < keys:
        slots <<= 1
    background = 0 if mode == "background" else 1 << 62
    config = dataclasses.replace(
        KesqueConfig(cache_bytes={}),
        hash_index_initial_slots=slots,
        hash_index_background_entries=background,
        fsync=fsync,
    )
    with Kesque.open(path, config=config) as store:
        storage = store.hash_topic("storage")
        for start in range(0, keys, 10_000):
            storage.put_many(
                (key_of(i), value_of(i)) for i in range(start, min(keys, start + 10_000))
            )
            store.commit()
        batches = [
            [(key_of(i), value_of(i)) for i in range(start, min(keys + appends, start + commit))]
            for start in range(keys, keys + appends, commit)
        ]
        slowest = switch = building = 0.0
        children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu_began = time.process_time()
        began = time.perf_counter()
        for batch in batches:
            generation = store.state.topic("storage").index_generation
            t0 = time.perf_counter()
            storage.put_many(batch)
            store.commit()
            took = time.perf_counter() - t0
            slowest = max(slowest, took)
            if storage._growth.building:
                building += took
            if store.state.topic("storage").index_generation != generation:
                switch = took
        elapsed = time.perf_counter() - began
        writer_cpu = time.process_time() - cpu_began
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        child_cpu = (children.ru_utime + children.ru_stime) - (
            children_before.ru_utime + children_before.ru_stime
        )
        state = store.state.topic("storage")
    return {
        "records_per_s": appends / elapsed,
        "slowest_commit_ms": slowest * 1000,
        "switch_commit_ms": switch * 1000,
        "seconds": elapsed,
        "building_s": building,
        "writer_cpu_s": writer_cpu,
        "child_cpu_s": child_cpu,
        "generation": state.index_generation,
        "slots": state.index_slots,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keys", type=int, default=300_000)
    parser.add_argument("--appends", type=int, default=200_000)
    parser.add_argument("--commit", type=int, default=1000)
    parser.add_argument("--fsync", action="store_true")
    parser.add_argument("--modes", default="writer,background")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(f"keys={args.keys} appends={args.appends} commit={args.commit} fsync={args.fsync}")
    for mode in args.modes.split(","):
        with tempfile.TemporaryDirectory(prefix="kesque-growth-") as folder:
            result = run(mode, Path(folder), args.keys, args.appends, args.commit, args.fsync)
        print(
            f"{mode:10s} records/s={result['records_per_s']:,.0f} "
            f"slowest_commit_ms={result['slowest_commit_ms']:.1f} "
            f"switch_commit_ms={result['switch_commit_ms']:.1f} "
            f"seconds={result['seconds']:.2f} commits_while_building_s={result['building_s']:.2f} "
            f"writer_cpu_s={result['writer_cpu_s']:.2f} child_cpu_s={result['child_cpu_s']:.2f} "
            f"generation={result['generation']:.0f} slots={result['slots']:.0f}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
