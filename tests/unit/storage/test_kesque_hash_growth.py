"""The writer's side of index growth without a child: the threshold, the sizing, the config."""

from __future__ import annotations

import logging
from concurrent.futures import Future
from pathlib import Path

import pytest
from kesque_helpers import key_of, value_of

from khipu.storage.kesque import Kesque, KesqueConfig
from khipu.storage.kesque.hash_growth import grown_slots_log2
from khipu.storage.kesque.hash_index import HashIndex, index_file_name
from khipu.storage.kesque.index_sync import IndexSync


def test_an_index_under_the_background_threshold_grows_in_the_writer(
    store_dir: Path, small_config: KesqueConfig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="khipu.storage.kesque.hash_growth")
    config = KesqueConfig(**{**small_config.__dict__, "hash_index_background_entries": 1000})
    with Kesque.open(store_dir, config=config) as writer:
        storage = writer.hash_topic("storage")
        for start in range(0, 300, 10):
            storage.put_many((key_of(i), value_of(i)) for i in range(start, start + 10))
            writer.commit()
            assert not storage._growth.building
        state = writer.state.topic("storage")
        assert state.index_generation >= 3 and state.index_slots >= 300 / 0.6  # from 32 slots
        assert all(storage.get(key_of(i)) == value_of(i) for i in range(300))
    assert not [r for r in caplog.records if "started" in r.getMessage()]


def test_the_next_generation_is_twice_the_slots_or_more_for_a_big_commit(tmp_path: Path) -> None:
    index = HashIndex.create(tmp_path / index_file_name(1), 10, 1, bytes(16))
    try:
        assert grown_slots_log2(index, 614, 0.6) == 11  # 614 <= 0.6 * 2048 / 2
        assert grown_slots_log2(index, 615, 0.6) == 12
        assert grown_slots_log2(index, 4915, 0.6) == 14
    finally:
        index.close()


def test_a_negative_background_threshold_is_refused() -> None:
    with pytest.raises(ValueError, match="hash_index_background_entries"):
        KesqueConfig(hash_index_background_entries=-1)


def test_a_switch_to_a_grown_index_does_not_wait_for_the_old_ones_fsync() -> None:
    sync = IndexSync("storage", (0, 10), sync_bytes=1)
    old_fsync: Future[None] = Future()  # running, on the old generation
    sync._running = old_fsync
    sync._entered_since_start = (0, 500)
    sync.replaced((0, 300))  # returns at once
    assert sync.replay_from == (0, 300)
    sync.entered((0, 700), 100)  # the switching commit's entries
    old_fsync.set_result(None)
    sync.wait()
    # the old generation's fsync says nothing of the grown file's entries from 300 on
    assert sync.replay_from == (0, 300)
    idle = IndexSync("storage", None, sync_bytes=1)
    idle.replaced((1, 20))
    assert idle.replay_from == (1, 20)
