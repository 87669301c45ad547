"""Random reads of 32-byte keys: Kesque's hash topic against LevelDB (plyvel).

    python benchmarks/kesque_vs_leveldb.py [--records N] [--reads R]

Both stores get the same N records (32-byte keys, 100..500-byte values, loaded in batches of
10,000 like blocks), then R random gets each, twice: cold-ish (every file of both stores dropped
from the page cache with posix_fadvise(DONTNEED), then reopened) and warm (the same keys again).
Kesque's own LRU cache is off, so both measure the store, not a cache in front of it. Besides
gets per second it prints, per get, Kesque's pread calls (counted in its read function) and the
read syscalls and major page faults the kernel counted for the whole process (/proc/self/io
syscr, getrusage), which cover LevelDB too; LevelDB reads its tables through mmap, so its
reads show as page faults, not syscalls.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import resource
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

BATCH = 10_000


def key_of(i: int) -> bytes:
    return hashlib.sha256(i.to_bytes(8, "big")).digest()


def value_of(i: int) -> bytes:
    seed = hashlib.sha256(b"v" + i.to_bytes(8, "big")).digest()
    length = 100 + int.from_bytes(seed[:2], "big") % 401
    return (seed * (length // 32 + 1))[:length]


@dataclass
class Measure:
    seconds: float
    store_reads: int
    syscalls: int
    major_faults: int


def read_syscalls() -> int:
    try:
        with open("/proc/self/io") as io:
            for line in io:
                if line.startswith("syscr:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def drop_from_page_cache(directory: Path) -> None:
    """Ask the kernel to forget the cached pages of every file under `directory`."""
    for path in directory.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def measure(get: Callable[[bytes], bytes | None], keys: list[bytes]) -> Measure:
    from khipu.storage.kesque.files import READS

    reads_before, syscalls_before = READS.calls, read_syscalls()
    faults_before = resource.getrusage(resource.RUSAGE_SELF).ru_majflt
    start = time.perf_counter()
    for key in keys:
        if get(key) is None:
            raise AssertionError(f"key {key.hex()} missing")
    seconds = time.perf_counter() - start
    return Measure(
        seconds,
        READS.calls - reads_before,
        read_syscalls() - syscalls_before,
        resource.getrusage(resource.RUSAGE_SELF).ru_majflt - faults_before,
    )


def load_kesque(path: Path, records: int) -> float:
    from khipu.storage.kesque import Kesque, KesqueConfig

    start = time.perf_counter()
    with Kesque.open(path, config=KesqueConfig(cache_bytes={})) as kq:
        topic = kq.topic("storage")
        for i in range(records):
            topic.put(key_of(i), value_of(i))
            if i % BATCH == BATCH - 1:
                kq.commit()
        kq.commit()
    return time.perf_counter() - start


def load_leveldb(path: Path, records: int) -> float:
    import plyvel

    start = time.perf_counter()
    db = plyvel.DB(str(path), create_if_missing=True)
    for first in range(0, records, BATCH):
        with db.write_batch(sync=True) as batch:
            for i in range(first, min(first + BATCH, records)):
                batch.put(key_of(i), value_of(i))
    db.close()
    return time.perf_counter() - start


def report(name: str, phase: str, result: Measure, count: int) -> float:
    rate = count / result.seconds
    per_get = f"{result.syscalls / count:.2f} read syscalls/get, "
    per_get += f"{result.major_faults} major page faults in all"
    if name == "kesque":
        per_get = f"{result.store_reads / count:.2f} preads/get (counted), " + per_get
    print(f"  {name:8} {phase:9} {rate:12,.0f} gets/s   {per_get}")
    return rate


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns 0 (a missing key raises AssertionError)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--reads", type=int, default=20_000)
    parser.add_argument("--dir", type=Path, default=None, help="work folder (default: temp)")
    args = parser.parse_args(argv)

    from khipu.storage.kesque import Kesque, KesqueConfig

    work = args.dir or Path(tempfile.mkdtemp(prefix="kesque-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    kesque_path, leveldb_path = work / "kesque", work / "leveldb"
    try:
        print(f"loading {args.records:,} records (32-byte keys, 100..500-byte values) ...")
        print(f"  kesque   {load_kesque(kesque_path, args.records):6.1f} s")
        print(f"  leveldb  {load_leveldb(leveldb_path, args.records):6.1f} s")
        rng = random.Random(42)
        keys = [key_of(rng.randrange(args.records)) for _ in range(args.reads)]
        print(f"{args.reads:,} random gets each:")
        rates: dict[tuple[str, str], float] = {}
        for phase in ("cold-ish", "warm"):
            if phase == "cold-ish":
                drop_from_page_cache(work)
            import plyvel

            db = plyvel.DB(str(leveldb_path))
            rates["leveldb", phase] = report("leveldb", phase, measure(db.get, keys), len(keys))
            db.close()
            if phase == "cold-ish":
                drop_from_page_cache(work)
            config = KesqueConfig(cache_bytes={})
            with Kesque.open(kesque_path, readonly=True, config=config) as kq:
                topic = kq.topic("storage")
                result = measure(topic.get, keys)
                rates["kesque", phase] = report("kesque", phase, result, len(keys))
        for phase in ("cold-ish", "warm"):
            ratio = rates["kesque", phase] / rates["leveldb", phase]
            print(f"kesque / leveldb, {phase}: {ratio:.2f}x")
    finally:
        if args.dir is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
