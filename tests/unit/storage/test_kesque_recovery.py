"""Reopening after a crash: torn tails cut, uncommitted index entries retired."""

from __future__ import annotations

import os
from pathlib import Path

from kesque_helpers import key_of, value_of

from khipu.storage.kesque import Kesque, KesqueConfig
from khipu.storage.kesque.check import check_store


def crash_mid_commit(writer: Kesque) -> None:
    """Write out a commit's records and index entries but never its commit file, then drop
    the writer as a killed process would. (The writer enters index entries only after the
    commit file is durable; a writer of the previous format entered them before it, and this
    is what such a crash left.)"""
    topics = [topic for topic in writer.all_topics() if topic.has_changes()]
    for topic in topics:
        topic.write_out()
    for job in [job for topic in topics for job in topic.log_syncs()]:
        job()
    for topic in writer.hash_topics.values():
        index = topic._grown or topic.index
        assert index is not None
        index.insert_many(topic._pending)
    for topic in writer.all_topics():
        topic.close()
    os.close(writer._lock_fd)


def test_uncommitted_index_entries_are_retired(store_dir: Path, small_config: KesqueConfig) -> None:
    writer = Kesque.open(store_dir, config=small_config)
    for i in range(100):
        writer.topic("account").put(key_of(i), value_of(i))
        writer.topic("receipts").put_at(i, value_of(i, 2))
    writer.commit()
    for i in range(100, 150):  # entered into the index, never committed
        writer.topic("account").put(key_of(i), value_of(i))
        writer.topic("receipts").put_at(i, value_of(i, 2))
    crash_mid_commit(writer)
    with Kesque.open(store_dir, readonly=True, config=small_config) as reader:
        assert reader.topic("account").get(key_of(120)) is None  # past the commit: invisible
    crashed = check_store(store_dir, small_config)
    assert crashed.ok, crashed.problems
    assert any("50 index entries point past the commit" in note for note in crashed.notes)
    with Kesque.open(store_dir, config=small_config) as reopened:
        account = reopened.topic("account")
        assert account.get(key_of(120)) is None
        assert account.get(key_of(99)) == value_of(99)
        assert reopened.topic("receipts").last_offset() == 99
        # new records reuse the truncated space; the retired entries must not shadow them
        for i in range(100, 150):
            account.put(key_of(i), value_of(i, 9))
        reopened.commit()
    report = check_store(store_dir, small_config)
    assert report.ok, report.problems
    with Kesque.open(store_dir, readonly=True, config=small_config) as reader:
        assert reader.topic("account").get(key_of(120)) == value_of(120, 9)


def test_torn_tail_is_cut(store_dir: Path, small_config: KesqueConfig) -> None:
    with Kesque.open(store_dir, config=small_config) as writer:
        for i in range(20):
            writer.topic("header").put_at(i, value_of(i))
        writer.commit()
    segment = sorted((store_dir / "header").glob("*.log"))[-1]
    committed_size = segment.stat().st_size
    with open(segment, "ab") as log:
        log.write(b"\x50\x00\x00\x00garbage of a torn record")
    with Kesque.open(store_dir, config=small_config) as writer:
        assert segment.stat().st_size == committed_size
        writer.topic("header").put_at(20, b"next")
        writer.commit()
    with Kesque.open(store_dir, readonly=True, config=small_config) as reader:
        assert reader.topic("header").get_at(20) == b"next"
        assert reader.topic("header").get_at(19) == value_of(19)
    assert check_store(store_dir, small_config).ok


def test_uncommitted_segments_are_removed(store_dir: Path, small_config: KesqueConfig) -> None:
    writer = Kesque.open(store_dir, config=small_config)
    writer.topic("body").put_at(0, b"x")
    writer.commit()
    for i in range(1, 200):
        writer.topic("body").put_at(i, value_of(i))
    crash_mid_commit(writer)
    assert len(list((store_dir / "body").glob("*.log"))) > 1
    with Kesque.open(store_dir, config=small_config) as reopened:
        assert reopened.topic("body").last_offset() == 0
        assert len(list((store_dir / "body").glob("*.log"))) == 1
        assert len(list((store_dir / "body").glob("*.index"))) == 1


def test_unpublished_index_generation_is_removed(
    store_dir: Path, small_config: KesqueConfig
) -> None:
    config = KesqueConfig(**{**small_config.__dict__, "hash_index_initial_slots": 16})
    writer = Kesque.open(store_dir, config=config)
    writer.topic("storage").put(key_of(0), value_of(0))
    writer.commit()
    generation = writer.state.topic("storage").index_generation
    for i in range(1, 100):
        writer.topic("storage").put(key_of(i), value_of(i))
    crash_mid_commit(writer)  # built a bigger generation, never published
    names = os.listdir(store_dir / "storage")
    assert f"hash.{generation + 1:08d}.idx" in names
    with Kesque.open(store_dir, config=config) as reopened:
        assert reopened.state.topic("storage").index_generation == generation
        assert f"hash.{generation + 1:08d}.idx" not in os.listdir(store_dir / "storage")
        assert reopened.topic("storage").get(key_of(0)) == value_of(0)
        assert reopened.topic("storage").get(key_of(50)) is None
