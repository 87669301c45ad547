"""TopicLog: the segment files of one topic, the part hash and number topics share.

The writer sees every record it appended; a reader sees what the last commit it read made
visible (`TopicState`): the first `segments` segment files, the last one up to `end`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn, Protocol

from khipu.storage.kesque import files
from khipu.storage.kesque.commit_counter import CommitCounter
from khipu.storage.kesque.commit_file import TopicState
from khipu.storage.kesque.config import KesqueConfig
from khipu.storage.kesque.errors import StoreClosed, StoreCorrupted
from khipu.storage.kesque.segment import Segment, encode_record, list_segment_bases

_UNMOVED = CommitCounter.private(0)

SyncJob = Callable[[], None]
"""One fsync or msync of a commit (may run on another thread; raises OSError)."""


class StoreLink(Protocol):
    """What a topic asks of the store that owns it."""

    def fail_write(self, error: OSError, file: Path) -> NoReturn:
        """Roll every topic back to the last commit and raise StoreFull or StoreWriteFailed."""
        ...

    def maybe_refresh(self) -> None:
        """Reader: re-read the commit file if it was not read for a while."""
        ...

    def follow_commits(self) -> None:
        """Reader: a topic saw the commit counter move (or has none): adopt the newest commit."""
        ...

    def refresh(self) -> bool:
        """Reader: re-read the commit file now; True if it changed. The writer: False."""
        ...


class TopicLog:
    """The segments of one topic directory, read by anyone and appended by the writer."""

    def __init__(
        self,
        name: str,
        directory: Path,
        config: KesqueConfig,
        writable: bool,
        state: TopicState,
        store: StoreLink,
    ) -> None:
        self.name = name
        self.directory = directory
        self.config = config
        self.segment_bytes = config.segment_bytes
        self.writable = writable
        self.state = state
        """The last commit this process knows of (the writer's own, or what a reader read)."""
        self.segments: list[Segment] = []
        self.bases: list[int] = []
        self.next_offset = state.next_offset
        self.records = state.records
        self.store = store
        self._dirty: set[int] = set()
        self._created_files = False
        self.closed = False
        self._open_lock = threading.Lock()
        self.commit_counter: memoryview = _UNMOVED.view
        """The store's commit counter (index 0); a read compares it with `seen_counter` and asks
        the store to follow the commits when they differ (commit_counter.py)."""
        self.seen_counter = 0
        self.refresh_on_miss = False
        """A reader without a commit counter re-reads the commit file when a key is missing."""

    def follow(self) -> None:
        """Reader: adopt the newest commit if the commit counter moved since it was last read."""
        if self.commit_counter[0] != self.seen_counter:
            self.store.follow_commits()

    # -- reading -------------------------------------------------------------------------------

    def visible_segments(self) -> int:
        """Segments this process may read: all for the writer, the committed ones for a reader."""
        return len(self.segments) if self.writable else self.state.segments

    def visible_end(self, ordinal: int) -> int:
        """The end of the readable bytes of segment `ordinal`."""
        if self.writable:
            return self.segments[ordinal].end
        if ordinal == self.state.segments - 1:
            return self.state.end
        return self.segment(ordinal).size

    def segment(self, ordinal: int) -> Segment:
        """Segment `ordinal`, opening the committed segment files a reader has not opened yet."""
        if ordinal >= len(self.segments):
            self._open_reader_segments()
        return self.segments[ordinal]

    def _open_reader_segments(self) -> None:
        if self.closed:
            raise StoreClosed(f"topic {self.name} is closed")
        with self._open_lock:  # reader threads may race to open the same segment
            bases = list_segment_bases(self.directory)[: self.state.segments]
            for ordinal in range(len(self.segments), len(bases)):
                segment = Segment(self.directory, bases[ordinal], ordinal, writable=False)
                self.bases.append(bases[ordinal])
                self.segments.append(segment)

    def is_visible(self, ordinal: int, position: int, length: int) -> bool:
        """Whether the bytes [position, position+length) of segment `ordinal` may be read."""
        return ordinal < self.visible_segments() and position + length <= self.visible_end(ordinal)

    def apply_state(self, state: TopicState) -> None:
        """Reader only: adopt a newer commit."""
        if state.segments > self.state.segments and 0 < self.state.segments <= len(self.segments):
            self.segments[self.state.segments - 1].refresh_size()
        self.state = state
        self.next_offset = state.next_offset
        self.records = state.records

    # -- writing -------------------------------------------------------------------------------

    def append_record(self, offset: int, key: bytes, value: bytes, flags: int) -> tuple[int, int]:
        """Writer only: append a record, rolling to a new segment when the active one is full.

        Returns its position and length in `self.segments[-1]`. Raises OSError.
        """
        data = encode_record(offset, key, value, flags)
        segment = self.segments[-1] if self.segments else None
        if segment is None or (segment.end > 0 and segment.end + len(data) > self.segment_bytes):
            self.roll(offset)
            segment = self.segments[-1]
        self._dirty.add(segment.ordinal)
        return segment.append(data), len(data)

    def roll(self, base_offset: int) -> None:
        """Writer only: start a new segment whose first record has offset `base_offset`."""
        crc = 0
        if self.segments:
            self.segments[-1].flush()
            crc = self.segments[-1].crc
        ordinal = len(self.segments)
        self.segments.append(
            Segment(self.directory, base_offset, ordinal, writable=True, create=True)
        )
        self.segments[-1].crc = crc
        self.bases.append(base_offset)
        self._created_files = True

    def fail(self, error: OSError, file: Path | None = None) -> NoReturn:
        """Roll the whole store back to its last commit and raise StoreFull/StoreWriteFailed."""
        self.store.fail_write(error, file or self.directory)

    def require_writer(self) -> None:
        if self.closed:
            raise StoreClosed(f"topic {self.name} is closed")
        if not self.writable:
            raise PermissionError(f"topic {self.name} is open read-only")

    def write_out(self) -> None:
        """Writer, commit step 1: write out every segment appended to (subclasses: and what
        the commit file must name). Raises OSError."""
        for ordinal in sorted(self._dirty):
            self.segments[ordinal].flush()

    def log_syncs(self) -> list[SyncJob]:
        """Writer, commit step 2 (after `write_out`): the fsyncs that make the segments
        appended to (and new directory entries) durable, for the store to run side by side
        with other topics' and the commit file's. Raises OSError."""
        jobs: list[SyncJob] = []
        for ordinal in sorted(self._dirty):
            segment = self.segments[ordinal]
            if self.config.fsync:
                jobs.append(segment.sync)
        if self._created_files and self.config.fsync:
            directory = self.directory
            jobs.append(lambda: files.fsync_directory(directory))
        return jobs

    def enter_index(self) -> None:
        """Writer, commit step 3 (the logs and the commit file are durable now): make the new
        records findable through the topic's index (subclasses that have one)."""

    def proposed_state(self, sequence: int) -> TopicState:
        """Writer, after `write_out`: the state commit `sequence` will publish, naming where
        the bytes it appended begin and their CRC32C (commit_recovery.py)."""
        last = self.segments[-1].end if self.segments else 0
        state = self.state.with_changes(
            segments=len(self.segments),
            end=last,
            next_offset=self.next_offset,
            records=self.records,
        )
        if not self._dirty:
            return state
        return state.with_changes(
            appended_in=sequence,
            appended_segment=max(self.state.segments - 1, 0),
            appended_position=self.state.end,
            appended_crc=self.segments[-1].crc,
        )

    def committed(self, state: TopicState) -> None:
        """Writer, commit step 4: the commit file now says `state`."""
        self.state = state
        if self.segments:
            self.segments[-1].crc = 0
        self._dirty.clear()
        self._created_files = False

    def has_changes(self) -> bool:
        return bool(self._dirty) or self._created_files

    # -- opening, recovery and closing -------------------------------------------------------

    def open_writer_segments(self) -> list[int]:
        """Writer: open the committed segments; return the base offsets of uncommitted ones.

        Raises StoreCorrupted if a committed segment file is missing or shorter than committed.
        """
        bases = list_segment_bases(self.directory)
        committed = bases[: self.state.segments]
        if len(committed) < self.state.segments:
            raise StoreCorrupted(
                self.directory,
                0,
                f"the commit names {self.state.segments} segments, {len(committed)} exist",
            )
        for ordinal, base in enumerate(committed):
            self.segments.append(Segment(self.directory, base, ordinal, writable=True))
            self.bases.append(base)
        if self.segments and self.segments[-1].size < self.state.end:
            raise StoreCorrupted(
                self.segments[-1].path,
                self.segments[-1].size,
                f"the segment ends before its committed end {self.state.end}",
            )
        return bases[self.state.segments :]

    def uncommitted_regions(self, extra_bases: list[int]) -> list[tuple[Segment, int, int]]:
        """Writer: (segment, start, end) of every byte past the commit; extra segments are opened
        read-only and must be closed by the caller."""
        regions = []
        if self.segments and self.segments[-1].size > self.state.end:
            regions.append((self.segments[-1], self.state.end, self.segments[-1].size))
        for i, base in enumerate(extra_bases):
            extra = Segment(self.directory, base, self.state.segments + i, writable=False)
            regions.append((extra, 0, extra.size))
        return regions

    def discard_uncommitted(self, extra_bases: list[int]) -> None:
        """Writer: delete the uncommitted segments and cut the last one back to its commit."""
        for base in extra_bases:
            for path in self.files_of_segment(base):
                path.unlink(missing_ok=True)
        if self.segments:
            self.segments[-1].truncate(self.state.end)

    def files_of_segment(self, base_offset: int) -> list[Path]:
        """The files that belong to a segment (the log; subclasses add their index)."""
        return [self.directory / f"{base_offset:020d}.log"]

    def remove_temporary_files(self) -> None:
        for name in os.listdir(self.directory):
            if name.endswith(".tmp"):
                (self.directory / name).unlink(missing_ok=True)

    def recover(self) -> None:
        """Writer: open the files at the last commit, dropping anything past it (subclasses)."""
        raise NotImplementedError

    def reset_to_commit(self) -> None:
        """Writer: forget everything since the last commit and reopen at it."""
        self.close_segments()
        self.next_offset = self.state.next_offset
        self.records = self.state.records
        self._dirty.clear()
        self._created_files = False
        self.recover()

    def close_segments(self) -> None:
        for segment in self.segments:
            segment.close()
        self.segments = []
        self.bases = []

    def close(self) -> None:
        self.close_segments()
        self.commit_counter = _UNMOVED.view  # the store unmaps its counter
        self.closed = True
