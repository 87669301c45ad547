"""A deterministic Kesque workload for the multi-process tests, runnable as a script.

    python kesque_workload.py write STORE [FSYNC]   commits batch after batch, printing each
    python kesque_workload.py read STORE SECONDS    verifies what readers see, prints a count
    python kesque_workload.py read-all STORE SECONDS   verifies every committed batch each round,
                                                    prints a count and the index generations seen
    python kesque_workload.py write-background STORE   as write, every index growth in a child

Batch b puts 1..40 records into `storage`, overwrites one of seven shared keys in `account`,
and records its size at block number b in `header` (the last put of the batch), so a reader can
tell exactly what every committed batch must contain.
"""

from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path

from khipu.storage.kesque import Kesque, KesqueConfig

SHARED_KEYS = 7


def config(fsync: bool = False, background: bool = False) -> KesqueConfig:
    return KesqueConfig(
        segment_bytes=32 * 1024,
        offset_index_interval=512,
        hash_index_initial_slots=64,
        fsync=fsync,
        reader_refresh_seconds=0.01,
        hash_index_background_entries=0 if background else 200_000,
    )


def batch_size(batch: int) -> int:
    return 1 + hashlib.sha256(b"size-%d" % batch).digest()[0] % 40


def record_key(batch: int, i: int) -> bytes:
    return hashlib.sha256(b"key-%d-%d" % (batch, i)).digest()


def record_value(batch: int, i: int) -> bytes:
    return hashlib.sha256(b"value-%d-%d" % (batch, i)).digest() * (1 + (batch + i) % 12)


def shared_key(batch: int) -> bytes:
    return hashlib.sha256(b"shared-%d" % (batch % SHARED_KEYS)).digest()


def shared_value(batch: int) -> bytes:
    return b"shared value of batch %d" % batch


def write_batch(kq: Kesque, batch: int) -> None:
    storage = kq.topic("storage")
    for i in range(batch_size(batch)):
        storage.put(record_key(batch, i), record_value(batch, i))
    kq.topic("account").put(shared_key(batch), shared_value(batch))
    kq.topic("header").put_at(batch, batch_size(batch).to_bytes(2, "big"))


def verify_batch(kq: Kesque, batch: int) -> None:
    """Raise AssertionError unless batch `batch` is wholly there."""
    header = kq.topic("header").get_at(batch)
    assert header == batch_size(batch).to_bytes(2, "big"), (batch, header)
    storage = kq.topic("storage")
    for i in range(batch_size(batch)):
        assert storage.get(record_key(batch, i)) == record_value(batch, i), (batch, i)


def verify_shared(kq: Kesque, last_batch: int) -> None:
    """The shared keys hold the values of the last batches that wrote them, up to last_batch."""
    for batch in range(max(0, last_batch - SHARED_KEYS + 1), last_batch + 1):
        assert kq.topic("account").get(shared_key(batch)) == shared_value(batch), batch


def run_writer(store: Path, fsync: bool, background: bool = False) -> None:
    with Kesque.open(store, config=config(fsync, background)) as kq:
        batch = kq.topic("header").last_offset() + 1
        print(f"start {batch}", flush=True)
        while True:
            write_batch(kq, batch)
            kq.commit()
            print(f"committed {batch}", flush=True)
            batch += 1


def run_reader(store: Path, seconds: float) -> None:
    checks = 0
    deadline = time.monotonic() + seconds
    with Kesque.open(store, readonly=True, config=config()) as kq:
        while time.monotonic() < deadline:
            kq.refresh()
            last = kq.topic("header").last_offset()
            if last < 0:
                continue
            for batch in {last, last // 2, (last * 7) // 8}:
                verify_batch(kq, batch)
                checks += 1
            # the shared keys may move on after `last`: only what was committed can be seen
            value = kq.topic("account").get(shared_key(last))
            assert value is not None and value.startswith(b"shared value of batch "), value
            seen = int(value.rsplit(b" ", 1)[1])
            assert seen >= last and seen % SHARED_KEYS == last % SHARED_KEYS, (seen, last)
    print(f"checks {checks}", flush=True)


def run_full_reader(store: Path, seconds: float) -> None:
    """Verify every committed batch, round after round; print the count and the storage
    index generations seen."""
    checks = 0
    generations: set[int] = set()
    deadline = time.monotonic() + seconds
    with Kesque.open(store, readonly=True, config=config()) as kq:
        while time.monotonic() < deadline:
            kq.refresh()
            generations.add(kq.state.topic("storage").index_generation)
            last = kq.topic("header").last_offset()
            for batch in range(last + 1):
                verify_batch(kq, batch)
                checks += 1
    print(f"checks {checks} generations {','.join(map(str, sorted(generations)))}", flush=True)


if __name__ == "__main__":
    mode, path = sys.argv[1], Path(sys.argv[2])
    if mode == "write":
        run_writer(path, fsync=len(sys.argv) > 3 and sys.argv[3] == "fsync")
    elif mode == "write-background":
        run_writer(path, fsync=False, background=True)
    elif mode == "read-all":
        run_full_reader(path, float(sys.argv[3]))
    else:
        run_reader(path, float(sys.argv[3]))
