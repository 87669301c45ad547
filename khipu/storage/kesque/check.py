"""`khipu db check` and `khipu db stats`: verify a store against its commit file, and count it.

The check reads every committed record (CRC32C, offsets, lengths) and every index entry, and
says what is wrong with file and byte offset. It reads the committed view only, so it may run
beside the writer; index entries past the commit (a commit in flight, or a crash's leftovers that
the writer retires when it next opens) are noted, not reported as problems.
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from pathlib import Path

from khipu.storage.kesque.commit_file import TopicState, commit_candidates
from khipu.storage.kesque.commit_recovery import appended_problem
from khipu.storage.kesque.config import KesqueConfig
from khipu.storage.kesque.errors import StoreCorrupted
from khipu.storage.kesque.hash_index import index_file_name
from khipu.storage.kesque.hash_topic import HashTopic
from khipu.storage.kesque.number_topic import NumberTopic
from khipu.storage.kesque.offset_index import ENTRY
from khipu.storage.kesque.segment import list_segment_bases
from khipu.storage.kesque.store import LOCK_FILE_NAME, Kesque


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the store."""

    file: Path
    offset: int
    reason: str

    def __str__(self) -> str:
        return f"{self.file} at byte {self.offset}: {self.reason}"


@dataclass(frozen=True)
class CheckReport:
    problems: list[Problem]
    notes: list[str]
    records_checked: int

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class TopicStats:
    name: str
    kind: str
    records: int
    bytes: int
    segments: int
    last_offset: int
    index_slots: int
    index_used: int

    @property
    def load_factor(self) -> float:
        return self.index_used / self.index_slots if self.index_slots else 0.0


def writer_running(store_path: Path) -> bool:
    """Whether a process holds the store's writer lock."""
    lock_path = store_path / LOCK_FILE_NAME
    if not lock_path.exists():
        return False
    fd = os.open(lock_path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def check_store(store_path: Path, config: KesqueConfig | None = None) -> CheckReport:
    """Verify every committed record and index entry of the store at `store_path`.

    Raises StoreMissing if there is no store; damage is reported, not raised.
    """
    problems: list[Problem] = []
    notes: list[str] = []
    records = 0
    if writer_running(store_path):
        notes.append("a writer holds the lock: what it has not committed yet is not checked")
    try:
        store = Kesque.open(store_path, readonly=True, config=config)
    except StoreCorrupted as error:
        return CheckReport([Problem(error.file, error.offset, error.reason)], notes, 0)
    with store:
        notes.extend(_unpublished_commit(store_path, store, config or KesqueConfig()))
        for topic in store.all_topics():
            notes.extend(_uncommitted_tail(topic.directory, topic.state))
            try:
                if isinstance(topic, HashTopic):
                    records += _check_hash_topic(topic, problems, notes)
                else:
                    records += _check_number_topic(topic, problems)
            except StoreCorrupted as error:
                problems.append(Problem(error.file, error.offset, error.reason))
            except OSError as error:
                problems.append(Problem(topic.directory, 0, f"cannot read: {error}"))
    return CheckReport(problems, notes, records)


def _unpublished_commit(store_path: Path, store: Kesque, config: KesqueConfig) -> list[str]:
    """A note on a newer commit slot than the published one: a commit whose flushes were under
    way (or a writer killed after them), and what the writer's next open will make of it."""
    try:
        newest = commit_candidates(store.commit_path.read_bytes(), store.commit_path)[0]
    except (OSError, StoreCorrupted):
        return []
    if newest.sequence <= store.state.sequence:
        return []
    try:
        problem = appended_problem(store_path, newest, config)
    except StoreCorrupted as error:
        problem = error.reason
    if problem is None:
        fate = "its records are whole: the writer's next open takes it"
    else:
        fate = f"the writer's next open falls back to commit {store.state.sequence} ({problem})"
    return [f"commit {newest.sequence} was written but not published; {fate}"]


def _uncommitted_tail(directory: Path, state: TopicState) -> list[str]:
    if not directory.is_dir():
        return []
    bases = list_segment_bases(directory)
    extra = len(bases) - state.segments
    tail = 0
    if state.segments and len(bases) >= state.segments:
        tail = os.path.getsize(directory / f"{bases[state.segments - 1]:020d}.log") - state.end
    if extra > 0 or tail > 0:
        return [
            f"{directory.name}: {tail} bytes and {max(extra, 0)} segments past the commit "
            "(dropped when the writer next opens)"
        ]
    return []


def _check_segments_exist(topic: HashTopic | NumberTopic, problems: list[Problem]) -> bool:
    state = topic.state
    bases = list_segment_bases(topic.directory) if topic.directory.is_dir() else []
    if len(bases) < state.segments:
        problems.append(
            Problem(
                topic.directory, 0, f"commit names {state.segments} segments, {len(bases)} exist"
            )
        )
        return False
    if state.segments:
        last = topic.directory / f"{bases[state.segments - 1]:020d}.log"
        if os.path.getsize(last) < state.end:
            problems.append(
                Problem(last, os.path.getsize(last), f"shorter than commit {state.end}")
            )
            return False
    return True


def _check_log(topic: HashTopic | NumberTopic, problems: list[Problem]) -> int:
    """Scan the committed records: CRCs and increasing offsets. Returns the count."""
    count = 0
    previous = -1
    for ordinal, record in topic.iter_records():
        if record.offset <= previous:
            path = topic.segment(ordinal).path
            problems.append(
                Problem(path, record.position, f"offset {record.offset} after offset {previous}")
            )
        previous = record.offset
        count += 1
    if count != topic.state.records:
        problems.append(
            Problem(topic.directory, 0, f"{count} records, the commit says {topic.state.records}")
        )
    if previous >= topic.state.next_offset:
        problems.append(
            Problem(topic.directory, 0, f"offset {previous} past next {topic.state.next_offset}")
        )
    return count


def _check_number_topic(topic: NumberTopic, problems: list[Problem]) -> int:
    if not _check_segments_exist(topic, problems):
        return 0
    count = _check_log(topic, problems)
    for ordinal in range(topic.visible_segments()):
        segment = topic.segment(ordinal)
        index = topic.offset_index(ordinal)
        end = topic.visible_end(ordinal)
        for i, relative, position in index.entries(end):
            where = i * ENTRY.size
            try:
                found = topic.record_at(ordinal, position)
            except StoreCorrupted:
                found = None
            if found is None:
                problems.append(Problem(index.path, where, f"entry -> byte {position}: no record"))
            elif found.offset != segment.base_offset + relative:
                problems.append(
                    Problem(
                        index.path,
                        where,
                        f"entry says offset {segment.base_offset + relative}, "
                        f"the record at byte {position} has {found.offset}",
                    )
                )
    return count


def _check_hash_topic(topic: HashTopic, problems: list[Problem], notes: list[str]) -> int:
    if not _check_segments_exist(topic, problems):
        return 0
    state = topic.state
    if state.index_generation == 0:
        return _check_log(topic, problems)
    index_path = topic.directory / index_file_name(state.index_generation)
    if not index_path.exists():
        problems.append(Problem(index_path, 0, "hash index missing: run `khipu db repair`"))
        return _check_log(topic, problems)
    index = topic.current_index()
    assert index is not None
    count = 0
    previous = -1
    for ordinal, record in topic.iter_records():
        path = topic.segment(ordinal).path
        if record.offset <= previous:
            problems.append(
                Problem(path, record.position, f"offset {record.offset} not increasing")
            )
        previous = record.offset
        count += 1
        entries = index.candidates(index.hash_of(record.key))
        if not any(
            (e[1], e[2], e[3]) == (ordinal, record.position, record.length) for e in entries
        ):
            problems.append(Problem(path, record.position, "record has no hash index entry"))
    if count != state.records:
        problems.append(
            Problem(topic.directory, 0, f"{count} records, commit says {state.records}")
        )
    live = past_commit = 0
    for _, _, ordinal, position, length in index.entries():
        if topic.is_visible(ordinal, position, length):
            live += 1
        else:
            past_commit += 1
    if past_commit:
        notes.append(
            f"{topic.name}: {past_commit} index entries point past the commit (a commit in "
            "flight, or left by a crash: retired when the writer next opens)"
        )
    if live != count:
        problems.append(Problem(index_path, 0, f"{live} index entries for {count} records"))
    return count


def store_stats(store_path: Path, config: KesqueConfig | None = None) -> list[TopicStats]:
    """Records, bytes and index load of every topic, from the commit file (no scan)."""
    stats = []
    with Kesque.open(store_path, readonly=True, config=config) as store:
        for topic in store.all_topics():
            state = topic.state
            size = 0
            for ordinal in range(state.segments):
                size += topic.visible_end(ordinal)
            stats.append(
                TopicStats(
                    topic.name,
                    "hash" if isinstance(topic, HashTopic) else "number",
                    state.records,
                    size,
                    state.segments,
                    state.next_offset - 1,
                    state.index_slots,
                    state.index_used,
                )
            )
    return stats
