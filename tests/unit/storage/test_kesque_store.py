"""Kesque's public face: puts, commits, readers, rolls, index growth, reopening."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from kesque_helpers import key_of, value_of

from khipu.storage.kesque import (
    Kesque,
    KesqueConfig,
    OffsetOutOfOrder,
    StoreLocked,
    StoreMissing,
)
from khipu.storage.kesque.files import READS
from khipu.storage.kesque.hash_index import list_index_generations


def test_readers_see_only_committed_records(store_dir: Path, small_config: KesqueConfig) -> None:
    with Kesque.open(store_dir, config=small_config) as writer:
        account = writer.topic("account")
        account.put(key_of(1), value_of(1))
        writer.topic("header").put_at(0, b"genesis")
        assert account.get(key_of(1)) == value_of(1)  # the writer reads its own puts
        with Kesque.open(store_dir, readonly=True, config=small_config) as reader:
            assert reader.topic("account").get(key_of(1)) is None
            assert reader.topic("header").get_at(0) is None
            assert reader.topic("header").last_offset() == -1
            writer.commit()
            # a miss makes the reader look at the commit file again
            assert reader.topic("account").get(key_of(1)) == value_of(1)
            assert reader.topic("header").get_at(0) == b"genesis"
            assert reader.topic("header").last_offset() == 0


def test_reopen_keeps_committed_and_drops_uncommitted(
    store_dir: Path, small_config: KesqueConfig
) -> None:
    with Kesque.open(store_dir, config=small_config) as writer:
        for i in range(300):
            writer.topic("storage").put(key_of(i), value_of(i))
            writer.topic("body").put_at(i, value_of(i, 7))
        writer.commit()
        for i in range(300, 400):
            writer.topic("storage").put(key_of(i), value_of(i))
            writer.topic("body").put_at(i, value_of(i, 7))
    with Kesque.open(store_dir, config=small_config) as writer:
        storage, body = writer.topic("storage"), writer.topic("body")
        assert all(storage.get(key_of(i)) == value_of(i) for i in range(300))
        assert all(storage.get(key_of(i)) is None for i in range(300, 400))
        assert body.last_offset() == 299
        assert body.get_at(300) is None
        body.put_at(300, b"again")  # numbering continues after the commit
        assert body.get_at(300) == b"again"
    assert len(os.listdir(store_dir / "storage")) > 3  # the small segments rolled


def test_many_segments_and_index_growth_with_a_reader_open(
    store_dir: Path, small_config: KesqueConfig
) -> None:
    with Kesque.open(store_dir, config=small_config) as writer:
        reader = Kesque.open(store_dir, readonly=True, config=small_config)
        account = writer.topic("account")
        for batch in range(10):
            for i in range(batch * 100, batch * 100 + 100):
                account.put(key_of(i), value_of(i))
            writer.commit()
            reader.refresh()
            reader_account = reader.topic("account")
            for i in range(0, batch * 100 + 100, 7):
                assert reader_account.get(key_of(i)) == value_of(i), (batch, i)
        state = writer.state.topic("account")
        assert state.index_slots >= 1000 / small_config.hash_index_max_load
        assert state.index_generation > 2
        assert state.segments > 10
        # only the current and the previous generation stay on disk
        assert len(list_index_generations(store_dir / "account")) <= 2
        reader.close()


def test_a_get_is_one_read(store_dir: Path, small_config: KesqueConfig) -> None:
    config = KesqueConfig(**{**small_config.__dict__, "cache_bytes": {}})
    with Kesque.open(store_dir, config=config) as writer:
        for i in range(500):
            writer.topic("evmcode").put(key_of(i), value_of(i))
        writer.commit()
    with Kesque.open(store_dir, readonly=True, config=config) as reader:
        evmcode = reader.topic("evmcode")
        before = READS.calls
        for i in range(500):
            assert evmcode.get(key_of(i)) == value_of(i)
        assert READS.calls - before == 500


def test_a_get_at_is_mostly_one_read(store_dir: Path) -> None:
    config = KesqueConfig(segment_bytes=1 << 20, cache_bytes={}, fsync=False)
    with Kesque.open(store_dir, config=config) as writer:
        for number in range(2000):
            writer.topic("header").put_at(number, value_of(number))
        writer.commit()
    with Kesque.open(store_dir, readonly=True, config=config) as reader:
        header = reader.topic("header")
        reads = []
        for number in range(0, 2000, 3):
            before = READS.calls
            assert header.get_at(number) == value_of(number)
            reads.append(READS.calls - before)
        assert max(reads) <= 2  # a record running past the first chunk costs a second read
        assert sum(reads) <= 1.2 * len(reads), sum(reads) / len(reads)


def test_opening_reads_only_the_last_commit(store_dir: Path, small_config: KesqueConfig) -> None:
    with Kesque.open(store_dir, config=small_config) as writer:
        for i in range(500):
            writer.topic("account").put(key_of(i), value_of(i))
            writer.topic("receipts").put_at(i, value_of(i))
            if i % 10 == 9:
                writer.commit()
    before = READS.calls
    with Kesque.open(store_dir, config=small_config):
        pass
    # the writer checks the records of the last commit (10 per topic, at most two segments
    # each: a read to check them and one to rebuild the offset index entries), not the logs
    assert READS.calls - before <= 8
    before = READS.calls
    with Kesque.open(store_dir, readonly=True, config=small_config):
        pass
    assert READS.calls == before


def test_put_of_same_value_appends_nothing(store_dir: Path, small_config: KesqueConfig) -> None:
    with Kesque.open(store_dir, config=small_config) as writer:
        account = writer.topic("account")
        account.put(key_of(1), value_of(1))
        writer.commit()
        account.put(key_of(1), value_of(1))
        account.put(key_of(2), value_of(2))
        account.put(key_of(2), value_of(2))
        writer.commit()
        assert writer.state.topic("account").records == 2


def test_overwrite_and_delete(store_dir: Path, small_config: KesqueConfig) -> None:
    with Kesque.open(store_dir, config=small_config) as writer:
        account = writer.topic("account")
        account.put(key_of(1), b"old")
        account.put(key_of(2), b"doomed")
        writer.commit()
        with Kesque.open(store_dir, readonly=True, config=small_config) as reader:
            assert reader.topic("account").get(key_of(1)) == b"old"  # now cached
            account.put(key_of(1), b"new")
            assert account.delete(key_of(2))
            assert not account.delete(key_of(3))
            assert account.get(key_of(1)) == b"new" and account.get(key_of(2)) is None
            assert reader.topic("account").get(key_of(1)) == b"old"
            writer.commit()
            reader.refresh()
            assert reader.topic("account").get(key_of(1)) == b"new"
            assert reader.topic("account").get(key_of(2)) is None
    with Kesque.open(store_dir, readonly=True, config=small_config) as reader:
        assert reader.topic("account").get(key_of(1)) == b"new"
        assert not reader.topic("account").contains(key_of(2))


def test_number_topic_gaps_and_order(store_dir: Path, small_config: KesqueConfig) -> None:
    with Kesque.open(store_dir, config=small_config) as writer:
        td = writer.topic("td")
        numbers = [n for n in range(0, 3000, 3)]
        for n in numbers:
            td.put_at(n, n.to_bytes(8, "big") * (1 + n % 40))
        with pytest.raises(OffsetOutOfOrder):
            td.put_at(numbers[-1], b"again")
        writer.commit()
    with Kesque.open(store_dir, readonly=True, config=small_config) as reader:
        td = reader.topic("td")
        assert td.last_offset() == numbers[-1]
        for n in range(0, 3000):
            expected = n.to_bytes(8, "big") * (1 + n % 40) if n % 3 == 0 else None
            assert td.get_at(n) == expected, n
        assert td.get_at(5000) is None and td.get_at(-1) is None


def test_single_writer_lock(store_dir: Path, small_config: KesqueConfig) -> None:
    with Kesque.open(store_dir, config=small_config):
        with pytest.raises(StoreLocked) as caught:
            Kesque.open(store_dir, config=small_config)
        assert str(os.getpid()) in str(caught.value)
    Kesque.open(store_dir, config=small_config).close()  # released on close


def test_reader_needs_a_store(tmp_path: Path) -> None:
    with pytest.raises(StoreMissing):
        Kesque.open(tmp_path / "nothing", readonly=True)


def test_reader_cannot_write(store_dir: Path, small_config: KesqueConfig) -> None:
    Kesque.open(store_dir, config=small_config).close()
    with Kesque.open(store_dir, readonly=True, config=small_config) as reader:
        with pytest.raises(PermissionError):
            reader.topic("account").put(b"k", b"v")
        with pytest.raises(PermissionError):
            reader.commit()


def test_large_values_span_chunks(store_dir: Path, small_config: KesqueConfig) -> None:
    big = os.urandom(100_000)  # larger than a segment and than snappy's 64 KiB chunks
    with Kesque.open(store_dir, config=small_config) as writer:
        writer.topic("body").put_at(1, b"small")
        writer.topic("body").put_at(2, big)
        writer.topic("body").put_at(3, b"after")
        writer.topic("evmcode").put(key_of(1), big)
        writer.commit()
    with Kesque.open(store_dir, readonly=True, config=small_config) as reader:
        assert reader.topic("body").get_at(2) == big
        assert reader.topic("body").get_at(3) == b"after"
        assert reader.topic("evmcode").get(key_of(1)) == big


def test_cache_serves_repeated_reads(store_dir: Path, small_config: KesqueConfig) -> None:
    with Kesque.open(store_dir, config=small_config) as writer:
        writer.topic("account").put(key_of(1), value_of(1))
        writer.commit()
    with Kesque.open(store_dir, readonly=True, config=small_config) as reader:
        account = reader.topic("account")
        assert account.get(key_of(1)) == value_of(1)
        before = READS.calls
        assert account.get(key_of(1)) == value_of(1)
        assert READS.calls == before and account.cache.hits == 1


def test_heap_does_not_grow_with_the_keys(store_dir: Path, small_config: KesqueConfig) -> None:
    import tracemalloc

    config = KesqueConfig(**{**small_config.__dict__, "segment_bytes": 1 << 24})
    with Kesque.open(store_dir, config=config) as writer:
        for i in range(20_000):
            writer.topic("storage").put(key_of(i), b"v%d" % i)
        writer.commit()
    tracemalloc.start()
    try:
        with Kesque.open(store_dir, config=config) as writer:
            reader = Kesque.open(store_dir, readonly=True, config=config)
            assert reader.topic("storage").get(key_of(12_345)) == b"v12345"
            assert writer.topic("storage").get(key_of(54)) == b"v54"
            held, _ = tracemalloc.get_traced_memory()
            reader.close()
    finally:
        tracemalloc.stop()
    assert held < 256 * 1024, f"{held} bytes held after opening a store of 20,000 keys"


def test_iter_from_reads_ranges_across_segments(
    store_dir: Path, small_config: KesqueConfig
) -> None:
    numbers = list(range(5, 1500, 2))
    with Kesque.open(store_dir, config=small_config) as writer:
        for n in numbers:
            writer.topic("receipts").put_at(n, value_of(n))
        writer.commit()
    with Kesque.open(store_dir, readonly=True, config=small_config) as reader:
        receipts = reader.topic("receipts")
        got = list(receipts.iter_from(100, 900))
        assert got == [(n, value_of(n)) for n in numbers if 100 <= n <= 900]
        assert [n for n, _ in receipts.iter_from(1490)] == [1491, 1493, 1495, 1497, 1499]
        assert list(receipts.iter_from(0)) == [(n, value_of(n)) for n in numbers]
        assert list(receipts.iter_from(2000)) == []
        assert reader.state.topic("receipts").segments > 5
