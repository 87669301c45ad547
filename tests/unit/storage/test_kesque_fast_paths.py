"""The lean get and put_many agree with the general paths; readers follow the commit counter."""

from __future__ import annotations

from pathlib import Path

import pytest
from kesque_helpers import key_of, value_of

from khipu.storage.kesque import Kesque, KesqueConfig
from khipu.storage.kesque.check import check_store
from khipu.storage.kesque.commit_counter import COUNTER_FILE_NAME


def lean(config: KesqueConfig, on: bool) -> KesqueConfig:
    return KesqueConfig(**{**config.__dict__, "lean_reads": on, "cache_bytes": {}})


def test_put_many_equals_put_then_commit(tmp_path: Path, small_config: KesqueConfig) -> None:
    items = [(key_of(i), value_of(i)) for i in range(400)]
    items += [(key_of(3), value_of(3)), (key_of(7), value_of(7, 1))]  # same value; a new one
    items += [(b"short key", b"v"), (b"", b"empty key")]
    for name, use_many in (("many", True), ("one", False)):
        with Kesque.open(tmp_path / name, config=small_config) as writer:
            storage = writer.topic("storage")
            storage.put_many(items[:100])  # before the first commit: no index entries yet
            writer.commit()
            if use_many:
                storage.put_many(items[100:])
            else:
                for key, value in items[100:]:
                    storage.put(key, value)
            assert storage.get(key_of(7)) == value_of(7, 1)  # the writer reads its own puts
            writer.commit()
    stores = [Kesque.open(tmp_path / name, readonly=True) for name in ("many", "one")]
    try:
        many, one = (store.topic("storage") for store in stores)
        assert many.records == one.records == 403  # the equal put of key 3 appended nothing
        assert many.last_offset() == one.last_offset()
        for key, _ in items:
            assert many.get(key) == one.get(key)
        assert many.get(key_of(7)) == value_of(7, 1)
        assert many.get(b"short key") == b"v" and many.get(b"") == b"empty key"
    finally:
        for store in stores:
            store.close()
    for name in ("many", "one"):
        assert check_store(tmp_path / name, small_config).ok


def test_put_many_rejects_a_long_key_after_putting_those_before(
    store_dir: Path, small_config: KesqueConfig
) -> None:
    with Kesque.open(store_dir, config=small_config) as writer:
        storage = writer.topic("storage")
        with pytest.raises(ValueError, match="longer than"):
            storage.put_many([(key_of(1), value_of(1)), (b"k" * 70_000, b"v")])
        writer.commit()
        assert storage.get(key_of(1)) == value_of(1)
        assert storage.records == 1


@pytest.mark.parametrize("superseded", [False, True])
def test_lean_get_agrees_with_the_general_path(
    store_dir: Path, small_config: KesqueConfig, superseded: bool
) -> None:
    with Kesque.open(store_dir, config=small_config) as writer:
        storage = writer.topic("storage")
        storage.put_many((key_of(i), value_of(i)) for i in range(600))
        storage.put(b"a key of another length", b"value")
        writer.commit()
        if superseded:
            storage.put(key_of(5), value_of(5, 9))
            storage.delete(key_of(6))
            writer.commit()
    probes = [key_of(i) for i in range(650)] + [b"a key of another length", b"absent"]
    with (
        Kesque.open(store_dir, readonly=True, config=lean(small_config, True)) as fast,
        Kesque.open(store_dir, readonly=True, config=lean(small_config, False)) as general,
    ):
        fast_topic, general_topic = fast.topic("storage"), general.topic("storage")
        assert (fast_topic._view is None) == superseded  # superseded keys: the general path
        assert general_topic._view is None
        found = [fast_topic.get(key) for key in probes]
        assert found == [general_topic.get(key) for key in probes]
    assert found[0] == value_of(0) and found[640] is None and found[-2] == b"value"
    assert found[5] == (value_of(5, 9) if superseded else value_of(5))
    assert found[6] == (None if superseded else value_of(6))


def test_lean_get_reports_a_damaged_record(store_dir: Path, small_config: KesqueConfig) -> None:
    from khipu.storage.kesque import StoreCorrupted

    with Kesque.open(store_dir, config=small_config) as writer:
        writer.topic("storage").put(key_of(1), value_of(1))
        writer.commit()
    segment = next((store_dir / "storage").glob("*.log"))
    data = bytearray(segment.read_bytes())
    data[-3] ^= 0xFF  # inside the value
    segment.write_bytes(bytes(data))
    with Kesque.open(store_dir, readonly=True, config=lean(small_config, True)) as reader:
        assert reader.topic("storage")._view is not None
        with pytest.raises(StoreCorrupted, match="CRC32C") as caught:
            reader.topic("storage").get(key_of(1))
        assert caught.value.file == segment


def test_reader_follows_commits_without_rereading_the_commit_file(
    store_dir: Path, small_config: KesqueConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Kesque.open(store_dir, config=small_config) as writer:
        storage = writer.topic("storage")
        storage.put(key_of(0), value_of(0))
        writer.commit()
        assert (store_dir / COUNTER_FILE_NAME).exists()
        with Kesque.open(store_dir, readonly=True, config=small_config) as reader:
            refreshes = []
            real_refresh = reader.refresh
            monkeypatch.setattr(reader, "refresh", lambda: refreshes.append(1) or real_refresh())
            topic = reader.topic("storage")
            for _ in range(200):  # hits and misses alike: no look at the commit file
                assert topic.get(key_of(0)) == value_of(0)
                assert topic.get(key_of(1)) is None
            assert refreshes == []
            storage.put(key_of(1), value_of(1))
            writer.commit()
            # the very next get sees the new commit (no timer: refresh_seconds is an hour)
            assert topic.get(key_of(1)) == value_of(1)
            assert len(refreshes) == 1
            assert reader.topic("header").last_offset() == -1
            assert len(refreshes) == 1


def test_reader_of_a_store_without_counter_falls_back_to_the_commit_file(
    store_dir: Path, small_config: KesqueConfig
) -> None:
    with Kesque.open(store_dir, config=small_config) as writer:
        writer.topic("storage").put(key_of(0), value_of(0))
        writer.commit()
        (store_dir / COUNTER_FILE_NAME).unlink()  # as a store made before the counter
        with Kesque.open(store_dir, readonly=True, config=small_config) as reader:
            assert reader.topic("storage").get(key_of(0)) == value_of(0)
            writer.topic("storage").put(key_of(1), value_of(1))
            writer.commit()
            # a miss re-reads the commit file, as before the counter
            assert reader.topic("storage").get(key_of(1)) == value_of(1)
