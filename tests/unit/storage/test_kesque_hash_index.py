from pathlib import Path

import pytest

from khipu.storage.kesque.hash_index import (
    DELETED,
    HashIndex,
    build_index,
    index_file_name,
    key_hash,
    list_index_generations,
)

SALT = b"s" * 16


def test_insert_and_find(tmp_path: Path) -> None:
    index = HashIndex.create(tmp_path / index_file_name(1), 6, 1, SALT)
    hashes = [key_hash(SALT, b"key-%d" % i) for i in range(30)]
    for i, hashed in enumerate(hashes):
        index.insert(hashed, i % 3, i * 100, 50 + i)
    for i, hashed in enumerate(hashes):
        assert [c[1:] for c in index.candidates(hashed)] == [(i % 3, i * 100, 50 + i)]
    assert index.candidates(key_hash(SALT, b"absent")) == []
    assert index.count_used_slots() == 30
    index.close()


def test_same_hash_chains_and_wraps_around(tmp_path: Path) -> None:
    index = HashIndex.create(tmp_path / "x.idx", 4, 1, SALT)
    last_slot_hash = (0xF << 60) | 12345  # top bits name the last of 16 slots
    for position in range(5):
        index.insert(last_slot_hash, 0, position, 10)
    found = index.candidates(last_slot_hash)
    assert [c[2] for c in found] == [0, 1, 2, 3, 4]
    assert [c[0] for c in found] == [15, 0, 1, 2, 3]  # wrapped past the end
    index.close()


def test_deleted_entries_keep_chains_intact(tmp_path: Path) -> None:
    index = HashIndex.create(tmp_path / "x.idx", 4, 1, SALT)
    shared_slot = 3 << 60
    first = index.insert(shared_slot | 2, 0, 0, 10)
    index.insert(shared_slot | 3, 0, 10, 10)
    index.mark_deleted(first)
    assert index.candidates(shared_slot | 2) == []
    assert [c[2] for c in index.candidates(shared_slot | 3)] == [10]
    assert all(entry[1] != DELETED for entry in index.entries())
    assert list(index.live_entries()) == [entry[1:] for entry in index.entries()]
    assert list(index.live_entries()) == [(shared_slot | 3, 0, 10, 10)]
    assert index.count_used_slots() == 2
    index.close()


def test_staged_entries_are_found_only_once_entered(tmp_path: Path) -> None:
    index = HashIndex.create(tmp_path / "x.idx", 6, 1, SALT)
    hashes = [key_hash(SALT, b"staged-%d" % i) for i in range(20)]
    entries = [(hashed, 1, i * 10, 10) for i, hashed in enumerate(hashes)]
    index.insert_many(entries[:5])
    staged = index.stage(entries[5:])
    assert len(set(staged)) == 15
    assert all(index.candidates(hashed) == [] for hashed in hashes[5:])
    assert index.count_used_slots() == 20  # staged slots are taken: later inserts go around
    index.enter_staged(entries[5:], staged)
    for i, hashed in enumerate(hashes):
        assert [c[1:] for c in index.candidates(hashed)] == [(1, i * 10, 10)]
    assert sorted(index.live_entries()) == sorted(entries)
    index.close()


def test_full_index_refuses_insert(tmp_path: Path) -> None:
    index = HashIndex.create(tmp_path / "x.idx", 4, 1, SALT)
    for i in range(16):
        index.insert(key_hash(SALT, b"%d" % i), 0, i, 1)
    with pytest.raises(OverflowError):
        index.insert(key_hash(SALT, b"one more"), 0, 99, 1)
    index.close()


def test_build_bigger_generation(tmp_path: Path) -> None:
    old = HashIndex.create(tmp_path / index_file_name(1), 4, 1, SALT)
    hashes = [key_hash(SALT, b"%d" % i) for i in range(10)]
    for i, hashed in enumerate(hashes):
        old.insert(hashed, 0, i, 7)
    entries = [entry[1:] for entry in old.entries()]
    grown, count = build_index(tmp_path / index_file_name(2), 8, 2, SALT, entries, durable=True)
    assert count == 10 and grown.slots == 256 and grown.generation == 2 and grown.salt == SALT
    for i, hashed in enumerate(hashes):
        assert [c[2] for c in grown.candidates(hashed)] == [i]
    assert list_index_generations(tmp_path) == [1, 2]
    assert not list(tmp_path.glob("*.tmp"))
    grown.close()
    old.close()


def test_salt_changes_hashes() -> None:
    assert key_hash(b"a" * 16, b"key") != key_hash(b"b" * 16, b"key")
    assert key_hash(SALT, b"key") > DELETED
