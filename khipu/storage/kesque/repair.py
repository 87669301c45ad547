"""`khipu db repair`: rebuild a store's indexes, and if need be its commit file, from its logs.

Takes the writer lock. Each topic's logs are scanned up to the committed end (or, with no usable
commit file, up to the first record that does not decode); a damaged record cuts the topic
there, since nothing after it can be trusted in an append-only log. Then every offset index and
every hash index is built afresh (hash indexes as a new generation, so running readers switch
over at the next commit file), and a new commit file is published.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from khipu.storage.kesque.commit_counter import CommitCounter
from khipu.storage.kesque.commit_file import (
    COMMIT_FILE_NAME,
    CommitState,
    TopicState,
    commit_candidates,
    write_commit,
)
from khipu.storage.kesque.config import KesqueConfig
from khipu.storage.kesque.errors import StoreCorrupted
from khipu.storage.kesque.hash_index import (
    build_index,
    index_file_name,
    list_index_generations,
    word_key_hash,
)
from khipu.storage.kesque.offset_index import OffsetIndex, offset_index_file_name
from khipu.storage.kesque.segment import Segment, list_segment_bases, scan_records
from khipu.storage.kesque.store import acquire_writer_lock


@dataclass
class RepairReport:
    actions: list[str] = field(default_factory=list)


def repair_store(store_path: Path, config: KesqueConfig | None = None) -> RepairReport:
    """Rebuild the indexes (and a missing or damaged commit file) of the store at `store_path`.

    Raises StoreLocked if a writer runs; returns what was done.
    """
    config = config or KesqueConfig()
    report = RepairReport()
    commit_path = store_path / COMMIT_FILE_NAME
    try:
        old_state: CommitState | None = _newest_commit(commit_path)
    except (FileNotFoundError, StoreCorrupted) as error:
        report.actions.append(f"commit file unusable ({error}): rebuilding it from the logs")
        old_state = None
        commit_path.unlink(missing_ok=True)
    store_path.mkdir(parents=True, exist_ok=True)
    lock_fd = acquire_writer_lock(store_path)
    try:
        topics: dict[str, TopicState] = {}
        for name in (*config.hash_topics, *config.number_topics):
            directory = store_path / name
            directory.mkdir(exist_ok=True)
            committed = old_state.topic(name) if old_state else None
            state = _cut_to_good_records(directory, committed, report)
            if name in config.hash_topics:
                topics[name] = _rebuild_hash_index(directory, state, committed, config, report)
            else:
                _rebuild_offset_indexes(directory, config, report)
                topics[name] = state
        sequence = (old_state.sequence if old_state else 0) + 1
        write_commit(commit_path, CommitState(sequence, topics), durable=config.fsync)
        counter = CommitCounter.open_writer(store_path)
        counter.publish(sequence)
        counter.close()
        report.actions.append(f"published commit {sequence}")
    finally:
        os.close(lock_fd)
    return report


def _newest_commit(commit_path: Path) -> CommitState:
    """The newest valid commit: the logs are cut at their first damaged record below, whether
    a crash or the disk damaged it. Raises FileNotFoundError, StoreCorrupted when no slot is
    valid."""
    return commit_candidates(commit_path.read_bytes(), commit_path)[0]


def _cut_to_good_records(
    directory: Path, committed: TopicState | None, report: RepairReport
) -> TopicState:
    """Cut the topic's logs after the last good committed record; return their extent."""
    bases = list_segment_bases(directory)
    bases_kept = bases[: committed.segments] if committed is not None else bases
    segments = 0
    end = 0
    next_offset = 0
    records = 0
    cut = False
    for ordinal, base in enumerate(bases_kept):
        segment = Segment(directory, base, ordinal, writable=True)
        try:
            limit = segment.size
            if committed is not None and ordinal == committed.segments - 1:
                limit = min(limit, committed.end)
            position = 0
            try:
                for record in scan_records(segment.read, 0, limit, segment.path):
                    next_offset = record.offset + 1
                    records += 1
                    position = record.end
            except StoreCorrupted as error:
                report.actions.append(f"cut {segment.path} at byte {error.offset}: {error.reason}")
                cut = True
            if position < segment.size:
                segment.truncate(position)
            if position == 0:
                cut = True
            else:
                segments, end = ordinal + 1, position
        finally:
            segment.close()
        if cut:
            break
    for base in bases[segments:]:
        for suffix in (".log", ".index"):
            (directory / f"{base:020d}{suffix}").unlink(missing_ok=True)
        report.actions.append(f"removed segment {directory.name}/{base:020d} past the good data")
    return TopicState(segments=segments, end=end, next_offset=next_offset, records=records)


def _rebuild_offset_indexes(directory: Path, config: KesqueConfig, report: RepairReport) -> None:
    for ordinal, base in enumerate(list_segment_bases(directory)):
        segment = Segment(directory, base, ordinal, writable=False)
        path = directory / offset_index_file_name(base)
        temporary = path.with_name(path.name + ".tmp")
        temporary.unlink(missing_ok=True)
        capacity = max(config.segment_bytes, segment.size) // config.offset_index_interval + 2
        index = OffsetIndex(temporary, writable=True, capacity=capacity, create=True)
        try:
            last: int | None = None
            for record in scan_records(segment.read, 0, segment.size, segment.path):
                if last is None or record.position - last >= config.offset_index_interval:
                    index.append(record.offset - base, record.position)
                    last = record.position
            if config.fsync:
                index.sync()
        finally:
            index.close()
            segment.close()
        os.replace(temporary, path)
    report.actions.append(f"rebuilt the offset indexes of {directory.name}")


def _rebuild_hash_index(
    directory: Path,
    state: TopicState,
    committed: TopicState | None,
    config: KesqueConfig,
    report: RepairReport,
) -> TopicState:
    generations = list_index_generations(directory)
    generation = max([*generations, committed.index_generation if committed else 0]) + 1
    salt = os.urandom(16)
    slots_log2 = config.hash_index_initial_slots.bit_length() - 1
    while state.records > config.hash_index_max_load * (1 << slots_log2) / 2:
        slots_log2 += 1
    path = directory / index_file_name(generation)
    entries = _hash_entries(directory, state, salt)
    index, used = build_index(path, slots_log2, generation, salt, entries, config.fsync)
    index.close()
    for old in generations:
        if old < generation - 1:
            (directory / index_file_name(old)).unlink(missing_ok=True)
    report.actions.append(
        f"rebuilt the hash index of {directory.name}: {used} entries, generation {generation}"
    )
    return state.with_changes(
        index_generation=generation,
        index_used=used,
        index_slots=1 << slots_log2,
        overwrites=(committed.overwrites if committed else 0) + 1,
        superseded=int(committed is None or committed.may_have_superseded),
        replay_segment=-1,  # the rebuilt index is durable
        replay_position=0,
    )


def _hash_entries(
    directory: Path, state: TopicState, salt: bytes
) -> Iterator[tuple[int, int, int, int]]:
    """(key hash, ordinal, position, length) of every record within `state`."""
    for ordinal, base in enumerate(list_segment_bases(directory)[: state.segments]):
        segment = Segment(directory, base, ordinal, writable=False)
        try:
            end = state.end if ordinal == state.segments - 1 else segment.size
            for record in scan_records(segment.read, 0, end, segment.path, verify=False):
                yield word_key_hash(salt, record.key), ordinal, record.position, record.length
        finally:
            segment.close()
