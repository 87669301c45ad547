"""A commit's index entries staged while its records are fsynced, and the index fsynced in the
background: nothing staged is ever found before its commit, a failed or cut commit leaves only
deleted slots, and the replay point moves only once an index fsync is done."""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

import pytest
from kesque_helpers import key_of, value_of

from khipu.storage.kesque import Kesque, KesqueConfig, StoreFull, files
from khipu.storage.kesque.check import check_store
from khipu.storage.kesque.commit_file import read_commit
from khipu.storage.kesque.hash_index import DELETED, SLOT, HashIndex, index_file_name
from khipu.storage.kesque.hash_topic import HashTopic


def durable(config: KesqueConfig, **changes: object) -> KesqueConfig:
    return KesqueConfig(**{**config.__dict__, "fsync": True, **changes})


def put_and_commit(writer: Kesque, count: int) -> HashTopic:
    """Keys 0..count-1 committed into the writer's storage topic; the topic."""
    storage = writer.topic("storage")
    storage.put_many((key_of(i), value_of(i)) for i in range(count))
    writer.commit()
    return storage


def slot_hashes(index: HashIndex) -> list[int]:
    return [hashed for hashed, _, _, _ in SLOT.iter_unpack(index.map[64 : 64 + index.slots * 20])]


def test_staged_entries_are_deleted_slots_until_their_commit_is_durable(
    store_dir: Path, small_config: KesqueConfig
) -> None:
    config = durable(small_config, hash_index_initial_slots=4096)
    with Kesque.open(store_dir, config=config) as writer:
        storage = put_and_commit(writer, 20)
        storage.put_many((key_of(i), value_of(i)) for i in range(20, 50))
        topics = [topic for topic in writer.all_topics() if topic.has_changes()]
        writer._write_commit(topics, writer.state.sequence + 1)
        storage.stage_index()
        index = storage.index
        assert index is not None
        hashes = slot_hashes(index)
        staged_hashes = {index.hash_of(key_of(i)) for i in range(20, 50)}
        assert hashes.count(DELETED) == 30  # located, not findable
        assert not staged_hashes & set(hashes)
        with Kesque.open(store_dir, readonly=True, config=config) as reader:
            assert reader.topic("storage").get(key_of(30)) is None
            assert reader.topic("storage").get(key_of(10)) == value_of(10)
        writer._run_syncs(writer._commit_flushes(topics))
        storage.enter_index()
        hashes = slot_hashes(index)
        assert hashes.count(DELETED) == 0
        assert staged_hashes <= set(hashes)


def test_a_commit_that_fails_after_staging_leaves_deleted_slots_and_the_store_right(
    store_dir: Path, small_config: KesqueConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = durable(small_config, hash_index_initial_slots=4096)
    with Kesque.open(store_dir, config=config) as writer:
        storage = put_and_commit(writer, 40)
        used = storage.index_used
        storage.put_many((key_of(i), value_of(i)) for i in range(40, 70))
        real_fsync = files.fsync

        def failing_fsync(fd: int) -> None:
            if threading.current_thread() is not threading.main_thread():
                raise OSError(errno.ENOSPC, "injected failure")
            real_fsync(fd)

        monkeypatch.setattr(files, "fsync", failing_fsync)
        with pytest.raises(StoreFull):
            writer.commit()
        monkeypatch.undo()
        index = storage.index
        assert index is not None
        assert slot_hashes(index).count(DELETED) == 30  # staged for the failed commit
        assert storage.index_used == used + 30  # counted as used: the load factor stays true
        assert storage.get(key_of(50)) is None
        storage.put_many((key_of(i), value_of(i, 1)) for i in range(40, 70))
        writer.commit()
    with Kesque.open(store_dir, readonly=True, config=config) as reader:
        assert all(reader.topic("storage").get(key_of(i)) == value_of(i) for i in range(40))
        assert all(reader.topic("storage").get(key_of(i)) == value_of(i, 1) for i in range(40, 70))
    report = check_store(store_dir, config)
    assert report.ok, report.problems


def test_staged_entries_of_a_commit_cut_by_a_power_cut_shadow_nothing(
    store_dir: Path, small_config: KesqueConfig
) -> None:
    config = durable(small_config, hash_index_initial_slots=4096, segment_bytes=1 << 20)
    writer = Kesque.open(store_dir, config=config)
    storage = put_and_commit(writer, 30)
    committed_end = writer.state.topic("storage").end
    storage.put_many((key_of(i), value_of(i)) for i in range(30, 60))
    topics = [topic for topic in writer.all_topics() if topic.has_changes()]
    for topic in topics:
        topic.write_out()
    storage.stage_index()  # its index pages reached the disk, the records and slot did not
    index = storage.index
    assert index is not None
    index.sync()
    for topic in writer.all_topics():
        topic.close()
    os.close(writer._lock_fd)
    segment = sorted((store_dir / "storage").glob("*.log"))[-1]
    os.truncate(segment, committed_end)
    with Kesque.open(store_dir, config=config) as reopened:
        storage = reopened.topic("storage")
        assert storage.get(key_of(45)) is None
        # the same keys again, at other positions: the staged slots must not shadow them
        storage.put_many((key_of(i), value_of(i, 2)) for i in range(59, 29, -1))
        reopened.commit()
    report = check_store(store_dir, config)
    assert report.ok, report.problems
    with Kesque.open(store_dir, readonly=True, config=config) as reader:
        assert all(reader.topic("storage").get(key_of(i)) == value_of(i) for i in range(30))
        assert all(reader.topic("storage").get(key_of(i)) == value_of(i, 2) for i in range(30, 60))


def test_the_index_is_fsynced_off_the_commit_thread_and_the_replay_point_waits_for_it(
    store_dir: Path, small_config: KesqueConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = durable(small_config, index_sync_bytes=2000, hash_index_initial_slots=4096)
    threads: list[str] = []
    release = threading.Event()
    real_sync = HashIndex.sync

    def held_sync(index: HashIndex) -> None:
        threads.append(threading.current_thread().name)
        release.wait(10)
        real_sync(index)

    with Kesque.open(store_dir, config=config) as writer:
        monkeypatch.setattr(HashIndex, "sync", held_sync)
        storage = writer.topic("storage")
        storage.put(key_of(0), value_of(0))
        writer.commit()  # the first commit into a new index file: its fsync starts at once
        for i in range(1, 20):  # commits go on while that fsync is held
            storage.put(key_of(i), value_of(i))
            writer.commit()
        assert len(threads) == 1  # one at a time
        assert threads[0].startswith("kesque-index-storage")
        first_record = writer.state.topic("storage").replay_from
        assert first_record is not None
        release.set()
        storage._index_sync.wait()
        storage.put(key_of(20), value_of(20))
        writer.commit()
        moved = writer.state.topic("storage").replay_from
        assert moved is not None and moved > first_record  # up to what came after it began
    assert read_commit(store_dir / "COMMIT")[0].topic("storage").replay_from is None


def test_a_failed_background_index_fsync_keeps_the_replay_point(
    store_dir: Path, small_config: KesqueConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = durable(small_config, index_sync_bytes=2000, hash_index_initial_slots=4096)

    def failing_sync(index: HashIndex) -> None:
        raise OSError(errno.EIO, "injected index fsync failure")

    with Kesque.open(store_dir, config=config) as writer:
        storage = writer.topic("storage")
        storage.put(key_of(0), value_of(0))
        writer.commit()
        monkeypatch.setattr(HashIndex, "sync", failing_sync)
        for i in range(1, 30):
            storage.put(key_of(i), value_of(i))
            writer.commit()
            storage._index_sync.wait()
        replay = writer.state.topic("storage").replay_from
        assert replay is not None
        monkeypatch.undo()
    # a crash now would re-enter everything from the replay point; a clean close settled it
    assert read_commit(store_dir / "COMMIT")[0].topic("storage").replay_from is None
    with Kesque.open(store_dir, readonly=True, config=config) as reader:
        assert all(reader.topic("storage").get(key_of(i)) == value_of(i) for i in range(30))
    assert (store_dir / "storage" / index_file_name(1)).exists()
