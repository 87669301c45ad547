"""The index builder's two phases, run in this process: an exact copy, the log caught up."""

from __future__ import annotations

import dataclasses
import mmap
import os
from pathlib import Path

import pytest
from kesque_helpers import key_of, value_of

from khipu.storage.kesque import Kesque, KesqueConfig, StoreCorrupted, index_builder
from khipu.storage.kesque.commit_file import TopicState
from khipu.storage.kesque.hash_index import HashIndex, index_file_name
from khipu.storage.kesque.index_builder import (
    EXIT_PARENT_GONE,
    BuildRequest,
    BuildResult,
    build,
    main,
)


def fill(writer: Kesque, first: int, last: int, per_commit: int = 20) -> None:
    storage = writer.topic("storage")
    for start in range(first, last, per_commit):
        storage.put_many(
            (key_of(i), value_of(i)) for i in range(start, min(last, start + per_commit))
        )
        writer.commit()


def request_for(
    writer: Kesque, boundary: TopicState, catch_up: int, **changes: object
) -> BuildRequest:
    """A build of the next generation of `storage`'s index from the commit `boundary`."""
    storage = writer.topic("storage")
    assert storage.index is not None
    request = BuildRequest(
        directory=storage.directory,
        generation=storage.index.generation,
        temporary=storage.directory / "hash.test.idx.tmp",
        slots_log2=storage.index.slots_log2 + 1,
        boundary=(boundary.segments - 1, boundary.end),
        boundary_records=boundary.records,
        parent_pid=os.getppid(),
        catch_up_records=catch_up,
        durable=False,
    )
    return dataclasses.replace(request, **changes)  # type: ignore[arg-type]


def built_entries(request: BuildRequest) -> list[tuple[int, int, int, int]]:
    """The live entries of the file a build wrote."""
    built = HashIndex(request.temporary, writable=False)
    try:
        return list(built.live_entries())
    finally:
        built.close()


@pytest.fixture
def config(small_config: KesqueConfig) -> KesqueConfig:
    return KesqueConfig(**{**small_config.__dict__, "hash_index_initial_slots": 1024})


def test_copy_and_catch_up_give_exactly_the_entries_of_the_index(
    store_dir: Path, config: KesqueConfig
) -> None:
    with Kesque.open(store_dir, config=config) as writer:
        fill(writer, 0, 60)
        boundary = writer.state.topic("storage")
        fill(writer, 60, 160)  # past the boundary: in the index, and in the log
        storage = writer.topic("storage")
        assert storage.index is not None
        expected = list(storage.index.live_entries())
        assert len(expected) == 160
        request = request_for(writer, boundary, catch_up=0)
        result = build(request)
        end = writer.state.topic("storage")
        assert result.reached == (end.segments - 1, end.end)
        assert result.records == 160 and result.entries == 160
        built = HashIndex(request.temporary, writable=False)
        try:
            entries = list(built.live_entries())
            assert (built.generation, built.salt) == (
                storage.index.generation + 1,
                storage.index.salt,
            )
        finally:
            built.close()
        assert len(entries) == len(set(entries))  # no entry twice
        assert set(entries) == set(expected)
        assert BuildResult.parse(result.line()) == result


def test_a_build_close_to_the_end_stops_at_the_boundary_and_copies_only_what_lies_before(
    store_dir: Path, config: KesqueConfig
) -> None:
    with Kesque.open(store_dir, config=config) as writer:
        fill(writer, 0, 60)
        boundary = writer.state.topic("storage")
        fill(writer, 60, 100)
        storage = writer.topic("storage")
        assert storage.index is not None
        before = {
            entry
            for entry in storage.index.live_entries()
            if (entry[1], entry[2]) < (boundary.segments - 1, boundary.end)
        }
        assert len(before) == 60
        # a slot the writer is filling (hash first seen, location still zero) and a retired
        # entry are not copied
        storage.index.insert(0xABCDEF << 20, 0, 0, 0)
        retired_slot, *retired = next(iter(storage.index.entries()))
        storage.index.mark_deleted(retired_slot)
        request = request_for(writer, boundary, catch_up=1000)
        result = build(request)
        assert result.reached == (boundary.segments - 1, boundary.end) and result.records == 60
        entries = set(built_entries(request))
        assert entries == before - {tuple(retired)}
        assert result.entries == len(entries)


def test_a_log_that_disagrees_with_the_commit_is_an_error(
    store_dir: Path, config: KesqueConfig
) -> None:
    with Kesque.open(store_dir, config=config) as writer:
        fill(writer, 0, 40)
        boundary = writer.state.topic("storage")
        fill(writer, 40, 80)
        wrong = request_for(writer, boundary, catch_up=0, boundary_records=boundary.records - 3)
        with pytest.raises(StoreCorrupted, match="40 records"):
            build(wrong)


def test_the_command_line_exits_non_zero_with_a_message(
    store_dir: Path, config: KesqueConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["too", "few"]) == 1
    assert "kesque index builder failed: ValueError" in capsys.readouterr().err
    with Kesque.open(store_dir, config=config) as writer:
        fill(writer, 0, 40)
        state = writer.state.topic("storage")
        orphaned = request_for(writer, state, catch_up=0, parent_pid=os.getppid() + 1)
        assert main(orphaned.arguments()) == EXIT_PARENT_GONE
        assert "parent" in capsys.readouterr().err
        assert not orphaned.temporary.exists()
        missing = request_for(writer, state, catch_up=0, generation=7)
        assert main(missing.arguments()) == 1
        assert index_file_name(7) in capsys.readouterr().err
        good = request_for(writer, state, catch_up=0)
        assert main(good.arguments()) == 0
        printed = BuildResult.parse(capsys.readouterr().out.strip())
        assert printed.entries == 40 and printed.reached == (state.segments - 1, state.end)


def test_a_damaged_record_past_the_boundary_stops_the_build(
    store_dir: Path, config: KesqueConfig
) -> None:
    with Kesque.open(store_dir, config=config) as writer:
        fill(writer, 0, 40)
        boundary = writer.state.topic("storage")
        fill(writer, 40, 60)
        segment = writer.topic("storage").segments[boundary.segments - 1]
        damaged = boundary.end + 30  # inside the first record past the boundary
        byte = os.pread(segment.fd, 1, damaged)
        os.pwrite(segment.fd, bytes([byte[0] ^ 0xFF]), damaged)
        with pytest.raises(StoreCorrupted, match="CRC32C") as raised:
            build(request_for(writer, boundary, catch_up=0))
        assert raised.value.offset == boundary.end
        assert raised.value.file == segment.path


def test_a_durable_build_flushes_as_it_copies_and_copies_the_same(
    store_dir: Path, config: KesqueConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(index_builder, "COPY_CHUNK_SLOTS", 64)
    monkeypatch.setattr(index_builder, "FLUSH_BYTES", mmap.PAGESIZE)
    flushed: list[tuple[int, int]] = []
    real_copy = index_builder.copy_entries_before

    def copy(
        source: HashIndex, target: HashIndex, boundary: tuple[int, int], parent: int, durable: bool
    ) -> int:
        class Recording:
            def __init__(self, index: HashIndex) -> None:
                self.index = index

            def __getattr__(self, name: str) -> object:
                return getattr(self.index, name)

            @property
            def map(self) -> object:
                index_map = self.index.map

                class Flushing:
                    def flush(self, offset: int, size: int) -> None:
                        flushed.append((offset, size))
                        index_map.flush(offset, size)

                return Flushing()

        return real_copy(source, Recording(target), boundary, parent, durable)  # type: ignore[arg-type]

    monkeypatch.setattr(index_builder, "copy_entries_before", copy)
    with Kesque.open(store_dir, config=config) as writer:
        fill(writer, 0, 300)
        state = writer.topic("storage").state
        storage = writer.topic("storage")
        assert storage.index is not None
        expected = set(storage.index.live_entries())
        request = request_for(writer, state, catch_up=0, durable=True)
        build(request)
        assert set(built_entries(request)) == expected
    assert len(flushed) >= 5
    assert all(offset % mmap.PAGESIZE == 0 for offset, _ in flushed)
    ends = [offset + size for offset, size in flushed]
    assert ends == sorted(ends) and [offset for offset, _ in flushed[1:]] == ends[:-1]


def test_records_larger_than_a_scan_chunk_are_entered(
    store_dir: Path, config: KesqueConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(index_builder, "SCAN_CHUNK_BYTES", 4096)
    with Kesque.open(store_dir, config=config) as writer:
        fill(writer, 0, 20)
        boundary = writer.state.topic("storage")
        storage = writer.topic("storage")
        storage.put(key_of(1000), b"\x07" * 10_000)  # over two chunks, alone in its segment
        fill(writer, 20, 60)
        storage.put(b"a key that is not 32 bytes", b"\x08" * 5000)
        writer.commit()
        assert storage.index is not None
        expected = set(storage.index.live_entries())
        request = request_for(writer, boundary, catch_up=0)
        result = build(request)
        assert result.entries == len(expected) == 62
        assert set(built_entries(request)) == expected
