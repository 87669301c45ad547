"""The cheaper commit: two commit slots, hash indexes msynced every index_sync_bytes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from kesque_helpers import key_of, value_of

from khipu.storage.kesque import Kesque, KesqueConfig, StoreCorrupted
from khipu.storage.kesque.check import check_store
from khipu.storage.kesque.commit_file import (
    SLOT_BYTES,
    CommitState,
    encode_commit,
    read_commit,
)
from khipu.storage.kesque.hash_index import (
    SLOT,
    SLOTS_START,
    VERSION_BLAKE2B,
    HashIndex,
    build_index,
    index_file_name,
    key_hash,
)
from khipu.storage.kesque.segment import scan_records


def durable(config: KesqueConfig, **changes: object) -> KesqueConfig:
    return KesqueConfig(**{**config.__dict__, "fsync": True, **changes})


def crash(writer: Kesque) -> None:
    """Drop the writer as a killed process would (no settling at close)."""
    for topic in writer.all_topics():
        topic.close()
    os.close(writer._lock_fd)


def test_commits_alternate_slots_and_a_torn_slot_leaves_the_previous_commit(
    store_dir: Path, small_config: KesqueConfig
) -> None:
    with Kesque.open(store_dir, config=small_config) as writer:
        for number in range(3):
            writer.topic("header").put_at(number, value_of(number))
            writer.commit()
        sequence = writer.state.sequence
    commit_path = store_dir / "COMMIT"
    data = bytearray(commit_path.read_bytes())
    assert len(data) == 2 * SLOT_BYTES
    assert read_commit(commit_path)[0].sequence == sequence
    newest = (sequence % 2) * SLOT_BYTES
    data[newest + 40] ^= 0xFF  # a half-written newest slot
    commit_path.write_bytes(bytes(data))
    state = read_commit(commit_path)[0]
    assert state.sequence == sequence - 1  # the other slot: the commit before it
    with Kesque.open(store_dir, readonly=True, config=small_config) as reader:
        assert reader.state.sequence == sequence - 1
    other = ((sequence + 1) % 2) * SLOT_BYTES
    data[other + 40] ^= 0xFF
    commit_path.write_bytes(bytes(data))
    with pytest.raises(StoreCorrupted):
        read_commit(commit_path)


def test_an_older_single_document_commit_file_is_read_and_converted(
    store_dir: Path, small_config: KesqueConfig
) -> None:
    with Kesque.open(store_dir, config=small_config) as writer:
        writer.topic("storage").put(key_of(1), value_of(1))
        writer.commit()
        state = writer.state
    (store_dir / "COMMIT").write_bytes(encode_commit(state))  # as a store from before the slots
    with Kesque.open(store_dir, readonly=True, config=small_config) as reader:
        assert reader.topic("storage").get(key_of(1)) == value_of(1)
    with Kesque.open(store_dir, config=small_config) as writer:
        assert len((store_dir / "COMMIT").read_bytes()) == 2 * SLOT_BYTES
        writer.topic("storage").put(key_of(2), value_of(2))
        writer.commit()
    with Kesque.open(store_dir, readonly=True, config=small_config) as reader:
        assert reader.topic("storage").get(key_of(2)) == value_of(2)


def test_the_index_is_msynced_every_index_sync_bytes_and_settled_at_close(
    store_dir: Path, small_config: KesqueConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = durable(small_config, index_sync_bytes=3000, hash_index_initial_slots=4096)
    syncs: list[Path] = []
    real_sync = HashIndex.sync

    def counting_sync(index: HashIndex) -> None:
        syncs.append(index.path)
        real_sync(index)

    monkeypatch.setattr(HashIndex, "sync", counting_sync)
    with Kesque.open(store_dir, config=config) as writer:
        writer.topic("storage").put(key_of(0), value_of(0))
        writer.commit()  # the new index file: made durable at once
        syncs.clear()
        for i in range(1, 41):  # ~270 bytes a record: about one msync per 11 commits
            writer.topic("storage").put(key_of(i), value_of(i))
            writer.commit()
        assert 2 <= len(syncs) <= 5
        assert writer.state.topic("storage").replay_from is not None
    assert read_commit(store_dir / "COMMIT")[0].topic("storage").replay_from is None


def test_committed_entries_lost_with_the_index_pages_are_reentered_at_open(
    store_dir: Path, small_config: KesqueConfig
) -> None:
    config = durable(
        small_config, index_sync_bytes=1 << 30, hash_index_initial_slots=4096, segment_bytes=1 << 20
    )
    writer = Kesque.open(store_dir, config=config)
    storage = writer.topic("storage")
    storage.put_many((key_of(i), value_of(i)) for i in range(50))
    writer.commit()  # a new index file: made durable at once
    storage.put_many((key_of(i), value_of(i)) for i in range(50, 80))
    writer.commit()
    replay = writer.state.topic("storage").replay_from
    storage.put_many((key_of(i), value_of(i)) for i in range(80, 120))
    writer.commit()
    index_path = storage.directory / index_file_name(writer.state.topic("storage").index_generation)
    salt_word_index = HashIndex(index_path, writable=False)
    version_hash = salt_word_index.hash_of
    crash(writer)
    # a power cut: the index pages holding the entries of records 60..119 never reached the disk
    lost = {version_hash(key_of(i)) for i in range(60, 120)}
    data = bytearray(index_path.read_bytes())
    for slot in range(salt_word_index.slots):
        at = SLOTS_START + slot * SLOT.size
        if SLOT.unpack_from(data, at)[0] in lost:
            data[at : at + SLOT.size] = bytes(SLOT.size)
    salt_word_index.close()
    index_path.write_bytes(bytes(data))
    assert replay is not None
    with Kesque.open(store_dir, config=config) as reopened:
        assert all(reopened.topic("storage").get(key_of(i)) == value_of(i) for i in range(120))
    assert check_store(store_dir, config).ok
    with Kesque.open(store_dir, readonly=True, config=config) as reader:
        assert all(reader.topic("storage").get(key_of(i)) == value_of(i) for i in range(120))


def test_a_version_1_index_is_still_read_and_grown(
    store_dir: Path, small_config: KesqueConfig
) -> None:
    with Kesque.open(store_dir, config=small_config) as writer:
        writer.topic("storage").put_many((key_of(i), value_of(i)) for i in range(10))
        writer.commit()
        generation = writer.state.topic("storage").index_generation
        slots_log2 = writer.topic("storage").index.slots_log2  # type: ignore[union-attr]
    # rebuild the index as a store made before version 2 had it: keyed BLAKE2b for every key
    directory = store_dir / "storage"
    salt = b"s" * 16
    segment_path = next(directory.glob("*.log"))
    log = segment_path.read_bytes()
    records = list(scan_records(lambda at, n: log[at : at + n], 0, len(log), segment_path))
    entries = [(key_hash(salt, r.key), 0, r.position, r.length) for r in records]
    path = directory / index_file_name(generation)
    path.unlink()
    index, _ = build_index(path, slots_log2, generation, salt, entries, False, VERSION_BLAKE2B)
    index.close()
    with Kesque.open(store_dir, readonly=True, config=small_config) as reader:
        assert reader.topic("storage")._view is None  # the general path
        assert all(reader.topic("storage").get(key_of(i)) == value_of(i) for i in range(10))
    with Kesque.open(store_dir, config=small_config) as writer:  # grows it, keeping version 1
        writer.topic("storage").put_many((key_of(i), value_of(i)) for i in range(10, 300))
        writer.commit()
        assert writer.topic("storage").index.version == VERSION_BLAKE2B  # type: ignore[union-attr]
    with Kesque.open(store_dir, readonly=True, config=small_config) as reader:
        assert all(reader.topic("storage").get(key_of(i)) == value_of(i) for i in range(300))
    assert check_store(store_dir, small_config).ok
    assert CommitState().topic("storage").replay_from is None
