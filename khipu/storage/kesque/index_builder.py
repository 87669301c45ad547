"""The child process that builds the next generation of a hash index while the writer commits.

    python -m khipu.storage.kesque.index_builder TOPIC_DIR GENERATION TEMPORARY SLOTS_LOG2 \
        BOUNDARY_SEGMENT BOUNDARY_POSITION BOUNDARY_RECORDS PARENT_PID CATCH_UP_RECORDS DURABLE

The writer (hash_growth.py) starts it when generation g of a topic's index passes its load. The
boundary B is the committed end of the topic at the commit before: every record before B has
its entry in generation g. The build has two phases:

1. copy: scan g's slots (mapped read-only; the writer keeps inserting into it meanwhile) and
   insert into the new file every live entry whose record lies before B. The writer fills a
   slot location first, hash last, so a slot read while it is being filled shows a new hash
   with a zero location (length 0) or the whole entry; either lies at or past B and is skipped:
   those records come from the log in phase 2, so the copy never doubles an entry;
2. catch up: read the published commit (as a reader does), enter the records between the point
   reached and the committed end, and repeat until fewer than CATCH_UP_RECORDS are left.

Then it msyncs the file (DURABLE=1) and prints one line, `reached segment=S position=P
records=R entries=N`: the point C it reached (the writer enters the records from C itself), the
records before C, and the entries in the file. It never renames or touches anything else: if
its parent is gone (the writer was killed) it exits leaving only its temporary file, which the
writer's next open removes; on SIGTERM it dies the default way. Any failure: a one-line message
on stderr and a non-zero exit.

Imports stay light (no py-evm): the process starts in a fraction of a second.
"""

from __future__ import annotations

import functools
import mmap
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from khipu.storage.kesque.commit_counter import CommitCounter
from khipu.storage.kesque.commit_file import COMMIT_FILE_NAME, TopicState, read_published
from khipu.storage.kesque.crc32c import crc32c
from khipu.storage.kesque.errors import KesqueError, StoreCorrupted
from khipu.storage.kesque.hash_index import (
    DELETED,
    HASH_FLOOR,
    KEY_WORDS,
    MASK64,
    SLOT,
    SLOT_SIZE,
    SLOTS_START,
    VERSION_WORDS,
    WORD_MULTIPLIER,
    HashIndex,
    index_file_name,
)
from khipu.storage.kesque.segment import (
    HEADER_SIZE,
    RECORD_HEADER,
    Segment,
    byte_ranges,
    list_segment_bases,
)

COPY_CHUNK_SLOTS = 1 << 14
"""Slots copied between two looks at the parent."""
FLUSH_BYTES = 2 << 20
"""A durable build msyncs its file in steps of this many bytes while it copies."""
SCAN_CHUNK_BYTES = 1 << 20
"""Log bytes read at once in the catch-up (one look at the parent per chunk)."""
GATE_VARIABLE = "KHIPU_KESQUE_GROWTH_GATE"
"""Tests only: a path; after the copy the builder waits until a file exists there, so commits
surely land while it runs."""
EXIT_PARENT_GONE = 3


class ParentGone(Exception):
    """The writer that started this builder is gone: nobody will adopt what it builds."""


@dataclass(frozen=True)
class BuildRequest:
    """What the writer asks of one build (the command line, parsed)."""

    directory: Path
    """The topic's directory (its parent holds the commit file)."""
    generation: int
    """The source generation g; the build makes g + 1."""
    temporary: Path
    slots_log2: int
    boundary: tuple[int, int]
    """B: (segment ordinal, position) of the committed end at the commit before the growth."""
    boundary_records: int
    """Records of the topic before B."""
    parent_pid: int
    catch_up_records: int
    durable: bool

    def arguments(self) -> list[str]:
        """The command-line arguments that `parse_request` turns back into this request."""
        return [
            str(self.directory),
            str(self.generation),
            str(self.temporary),
            str(self.slots_log2),
            str(self.boundary[0]),
            str(self.boundary[1]),
            str(self.boundary_records),
            str(self.parent_pid),
            str(self.catch_up_records),
            "1" if self.durable else "0",
        ]


@dataclass(frozen=True)
class BuildResult:
    """Where a finished build stopped: the writer enters the records from `reached` on."""

    reached: tuple[int, int]
    records: int
    """Records of the topic before `reached`."""
    entries: int
    """Entries in the built file (all live)."""

    def line(self) -> str:
        return (
            f"reached segment={self.reached[0]} position={self.reached[1]} "
            f"records={self.records} entries={self.entries}"
        )

    @classmethod
    def parse(cls, line: str) -> BuildResult:
        """The result a builder printed. Raises ValueError for any other line."""
        words = line.split()
        if len(words) != 5 or words[0] != "reached":
            raise ValueError(f"not a builder result: {line!r}")
        fields = dict(word.split("=", 1) for word in words[1:])
        return cls(
            (int(fields["segment"]), int(fields["position"])),
            int(fields["records"]),
            int(fields["entries"]),
        )


def parse_request(argv: list[str]) -> BuildRequest:
    """The request on a builder's command line. Raises ValueError if it is malformed."""
    if len(argv) != 10:
        raise ValueError(f"expected 10 arguments, got {len(argv)}: {argv}")
    return BuildRequest(
        Path(argv[0]),
        int(argv[1]),
        Path(argv[2]),
        int(argv[3]),
        (int(argv[4]), int(argv[5])),
        int(argv[6]),
        int(argv[7]),
        int(argv[8]),
        argv[9] == "1",
    )


def build(request: BuildRequest) -> BuildResult:
    """Build generation g + 1 into `request.temporary` (both phases, see the module docstring).

    Raises ParentGone, OSError, ValueError (a foreign or too small index file), StoreCorrupted
    (a damaged committed record, or a log that disagrees with the commit's record count).
    """
    check_parent(request.parent_pid)
    source = HashIndex(request.directory / index_file_name(request.generation), writable=False)
    try:
        target = HashIndex.create(
            request.temporary,
            request.slots_log2,
            request.generation + 1,
            source.salt,
            source.version,
        )
        try:
            copied = copy_entries_before(
                source, target, request.boundary, request.parent_pid, request.durable
            )
            wait_at_gate(request.parent_pid)
            reached, records, entered = catch_up(target, request)
            if request.durable:
                target.sync()
        finally:
            target.close()
    finally:
        source.close()
    return BuildResult(reached, records, copied + entered)


def copy_entries_before(
    source: HashIndex,
    target: HashIndex,
    boundary: tuple[int, int],
    parent_pid: int,
    durable: bool = False,
) -> int:
    """Phase 1: insert into `target` every live entry of `source` whose record lies before
    `boundary`; return how many. `durable`: msync the part of `target` written so far every
    FLUSH_BYTES as it goes, so the final msync is short (one long burst of writes stalls the
    writer's commit fsyncs for as long). Raises ParentGone, OverflowError, OSError."""
    boundary_ordinal, boundary_position = boundary
    copied = 0
    source_map = source.map
    flushed = 0
    growth_shift = target.slots_log2 - source.slots_log2
    for first in range(0, source.slots, COPY_CHUNK_SLOTS):
        check_parent(parent_pid)
        if durable:
            # slot order is hash order, in both files: the target is written front to back
            # (give or take a probe run), so what lies well behind the front is done
            front = SLOTS_START + (first << growth_shift) * SLOT_SIZE - FLUSH_BYTES
            front -= front % mmap.PAGESIZE
            if front - flushed >= FLUSH_BYTES:
                target.map.flush(flushed, front - flushed)
                flushed = front
        start = SLOTS_START + first * SLOT_SIZE
        count = min(COPY_CHUNK_SLOTS, source.slots - first)
        chunk = source_map[start : start + count * SLOT_SIZE]
        copied += target.insert_many(
            entry
            for entry in SLOT.iter_unpack(chunk)
            if entry[0] > DELETED
            and entry[3] > 0
            and (
                entry[1] < boundary_ordinal
                or (entry[1] == boundary_ordinal and entry[2] < boundary_position)
            )
        )
    return copied


def catch_up(target: HashIndex, request: BuildRequest) -> tuple[tuple[int, int], int, int]:
    """Phase 2: enter the committed records from the boundary on, pass after pass, until fewer
    than `catch_up_records` are left; return the point reached, the records before it and the
    entries made. Raises ParentGone, OSError, StoreCorrupted."""
    store_path = request.directory.parent
    reached, records = request.boundary, request.boundary_records
    entered = 0
    segments: list[Segment] = []
    counter = CommitCounter.open_reader(store_path)
    try:
        while True:
            check_parent(request.parent_pid)
            state = published_topic_state(store_path, request.directory.name, counter)
            if state.records - records <= request.catch_up_records:
                return reached, records, entered
            made = enter_records(target, request, segments, reached, state)
            if made != state.records - records:
                raise StoreCorrupted(
                    request.directory,
                    reached[1],
                    f"{made} records from segment {reached[0]} byte {reached[1]} to the commit, "
                    f"which counts {state.records - records}",
                )
            entered += made
            reached, records = (state.segments - 1, state.end), state.records
    finally:
        for segment in segments:
            segment.close()
        if counter is not None:
            counter.close()


def published_topic_state(
    store_path: Path, topic: str, counter: CommitCounter | None
) -> TopicState:
    """The topic's state in the newest published commit (a slot not yet published may name
    records a failed commit will cut). Raises OSError, StoreCorrupted."""

    def published() -> int | None:
        return counter.published if counter is not None else None

    return read_published(store_path / COMMIT_FILE_NAME, published)[0].topic(topic)


def enter_records(
    target: HashIndex,
    request: BuildRequest,
    segments: list[Segment],
    start: tuple[int, int],
    state: TopicState,
) -> int:
    """Insert into `target` an entry for every record from `start` to the committed end of
    `state`; return how many (opening segments into `segments` as needed). Raises ParentGone,
    OSError, StoreCorrupted (also when the records counted differ from the commit's)."""
    bases = list_segment_bases(request.directory)[: state.segments]
    for ordinal in range(len(segments), len(bases)):
        segments.append(Segment(request.directory, bases[ordinal], ordinal, writable=False))
    for segment in segments[start[0] : state.segments - 1]:
        segment.refresh_size()  # opened when it was the last one: it grew since
    return enter_committed(
        target, segments, start, state, functools.partial(check_parent, request.parent_pid)
    )


def enter_committed(
    target: HashIndex,
    segments: list[Segment],
    start: tuple[int, int],
    state: TopicState,
    between_chunks: Callable[[], None] = lambda: None,
) -> int:
    """Insert into `target` an entry for every record of `segments` from `start` (segment
    ordinal, position) to the committed end of `state`; return how many. Raises OSError,
    StoreCorrupted, and what `between_chunks` raises (see `enter_segment`)."""
    return sum(
        enter_segment(target, segment, begin, end, between_chunks)
        for segment, begin, end in byte_ranges(segments, start, state.segments, state.end)
    )


def enter_segment(
    target: HashIndex,
    segment: Segment,
    start: int,
    end: int,
    between_chunks: Callable[[], None] = lambda: None,
) -> int:
    """Insert into `target` an entry for every record of `segment` from byte `start` to `end`
    (the records' CRC32C checked), calling `between_chunks` before each read; return how
    many. The lean twin of scanning with `scan_records`, at about half its cost per record.
    Raises OSError, StoreCorrupted (a damaged record, or one running past `end`), and what
    `between_chunks` raises."""
    words = target.version == VERSION_WORDS
    salt = target.salt_word
    hash_of = target.hash_of
    unpack_header = RECORD_HEADER.unpack_from
    unpack_words = KEY_WORDS.unpack_from
    ordinal = segment.ordinal
    entered = 0
    position = start
    while position < end:
        between_chunks()
        chunk = segment.read(position, min(SCAN_CHUNK_BYTES, end - position))
        if len(chunk) >= HEADER_SIZE and unpack_header(chunk, 0)[0] > len(chunk):
            chunk = segment.read(position, unpack_header(chunk, 0)[0])  # one record, big
        view = memoryview(chunk)
        available = len(chunk)
        entries = []
        at = 0
        while at + HEADER_SIZE <= available:
            length, crc, _, _, key_length = unpack_header(chunk, at)
            if length < HEADER_SIZE + key_length:
                raise StoreCorrupted(segment.path, position + at, f"record length {length}")
            if at + length > available:
                break
            if crc32c(view[at + 8 : at + length]) != crc:
                raise StoreCorrupted(segment.path, position + at, "record CRC32C mismatch")
            if words and key_length == 32:
                a, b, c, d = unpack_words(chunk, at + HEADER_SIZE)
                hashed = (((a ^ b ^ c ^ d ^ salt) * WORD_MULTIPLIER) & MASK64) | HASH_FLOOR
            else:
                hashed = hash_of(bytes(view[at + HEADER_SIZE : at + HEADER_SIZE + key_length]))
            entries.append((hashed, ordinal, position + at, length))
            at += length
        view.release()
        if at == 0:
            raise StoreCorrupted(segment.path, position, f"a record runs past byte {end}")
        entered += target.insert_many(entries)
        position += at
    return entered


def check_parent(parent_pid: int) -> None:
    """Raises ParentGone if the process that started this one has exited."""
    if os.getppid() != parent_pid:
        raise ParentGone(f"parent {parent_pid} is gone")


def wait_at_gate(parent_pid: int) -> None:
    """Tests only: wait until the file named by KHIPU_KESQUE_GROWTH_GATE exists."""
    gate = os.environ.get(GATE_VARIABLE)
    while gate and not os.path.exists(gate):
        check_parent(parent_pid)
        time.sleep(0.01)


def main(argv: list[str]) -> int:
    """Run one build; the exit code (0: the result line is on stdout)."""
    try:
        request = parse_request(argv)
        result = build(request)
    except ParentGone as error:
        print(f"kesque index builder stopped: {error}", file=sys.stderr)
        return EXIT_PARENT_GONE
    except (OSError, ValueError, OverflowError, KesqueError) as error:
        print(f"kesque index builder failed: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    print(result.line(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
