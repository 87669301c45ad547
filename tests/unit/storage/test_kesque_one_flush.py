"""One round of flushes per commit: the commit slot is made durable beside the logs, the writer
checks the last commit's appended bytes at open, readers follow the published sequence."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from kesque_helpers import key_of, value_of

from khipu.storage.kesque import Kesque, KesqueConfig, StoreWriteFailed
from khipu.storage.kesque.check import check_store
from khipu.storage.kesque.commit_counter import COUNTER_FILE_NAME, CommitCounter
from khipu.storage.kesque.commit_file import SLOT_BYTES, CommitState, commit_candidates
from khipu.storage.kesque.crc32c import crc32c
from khipu.storage.kesque.offset_index import ENTRY
from khipu.storage.kesque.topic import SyncJob


def durable(config: KesqueConfig) -> KesqueConfig:
    return KesqueConfig(**{**config.__dict__, "fsync": True})


def put_batch(writer: Kesque, first: int, count: int) -> None:
    for i in range(first, first + count):
        writer.topic("storage").put(key_of(i), value_of(i))
        writer.topic("header").put_at(i, value_of(i, 1))


def flush_without_publishing(writer: Kesque) -> CommitState:
    """Run a commit up to the end of its flushes (slot and logs durable), then drop the writer
    as a process killed before it entered the index entries and told readers."""
    topics = [topic for topic in writer.all_topics() if topic.has_changes()]
    state = writer._write_commit(topics, writer.state.sequence + 1)
    for job in writer._commit_flushes(topics):
        job()
    assert writer._commit_slots is not None
    for topic in writer.all_topics():
        topic.close()
    writer._commit_slots.close()
    os.close(writer._lock_fd)
    return state


def committed_ends(store: Path, topic: str) -> tuple[int, int]:
    """(segments, end) of `topic` in the commit before the newest one."""
    older = commit_candidates((store / "COMMIT").read_bytes(), store / "COMMIT")[-1]
    return older.topic(topic).segments, older.topic(topic).end


def last_segment(store: Path, topic: str) -> Path:
    return sorted((store / topic).glob("*.log"))[-1]


def test_a_durable_slot_whose_records_are_whole_is_the_commit(
    store_dir: Path, small_config: KesqueConfig
) -> None:
    writer = Kesque.open(store_dir, config=small_config)
    put_batch(writer, 0, 20)
    writer.commit()
    put_batch(writer, 20, 20)
    flushed = flush_without_publishing(writer)
    checked = check_store(store_dir, small_config)
    assert checked.ok, checked.problems
    assert any("whole: the writer's next open takes it" in note for note in checked.notes)
    with Kesque.open(store_dir, readonly=True, config=small_config) as reader:
        # never published: a reader stays at the previous commit though the slot is whole
        assert reader.state.sequence == flushed.sequence - 1
        assert reader.topic("storage").get(key_of(30)) is None
        assert reader.topic("header").last_offset() == 19
        with Kesque.open(store_dir, config=small_config) as reopened:
            # the writer finds every appended byte: the commit happened; its index entries,
            # never entered, are entered at open
            assert reopened.state.sequence == flushed.sequence
            assert reopened.topic("storage").get(key_of(30)) == value_of(30)
        reader.refresh()
        assert reader.topic("storage").get(key_of(39)) == value_of(39)
        assert reader.topic("header").get_at(39) == value_of(39, 1)
    assert check_store(store_dir, small_config).ok


def test_a_reader_of_a_new_store_does_not_take_its_unpublished_first_commit(
    store_dir: Path, small_config: KesqueConfig
) -> None:
    """A new store's writer publishes commit 0 (empty) at open; its first commit is durable
    before its index entries are in. A reader must stay at commit 0 until it is published (it
    used to read a published 0 as "unknown" and take the slot: headers without their state)."""
    writer = Kesque.open(store_dir, config=small_config)
    put_batch(writer, 0, 20)
    flushed = flush_without_publishing(writer)
    assert flushed.sequence == 1
    with Kesque.open(store_dir, readonly=True, config=small_config) as reader:
        assert reader.state.sequence == 0
        assert reader.topic("header").get_at(0) is None
        assert reader.topic("storage").get(key_of(0)) is None


def test_lost_records_of_the_newest_slot_fall_back_to_the_previous_commit(
    store_dir: Path, small_config: KesqueConfig
) -> None:
    writer = Kesque.open(store_dir, config=small_config)
    put_batch(writer, 0, 20)
    writer.commit()
    put_batch(writer, 20, 20)
    flushed = flush_without_publishing(writer)
    # a power cut: the slot reached the disk, the storage log's last bytes did not
    segments, end = committed_ends(store_dir, "storage")
    assert flushed.topic("storage").end > end and segments == flushed.topic("storage").segments
    os.truncate(last_segment(store_dir, "storage"), end + 10)
    notes = check_store(store_dir, small_config).notes
    assert any(f"falls back to commit {flushed.sequence - 1}" in note for note in notes), notes
    with Kesque.open(store_dir, config=small_config) as reopened:
        assert reopened.state.sequence == flushed.sequence - 1
        assert reopened.topic("storage").get(key_of(20)) is None
        assert reopened.topic("storage").get(key_of(19)) == value_of(19)
        # the header's records of that commit were whole, yet they go with it
        assert reopened.topic("header").last_offset() == 19
        assert all(state.sequence < flushed.sequence for state in file_commits(store_dir))
        put_batch(reopened, 20, 5)
        reopened.commit()
    assert check_store(store_dir, small_config).ok
    with Kesque.open(store_dir, readonly=True, config=small_config) as reader:
        assert reader.topic("header").last_offset() == 24
        assert reader.topic("storage").get(key_of(24)) == value_of(24)


def file_commits(store: Path) -> list[CommitState]:
    return commit_candidates((store / "COMMIT").read_bytes(), store / "COMMIT")


def test_damaged_appended_bytes_fall_back_too(store_dir: Path, small_config: KesqueConfig) -> None:
    writer = Kesque.open(store_dir, config=small_config)
    put_batch(writer, 0, 20)
    writer.commit()
    put_batch(writer, 20, 20)
    flushed = flush_without_publishing(writer)
    # a lost page reads as zeros: the length survives, the bytes do not
    _, end = committed_ends(store_dir, "header")
    with open(last_segment(store_dir, "header"), "r+b") as log:
        log.seek(end + 40)
        log.write(bytes(64))
    with Kesque.open(store_dir, config=small_config) as reopened:
        assert reopened.state.sequence == flushed.sequence - 1
        assert reopened.topic("header").last_offset() == 19
        assert reopened.topic("storage").get(key_of(25)) is None
    assert check_store(store_dir, small_config).ok


def test_a_commit_that_created_a_segment_falls_back_when_the_segment_is_lost(
    store_dir: Path, small_config: KesqueConfig
) -> None:
    writer = Kesque.open(store_dir, config=small_config)
    put_batch(writer, 0, 10)
    writer.commit()
    put_batch(writer, 10, 200)  # rolls to new segments (16 KiB each)
    flushed = flush_without_publishing(writer)
    assert flushed.topic("header").segments > 1
    newest = last_segment(store_dir, "header")
    newest.unlink()  # its directory entry never reached the disk
    with Kesque.open(store_dir, config=small_config) as reopened:
        assert reopened.topic("header").last_offset() == 9
        assert reopened.state.topic("header").segments == 1
    assert check_store(store_dir, small_config).ok


def test_offset_index_entries_of_the_last_commit_are_rebuilt(
    store_dir: Path, small_config: KesqueConfig
) -> None:
    with Kesque.open(store_dir, config=small_config) as writer:
        for first in range(0, 300, 30):
            put_batch(writer, first, 30)
            writer.commit()
    indexes = sorted((store_dir / "header").glob("*.index"))
    # the msync of the last commit's entries was cut short: a hole, then garbage after it
    last = indexes[-1]
    data = bytearray(last.read_bytes())
    used = len(bytes(data).rstrip(b"\0")) // ENTRY.size
    assert used >= 3
    data[(used - 2) * ENTRY.size : (used - 1) * ENTRY.size] = bytes(ENTRY.size)
    data[used * ENTRY.size + 64 : used * ENTRY.size + 72] = ENTRY.pack(7, 5)
    last.write_bytes(bytes(data))
    with Kesque.open(store_dir, config=small_config) as reopened:
        header = reopened.topic("header")
        assert all(header.get_at(i) == value_of(i, 1) for i in range(300))
    assert (
        last.read_bytes()
        == bytes(data[: (used - 2) * ENTRY.size]) + last.read_bytes()[(used - 2) * ENTRY.size :]
    )
    assert len(last.read_bytes().rstrip(b"\0")) // ENTRY.size == used
    assert check_store(store_dir, small_config).ok


def test_a_lost_offset_index_of_a_segment_the_last_commit_made_is_recreated(
    store_dir: Path, small_config: KesqueConfig
) -> None:
    with Kesque.open(store_dir, config=small_config) as writer:
        put_batch(writer, 0, 10)
        writer.commit()
        put_batch(writer, 10, 200)
        writer.commit()
    sorted((store_dir / "header").glob("*.index"))[-1].unlink()
    with Kesque.open(store_dir, config=small_config) as reopened:
        header = reopened.topic("header")
        assert all(header.get_at(i) == value_of(i, 1) for i in range(0, 210, 7))
    assert check_store(store_dir, small_config).ok


def test_many_commits_in_one_index_sync_interval_are_reentered_after_a_crash(
    store_dir: Path, small_config: KesqueConfig
) -> None:
    # no roll and no growth of the index: either makes the index durable at once
    config = KesqueConfig(
        **{
            **durable(small_config).__dict__,
            "segment_bytes": 1 << 20,
            "hash_index_initial_slots": 4096,
        }
    )
    writer = Kesque.open(store_dir, config=config)
    for first in range(0, 400, 20):  # 20 commits, none reaching index_sync_bytes
        put_batch(writer, first, 20)
        writer.commit()
    storage = writer.topic("storage")
    assert storage.index is not None
    replay = writer.state.topic("storage").replay_from
    assert replay is not None
    # the index pages of the last commits never reached the disk: clear their entries
    for i in range(200, 400):
        hashed = storage.index.hash_of(key_of(i))
        for slot, *_ in storage.index.candidates(hashed):
            storage.index.mark_deleted(slot)
    for topic in writer.all_topics():
        topic.close()
    os.close(writer._lock_fd)
    with Kesque.open(store_dir, config=config) as reopened:
        assert all(reopened.topic("storage").get(key_of(i)) == value_of(i) for i in range(400))
    assert check_store(store_dir, config).ok


def test_failed_flushes_void_the_slot(
    store_dir: Path, small_config: KesqueConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Kesque.open(store_dir, config=small_config) as writer:
        put_batch(writer, 0, 10)
        writer.commit()
        before = writer.state
        put_batch(writer, 10, 10)

        def failing_sync() -> list[SyncJob]:
            def job() -> None:
                raise OSError(5, "injected", str(store_dir / "header"))

            return [job]

        monkeypatch.setattr(writer.topic("header"), "log_syncs", failing_sync)
        with pytest.raises(StoreWriteFailed, match="injected"):
            writer.commit()
        # both slots hold the last commit now: no later open can take the failed one
        assert {state.sequence for state in file_commits(store_dir)} == {before.sequence}
        assert writer.topic("header").last_offset() == 9
    with Kesque.open(store_dir, readonly=True, config=small_config) as reader:
        assert reader.topic("header").last_offset() == 9


def test_an_older_counter_file_is_grown_and_publishes(
    store_dir: Path, small_config: KesqueConfig
) -> None:
    with Kesque.open(store_dir, config=small_config) as writer:
        put_batch(writer, 0, 10)
        writer.commit()
    counter_path = store_dir / COUNTER_FILE_NAME
    os.truncate(counter_path, 8)  # a store of the previous format: the counter word only
    with Kesque.open(store_dir, readonly=True, config=small_config) as reader:
        assert reader.topic("header").last_offset() == 9  # the newest slot, as before
        with Kesque.open(store_dir, config=small_config) as writer:
            assert counter_path.stat().st_size == 16
            put_batch(writer, 10, 10)
            writer.commit()
            counter = CommitCounter.open_reader(store_dir)
            assert counter is not None
            assert counter.published == writer.state.sequence
            counter.close()
            reader.refresh()
            assert reader.topic("header").last_offset() == 19


def test_a_version_1_commit_file_is_trusted_without_a_check(
    store_dir: Path, small_config: KesqueConfig
) -> None:
    with Kesque.open(store_dir, config=small_config) as writer:
        put_batch(writer, 0, 10)
        writer.commit()
        state = writer.state
    topics = {}
    for name, topic in state.topics.items():
        fields = dict(vars(topic))
        for field in ("appended_in", "appended_segment", "appended_position", "appended_crc"):
            del fields[field]
        topics[name] = fields
    body = json.dumps({"version": 1, "sequence": state.sequence, "topics": topics}, sort_keys=True)
    document = json.dumps({"crc32c": crc32c(body.encode()), "body": body}).encode() + b"\n"
    (store_dir / "COMMIT").write_bytes(document)  # the single-document layout of version 1
    # its appended bytes are damaged, but a version 1 commit was durable before it was written
    with open(last_segment(store_dir, "header"), "r+b") as log:
        log.seek(state.topic("header").end - 8)
        log.write(bytes(8))
    with Kesque.open(store_dir, config=small_config) as reopened:
        assert reopened.state.sequence == state.sequence
        assert reopened.topic("header").last_offset() == 9
        assert reopened.topic("storage").get(key_of(9)) == value_of(9)
    assert len((store_dir / "COMMIT").read_bytes()) == 2 * SLOT_BYTES
