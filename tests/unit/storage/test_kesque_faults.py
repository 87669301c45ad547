"""A full disk or a failing fsync leaves the store exactly at its last commit."""

from __future__ import annotations

import errno
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kesque_helpers import key_of, value_of

from khipu.storage.kesque import Kesque, KesqueConfig, StoreFull, StoreWriteFailed, files
from khipu.storage.kesque.check import check_store


def failing_after(
    calls: int, real: Callable[..., Any], code: int = errno.ENOSPC
) -> Callable[..., Any]:
    """A stand-in for `real` that works `calls` times, then raises OSError(code)."""
    remaining = [calls]

    def fake(*args: Any) -> Any:
        if remaining[0] <= 0:
            raise OSError(code, "injected failure")
        remaining[0] -= 1
        return real(*args)

    return fake


def fill(writer: Kesque, start: int, count: int) -> None:
    for i in range(start, start + count):
        writer.topic("storage").put(key_of(i), value_of(i))
        writer.topic("header").put_at(i, value_of(i, 1))


def assert_store_holds(store_dir: Path, config: KesqueConfig, count: int) -> None:
    with Kesque.open(store_dir, readonly=True, config=config) as reader:
        storage, header = reader.topic("storage"), reader.topic("header")
        assert header.last_offset() == count - 1
        assert all(storage.get(key_of(i)) == value_of(i) for i in range(count))
        assert storage.get(key_of(count)) is None
        assert all(header.get_at(i) == value_of(i, 1) for i in range(count))
    assert check_store(store_dir, config).ok


@pytest.mark.parametrize(
    ("target", "succeeding_calls"),
    [
        ("write_at", 0),  # the first segment's buffer
        ("write_at", 1),  # the second topic's buffer
        ("write_at", 2),  # the commit file
        ("fsync", 0),
        ("fsync", 2),
        ("fsync", 5),
    ],
)
def test_failure_during_commit_rolls_back(
    store_dir: Path,
    small_config: KesqueConfig,
    monkeypatch: pytest.MonkeyPatch,
    target: str,
    succeeding_calls: int,
) -> None:
    config = KesqueConfig(**{**small_config.__dict__, "fsync": True})
    with Kesque.open(store_dir, config=config) as writer:
        fill(writer, 0, 200)
        writer.commit()
        fill(writer, 200, 300)  # grows the index at the next commit
        monkeypatch.setattr(files, target, failing_after(succeeding_calls, getattr(files, target)))
        with pytest.raises(StoreFull) as caught:
            writer.commit()
        assert "disk full" in str(caught.value)
        monkeypatch.undo()
        # the writer is back at the last commit and goes on working
        assert writer.topic("storage").get(key_of(250)) is None
        assert writer.topic("header").last_offset() == 199
        assert_store_holds(store_dir, config, 200)
        fill(writer, 200, 50)
        writer.commit()
    assert_store_holds(store_dir, config, 250)


def test_failure_while_appending(
    store_dir: Path, small_config: KesqueConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Kesque.open(store_dir, config=small_config) as writer:
        fill(writer, 0, 100)
        writer.commit()
        monkeypatch.setattr(files, "write_at", failing_after(0, files.write_at))
        with pytest.raises(StoreFull):
            fill(writer, 100, 5000)  # the write buffer fills and is written out
        monkeypatch.undo()
        assert writer.topic("header").last_offset() == 99
        fill(writer, 100, 10)
        writer.commit()
    assert_store_holds(store_dir, small_config, 110)


def test_other_io_errors_are_typed_too(
    store_dir: Path, small_config: KesqueConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Kesque.open(store_dir, config=small_config) as writer:
        fill(writer, 0, 10)
        monkeypatch.setattr(files, "write_at", failing_after(0, files.write_at, errno.EIO))
        with pytest.raises(StoreWriteFailed) as caught:
            writer.commit()
        assert not isinstance(caught.value, StoreFull)
        monkeypatch.undo()
    assert_store_holds(store_dir, small_config, 0)


def test_commit_file_sync_failure_leaves_the_last_commit(
    store_dir: Path, small_config: KesqueConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = KesqueConfig(**{**small_config.__dict__, "fsync": True})
    with Kesque.open(store_dir, config=config) as writer:
        fill(writer, 0, 10)
        writer.commit()
        fill(writer, 10, 10)
        monkeypatch.setattr(files, "sync_data", failing_after(0, files.sync_data, errno.EIO))
        with pytest.raises(StoreWriteFailed) as caught:
            writer.commit()
        assert "COMMIT" in str(caught.value)
        monkeypatch.undo()
        # its slot was written beside the logs but never published: the commit did not happen
        assert writer.topic("header").last_offset() == 9
        with Kesque.open(store_dir, readonly=True, config=config) as reader:
            assert reader.topic("header").last_offset() == 9
    assert_store_holds(store_dir, config, 10)
