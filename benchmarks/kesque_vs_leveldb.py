"""Kesque's hash topic against LevelDB (plyvel) on the same keys, in one run.

    python -m benchmarks.kesque_vs_leveldb [--keys 1000000,10000000] [--reads 20000]
        [--commit 100000] [--dir DIR] [--append-rounds 1000:200,5000:40] [--index-slots N]
        [--sustained 1000000] [--skip-reads]

For each size N both stores get the same N records (32-byte keys, 100..600-byte incompressible
values), loaded in commits of `--commit` records (Kesque: put_many + commit() with fsync;
LevelDB: a write batch with sync=True); after the reads below, 200 more batches of 1,000 and
then 40 of 5,000 new records are appended the same way (a block's worth of trie nodes per
batch): long enough that a row is not just the first commits after open, and the rows
include the main hash index growing (the slowest commit of each row is a row of its own).
Last, `--sustained` more records in batches of 1,000: long enough that LevelDB pays the
compactions its writes cause (in a short row it may append at its memtable's speed and leave
them for later; in a long import they come due, with write stalls). This row gives the overall
rate, the slowest batch and the slowest and fastest window of 100,000 records. `all writes` is
the records of the load and of every append row over their summed seconds: each store's whole
write work, wherever it fell. Then, in a fresh child process per store (so heap and /proc
counters belong to that store alone):

  open    Kesque.open(readonly) / plyvel.DB(...) on the N-key store, with its data files cold
  cold    R random gets after evicting every Kesque segment file and every LevelDB .ldb/.log
          file from the page cache (posix_fadvise DONTNEED); Kesque's hash index file is read
          once beforehand so it is warm (the index is meant to live in memory)
  warm    the same R gets again (now in the page cache)
  each-cold  the first 1,000 of those gets again, each right after evicting the data files
          (untimed): what a get costs when its data is not cached, as in a store many times
          the size of memory. In `cold`, the readahead of one get may serve later ones (at 1M
          keys LevelDB's mmap readahead pulls most of its store into the cache within the run)
  heap    in a second child: tracemalloc of the Python heap and the RssAnon growth after
          opening and doing R gets, divided by N (Kesque keeps no per-key Python state)

Device reads per get are /proc/self/io `read_bytes` deltas (bytes the process caused to be
fetched from the block device, readahead included) over R, also shown as 4 KiB pages, plus the
`reads completed` delta of the store's device in /proc/diskstats (whole machine: others' I/O
counts too; LevelDB reads its tables through mmap, and the kernel's readahead on those faults
makes few but large device requests, so compare read_bytes too). Kesque's LRU cache is off;
LevelDB keeps its default 8 MiB block cache and gets a 10-bit bloom filter (as geth configures
it); its table cache is LevelDB's default 1000 open tables unless `--leveldb-max-open-files`
says otherwise (above ~2 GB of tables the default cache thrashes, re-reading table indexes).
Ratios are Kesque / LevelDB (for open time, CPU per get and device reads, lower is better).
CPU us/get is the child's process time (user + system) per get: on a shared, loaded machine it
moves less than the wall-clock gets/s, which include waiting for a CPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

PAGE = 4096
"""Batch sizes of the append rows: one block's trie nodes is ~1-5k records."""
APPEND_ROUNDS: dict[int, int] = {1000: 200, 5000: 40}
"""Batches per append row (the 5,000 row crosses a main-index grow at 1M keys)."""
SUSTAINED_BATCH = 1000
SUSTAINED_WINDOW = 100_000
EACH_COLD_GETS = 1000
"""Gets of the each-cold phase (every one after an eviction of the data files)."""
LEVELDB_OPTIONS: dict[str, int] = {"bloom_filter_bits": 10, "max_open_files": 1000}
KESQUE_OPTIONS: dict[str, Any] = {}
"""KesqueConfig fields given on the command line (--index-slots)."""


def kesque_config() -> Any:
    """Kesque's config in this run: no value cache, plus KESQUE_OPTIONS."""
    from khipu.storage.kesque import KesqueConfig

    return dataclasses.replace(KesqueConfig(cache_bytes={}), **KESQUE_OPTIONS)


def key_of(i: int) -> bytes:
    return hashlib.sha256(i.to_bytes(8, "big")).digest()


def value_of(i: int) -> bytes:
    """100..600 incompressible bytes (so LevelDB's snappy gains nothing, as for trie nodes)."""
    seed = hashlib.sha256(b"v" + i.to_bytes(8, "big")).digest()
    length = 100 + int.from_bytes(seed[:2], "big") % 501
    return hashlib.shake_128(seed).digest(length)


def batches(records: int, size: int) -> Iterator[list[tuple[bytes, bytes]]]:
    for first in range(0, records, size):
        yield [(key_of(i), value_of(i)) for i in range(first, min(first + size, records))]


def disk_usage(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# -- loading (in the parent) --------------------------------------------------------------------


def load(store: str, path: Path, records: int, commit: int) -> dict[str, float]:
    """Load `records` into a new store at `path`; the seconds spent inside the store only."""
    seconds = 0.0
    payload = 0
    if store == "kesque":
        from khipu.storage.kesque import Kesque

        with Kesque.open(path, config=kesque_config()) as kq:
            topic = kq.topic("storage")
            for batch in batches(records, commit):
                start = time.perf_counter()
                topic.put_many(batch)
                kq.commit()
                seconds += time.perf_counter() - start
                payload += sum(len(k) + len(v) for k, v in batch)
    else:
        import plyvel

        db = plyvel.DB(str(path), create_if_missing=True, **LEVELDB_OPTIONS)
        for batch in batches(records, commit):
            start = time.perf_counter()
            with db.write_batch(sync=True) as write:
                for key, value in batch:
                    write.put(key, value)
            seconds += time.perf_counter() - start
            payload += sum(len(k) + len(v) for k, v in batch)
        db.close()
    return {"seconds": seconds, "payload": payload, "disk": disk_usage(path)}


def append_batches(
    store: str, path: Path, first: int, count: int, size: int, window: int = 0
) -> dict[str, float]:
    """Append `count` new records to the loaded store at `path` in durable batches of `size`
    (Kesque: put_many + commit(); LevelDB: write_batch(sync=True)): records per second over
    every batch (index grows included), the slowest batch's seconds and, with a `window` (a
    multiple of `size`), the lowest and highest rate over `window` records."""
    seconds = slowest = 0.0
    windows: list[float] = []
    window_start = 0.0

    def timed(took: float, appended: int) -> None:
        nonlocal seconds, slowest, window_start
        seconds += took
        slowest = max(slowest, took)
        if window and appended % window == 0:
            windows.append(window / (seconds - window_start))
            window_start = seconds

    if store == "kesque":
        from khipu.storage.kesque import Kesque

        with Kesque.open(path, config=kesque_config()) as kq:
            topic = kq.topic("storage")
            for start_at in range(first, first + count, size):
                batch = [(key_of(i), value_of(i)) for i in range(start_at, start_at + size)]
                start = time.perf_counter()
                topic.put_many(batch)
                kq.commit()
                timed(time.perf_counter() - start, start_at + size - first)
    else:
        import plyvel

        db = plyvel.DB(str(path), **LEVELDB_OPTIONS)
        for start_at in range(first, first + count, size):
            batch = [(key_of(i), value_of(i)) for i in range(start_at, start_at + size)]
            start = time.perf_counter()
            with db.write_batch(sync=True) as write:
                for key, value in batch:
                    write.put(key, value)
            timed(time.perf_counter() - start, start_at + size - first)
        db.close()
    rates = {"rate": count / seconds, "slowest": slowest, "records": count, "seconds": seconds}
    if windows:
        rates.update(lowest_window=min(windows), highest_window=max(windows))
    return rates


# -- measuring (in a child) -----------------------------------------------------------------------


def proc_io() -> dict[str, int]:
    with open("/proc/self/io") as io:
        return {k: int(v) for k, v in (line.split(":") for line in io)}


def device_reads(path: Path) -> int:
    """Reads completed on the block device holding `path` (/proc/diskstats; -1 if unknown)."""
    dev = os.stat(path).st_dev
    major, minor = os.major(dev), os.minor(dev)
    try:
        with open("/proc/diskstats") as stats:
            for line in stats:
                fields = line.split()
                if int(fields[0]) == major and int(fields[1]) == minor:
                    return int(fields[3])
    except OSError:
        pass
    return -1


def rss_anon() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return -1


def evict(path: Path, suffixes: tuple[str, ...], sync: bool = True) -> None:
    """Drop the cached pages of every file under `path` ending in one of `suffixes` (written
    out first if `sync`: dirty pages cannot be dropped)."""
    for file in path.rglob("*"):
        if file.is_file() and file.name.endswith(suffixes):
            fd = os.open(file, os.O_RDONLY)
            try:
                if sync:
                    os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def warm(path: Path, pattern: str) -> None:
    for file in path.rglob(pattern):
        with open(file, "rb") as f:
            while f.read(1 << 20):
                pass


def opener(store: str, path: Path) -> tuple[Callable[[bytes], bytes | None], Callable[[], None]]:
    if store == "kesque":
        from khipu.storage.kesque import Kesque

        kq = Kesque.open(path, readonly=True, config=kesque_config())
        return kq.topic("storage").get, kq.close
    import plyvel

    db = plyvel.DB(str(path), **LEVELDB_OPTIONS)
    return db.get, db.close


def read_keys(records: int, reads: int) -> list[tuple[bytes, bytes]]:
    rng = random.Random(42)
    return [(key_of(i), value_of(i)) for i in (rng.randrange(records) for _ in range(reads))]


def timed_gets(
    get: Callable[[bytes], bytes | None], keys: list[bytes], path: Path
) -> dict[str, float]:
    io_before, dev_before = proc_io(), device_reads(path)
    start, start_cpu = time.perf_counter(), time.process_time()
    for key in keys:
        get(key)
    seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - start_cpu
    io_after = proc_io()
    return {
        "gets_per_s": len(keys) / seconds,
        "cpu_us": cpu_seconds / len(keys) * 1e6,
        "read_bytes": io_after["read_bytes"] - io_before["read_bytes"],
        "syscr": io_after["syscr"] - io_before["syscr"],
        "dev_reads": device_reads(path) - dev_before,
    }


def each_cold_gets(
    get: Callable[[bytes], bytes | None], keys: list[bytes], path: Path, data: tuple[str, ...]
) -> dict[str, float]:
    """Like timed_gets, but the data files are evicted from the page cache before every get
    (untimed, uncounted): each get meets data that is not cached, as in a store many times
    the size of memory, where the readahead of one get does not serve the next."""
    seconds = cpu_seconds = 0.0
    totals = {"read_bytes": 0, "syscr": 0, "dev_reads": 0}
    before = proc_io()  # reading /proc/self/io and /proc/diskstats are reads themselves
    device_reads(path)
    overhead = proc_io()["syscr"] - before["syscr"]
    for key in keys:
        evict(path, data, sync=False)
        io_before, dev_before = proc_io(), device_reads(path)
        start, start_cpu = time.perf_counter(), time.process_time()
        get(key)
        seconds += time.perf_counter() - start
        cpu_seconds += time.process_time() - start_cpu
        io_after = proc_io()
        totals["read_bytes"] += io_after["read_bytes"] - io_before["read_bytes"]
        totals["syscr"] += io_after["syscr"] - io_before["syscr"] - overhead
        totals["dev_reads"] += device_reads(path) - dev_before
    return {
        "gets_per_s": len(keys) / seconds,
        "cpu_us": cpu_seconds / len(keys) * 1e6,
        **{field: float(total) for field, total in totals.items()},
    }


def child_reads(store: str, path: Path, records: int, reads: int) -> dict[str, Any]:
    pairs = read_keys(records, reads)
    keys = [key for key, _ in pairs]
    data = (".log",) if store == "kesque" else (".ldb", ".log")
    evict(path, data)
    if store == "kesque":
        warm(path, "hash.*.idx")
    start = time.perf_counter()
    get, close = opener(store, path)
    open_seconds = time.perf_counter() - start
    cold = timed_gets(get, keys, path)
    hot = timed_gets(get, keys, path)
    each_cold = each_cold_gets(get, keys[:EACH_COLD_GETS], path, data)
    wrong = sum(1 for key, value in pairs if get(key) != value)
    close()
    if wrong:
        raise AssertionError(f"{store}: {wrong} of {len(pairs)} gets returned a wrong value")
    return {"open_s": open_seconds, "cold": cold, "warm": hot, "each-cold": each_cold}


def child_heap(store: str, path: Path, records: int, reads: int) -> dict[str, Any]:
    import tracemalloc

    import plyvel  # noqa: F401  (imported before tracing: modules are not per-key state)

    import khipu.storage.kesque  # noqa: F401

    keys = [key for key, _ in read_keys(records, reads)]
    gc.collect()
    anon_before = rss_anon()
    tracemalloc.start()
    get, close = opener(store, path)
    for key in keys:
        get(key)
    del key
    gc.collect()
    traced = tracemalloc.get_traced_memory()[0]
    anon = rss_anon() - anon_before
    tracemalloc.stop()
    close()
    return {"traced_per_key": traced / records, "anon_per_key": anon / records}


def run_child(kind: str, store: str, path: Path, records: int, reads: int) -> dict[str, Any]:
    command = [sys.executable, "-m", "benchmarks.kesque_vs_leveldb", "--child", kind]
    command += ["--store", store, "--dir", str(path), "--keys", str(records)]
    command += ["--reads", str(reads)]
    command += ["--leveldb-max-open-files", str(LEVELDB_OPTIONS["max_open_files"])]
    root = Path(__file__).resolve().parent.parent
    output = subprocess.run(command, check=True, capture_output=True, text=True, cwd=root).stdout
    result: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    return result


# -- the table ----------------------------------------------------------------------------------


def measure_size(
    work: Path, records: int, reads: int, commit: int, sustained: int, skip_reads: bool = False
) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    for store in ("kesque", "leveldb"):
        path = work / f"{store}-{records}"
        shutil.rmtree(path, ignore_errors=True)
        print(f"  loading {store} ...", file=sys.stderr, flush=True)
        results[store] = {"load": load(store, path, records, commit)}
        if not skip_reads:
            results[store].update(run_child("reads", store, path, records, reads))
            results[store].update(run_child("heap", store, path, records, reads))
        for size in APPEND_ROUNDS:
            print(f"  appending to {store} in batches of {size} ...", file=sys.stderr, flush=True)
            first = records + sum(s * APPEND_ROUNDS[s] for s in APPEND_ROUNDS if s < size)
            rows = append_batches(store, path, first, size * APPEND_ROUNDS[size], size)
            results[store][f"append_{size}"] = rows
        if sustained:
            print(f"  appending {sustained:,} to {store} ...", file=sys.stderr, flush=True)
            first = records + sum(s * APPEND_ROUNDS[s] for s in APPEND_ROUNDS)
            results[store]["sustained"] = append_batches(
                store, path, first, sustained, SUSTAINED_BATCH, SUSTAINED_WINDOW
            )
        shutil.rmtree(path, ignore_errors=True)
    return results


def rows(results: dict[str, dict[str, Any]], reads: int) -> list[tuple[str, float, float, str]]:
    """(metric, kesque, leveldb, format) rows."""

    def both(pick: Callable[[dict[str, Any]], float]) -> tuple[float, float]:
        return pick(results["kesque"]), pick(results["leveldb"])

    table: list[tuple[str, float, float, str]] = []
    load_rate = both(lambda r: r["load"]["payload"] / r["load"]["seconds"] / 1e6)
    table.append(("load records/s", *both(lambda r: r["records"] / r["load"]["seconds"]), ",.0f"))
    for size in APPEND_ROUNDS:
        field = f"append_{size}"
        label = f"append {size:,} x{APPEND_ROUNDS[size]}"
        for name, part, fmt in (
            ("rec/s", "rate", ",.0f"),
            ("slowest commit s", "slowest", ".3f"),
        ):
            row = both(lambda r, f=field, p=part: float(r[f][p]))  # type: ignore[misc]
            table.append((f"{label} {name}", *row, fmt))
    if "sustained" in results["kesque"]:
        label = f"sustained {SUSTAINED_BATCH:,}s"
        for name, part, fmt in (
            ("rec/s", "rate", ",.0f"),
            ("slowest batch s", "slowest", ".3f"),
            ("lowest 100k rec/s", "lowest_window", ",.0f"),
            ("highest 100k rec/s", "highest_window", ",.0f"),
        ):
            if part in results["kesque"]["sustained"]:
                row = both(lambda r, p=part: float(r["sustained"][p]))  # type: ignore[misc]
                table.append((f"{label} {name}", *row, fmt))
    table.append(("all writes rec/s", *both(all_writes_rate), ",.0f"))
    table.append(("load MB/s (key+value)", *load_rate, ".1f"))
    table.append(("size on disk MB", *both(lambda r: r["load"]["disk"] / 1e6), ",.0f"))
    if "open_s" not in results["kesque"]:  # --skip-reads
        return table
    table.append(("open s (data cold)", *both(lambda r: r["open_s"]), ".4f"))
    for phase, gets in (("cold", reads), ("warm", reads), ("each-cold", each_cold_gets_of(reads))):

        def per_get(field: str, scale: float, r: dict[str, Any], phase: str = phase) -> float:
            return float(r[phase][field]) / scale

        table.append((f"{phase} gets/s", *both(lambda r: per_get("gets_per_s", 1, r)), ",.0f"))
        table.append((f"{phase} CPU us/get", *both(lambda r: per_get("cpu_us", 1, r)), ".2f"))
        for name, field, scale, fmt in (
            ("read_bytes/get", "read_bytes", gets, ",.0f"),
            ("4K pages/get", "read_bytes", gets * PAGE, ".2f"),
            ("device reads/get", "dev_reads", gets, ".2f"),
            ("read syscalls/get", "syscr", gets, ".2f"),
        ):
            row = both(lambda r, f=field, s=scale: per_get(f, s, r))  # type: ignore[misc]
            table.append((f"{phase} {name}", *row, fmt))
    table.append(("python heap B/key", *both(lambda r: r["traced_per_key"]), ".3f"))
    table.append(("RssAnon growth B/key", *both(lambda r: r["anon_per_key"]), ".3f"))
    return table


def all_writes_rate(result: dict[str, Any]) -> float:
    """Records per second over the load and every append row together: one store's whole
    write work, wherever it fell (LevelDB defers compactions past the load; they come due in
    the append rows)."""
    appends = [result[f"append_{size}"] for size in APPEND_ROUNDS]
    appends += [result["sustained"]] if "sustained" in result else []
    records = result["records"] + sum(row["records"] for row in appends)
    seconds = result["load"]["seconds"] + sum(row["seconds"] for row in appends)
    return float(records / seconds)


def each_cold_gets_of(reads: int) -> int:
    return min(reads, EACH_COLD_GETS)


def print_table(records: int, reads: int, results: dict[str, dict[str, Any]]) -> None:
    print(f"\n{records:,} keys, {reads:,} random gets")
    print(f"  {'metric':26} {'kesque':>14} {'leveldb':>14} {'kesque/leveldb':>15}")
    for name, kesque, leveldb, fmt in rows(results, reads):
        ratio = f"{kesque / leveldb:.2f}x" if abs(leveldb) >= 0.01 else "-"
        print(f"  {name:26} {kesque:>14{fmt}} {leveldb:>14{fmt}} {ratio:>15}")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table; returns 0 (a wrong value raises AssertionError)."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--keys", default="1000000", help="comma-separated store sizes")
    parser.add_argument("--reads", type=int, default=20_000)
    parser.add_argument("--commit", type=int, default=100_000, help="records per commit")
    parser.add_argument("--dir", type=Path, default=None, help="work folder (default: temp)")
    parser.add_argument(
        "--leveldb-max-open-files",
        type=int,
        default=1000,
        help="LevelDB's table cache (default 1000, LevelDB's own; ~2 MB of data per table)",
    )
    parser.add_argument(
        "--append-rounds",
        default="1000:200,5000:40",
        help="batch size:batches of each append row (default 1000:200,5000:40)",
    )
    parser.add_argument(
        "--index-slots",
        type=int,
        default=0,
        help="Kesque: slots of a new main hash index (a power of two; default: the config's). "
        "A big index over fewer keys has the page-dirtying cost of a bigger store",
    )
    parser.add_argument(
        "--sustained",
        type=int,
        default=1_000_000,
        help=f"records of the sustained append row, in batches of {SUSTAINED_BATCH:,} "
        f"(a multiple of {SUSTAINED_WINDOW:,}; 0: no such row)",
    )
    parser.add_argument("--skip-reads", action="store_true", help="load and append rows only")
    parser.add_argument("--child", choices=("reads", "heap"), help=argparse.SUPPRESS)
    parser.add_argument("--store", choices=("kesque", "leveldb"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.sustained % SUSTAINED_WINDOW:
        parser.error(f"--sustained must be a multiple of {SUSTAINED_WINDOW:,}")
    LEVELDB_OPTIONS["max_open_files"] = args.leveldb_max_open_files
    if args.index_slots:
        KESQUE_OPTIONS["hash_index_initial_slots"] = args.index_slots
    APPEND_ROUNDS.clear()
    for part in args.append_rounds.split(","):
        size, rounds = part.split(":")
        APPEND_ROUNDS[int(size)] = int(rounds)

    if args.child:
        measure_child = child_reads if args.child == "reads" else child_heap
        print(json.dumps(measure_child(args.store, args.dir, int(args.keys), args.reads)))
        return 0
    work = args.dir or Path(tempfile.mkdtemp(prefix="kesque-bench-", dir="/var/tmp"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        for records in (int(n) for n in args.keys.split(",")):
            print(f"{records:,} keys ...", file=sys.stderr, flush=True)
            results = measure_size(
                work, records, args.reads, args.commit, args.sustained, args.skip_reads
            )
            for store in results.values():
                store["records"] = records
            print_table(records, args.reads, results)
            sys.stdout.flush()
    finally:
        if args.dir is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
