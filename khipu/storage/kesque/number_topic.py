"""NumberTopic: a topic addressed by block number, the number being the record's offset.

Headers, bodies, receipts and total difficulties need no hash index: a sparse offset index per
segment finds the last indexed record at or before the number, and the wanted record starts
within one index interval of it, so a get is usually one pread of about that many bytes.
Numbers must increase (gaps are allowed: a missing number reads as None).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator
from pathlib import Path

from khipu.storage.kesque.cache import LRUCache
from khipu.storage.kesque.commit_file import TopicState
from khipu.storage.kesque.config import KesqueConfig
from khipu.storage.kesque.errors import OffsetOutOfOrder, StoreCorrupted
from khipu.storage.kesque.offset_index import OffsetIndex, offset_index_file_name
from khipu.storage.kesque.segment import HEADER_SIZE, Record, record_crc_ok, scan_records
from khipu.storage.kesque.topic import StoreLink, SyncJob, TopicLog

MAX_RELATIVE = (1 << 32) - 1


class NumberTopic(TopicLog):
    """Values addressed by block number."""

    def __init__(
        self,
        name: str,
        directory: Path,
        config: KesqueConfig,
        writable: bool,
        state: TopicState,
        store: StoreLink,
    ) -> None:
        super().__init__(name, directory, config, writable, state, store)
        self.cache: LRUCache[int] = LRUCache(config.cache_bytes_of(name))
        self.offset_indexes: list[OffsetIndex] = []
        self._last_entry_position: int | None = None

    # -- reading -------------------------------------------------------------------------------

    def get_at(self, number: int) -> bytes | None:
        """The value stored at block `number`, or None. Raises StoreCorrupted."""
        if self.commit_counter[0] != self.seen_counter:
            self.store.follow_commits()
        cached = self.cache.get(number)
        if cached is not None:
            return cached
        record = self.find(number)
        if (
            record is None
            and self.refresh_on_miss
            and number >= self.next_offset
            and self.store.refresh()
        ):
            record = self.find(number)
        if record is None:
            return None
        self.cache.put(number, record.value)
        return record.value

    def last_offset(self) -> int:
        """The highest number stored (-1 when the topic is empty)."""
        self.follow()
        return self.next_offset - 1

    def offset_index(self, ordinal: int) -> OffsetIndex:
        """The offset index of segment `ordinal` (a reader maps it on first use)."""
        if len(self.offset_indexes) <= ordinal:
            self.segment(ordinal)
            with self._open_lock:
                while len(self.offset_indexes) <= ordinal:
                    base = self.segments[len(self.offset_indexes)].base_offset
                    path = self.directory / offset_index_file_name(base)
                    self.offset_indexes.append(OffsetIndex(path, writable=False))
        return self.offset_indexes[ordinal]

    def find(self, number: int) -> Record | None:
        """The record at `number` among the visible ones, or None."""
        count = self.visible_segments()
        if count == 0 or number >= self.next_offset:
            return None
        if count > len(self.segments):
            self.segment(count - 1)
        ordinal = bisect_right(self.bases, number, 0, count) - 1
        if ordinal < 0:
            return None
        segment = self.segment(ordinal)
        end = self.visible_end(ordinal)
        start = self.offset_index(ordinal).lookup(number - segment.base_offset, end)
        chunk = self.config.offset_index_interval + HEADER_SIZE
        for record in scan_records(segment.read, start, end, segment.path, False, chunk):
            if record.offset == number:
                if self.config.verify_reads and not record_crc_ok(record):
                    raise StoreCorrupted(segment.path, record.position, "record CRC32C mismatch")
                return record
            if record.offset > number:
                return None
        return None

    def iter_from(self, first: int, last: int | None = None) -> Iterator[tuple[int, bytes]]:
        """(number, value) of every stored number from `first` to `last` (default: the end),
        ascending, read sequentially. Raises StoreCorrupted at a damaged record."""
        self.follow()
        stop = self.next_offset - 1 if last is None else min(last, self.next_offset - 1)
        count = self.visible_segments()
        if count == 0 or first > stop:
            return
        self.segment(count - 1)
        first_ordinal = max(bisect_right(self.bases, first, 0, count) - 1, 0)
        for ordinal in range(first_ordinal, count):
            segment = self.segment(ordinal)
            end = self.visible_end(ordinal)
            start = self.offset_index(ordinal).lookup(first - segment.base_offset, end)
            for record in scan_records(segment.read, start, end, segment.path):
                if record.offset > stop:
                    return
                if record.offset >= first:
                    yield record.offset, record.value

    def record_at(self, ordinal: int, position: int) -> Record | None:
        """The visible record starting at byte `position` of segment `ordinal` (no CRC check),
        or None past the end. Raises StoreCorrupted if no valid record header is there."""
        segment = self.segment(ordinal)
        end = self.visible_end(ordinal)
        chunk = self.config.offset_index_interval + HEADER_SIZE
        return next(
            iter(scan_records(segment.read, position, end, segment.path, False, chunk)), None
        )

    def iter_records(self) -> Iterator[tuple[int, Record]]:
        """(segment ordinal, record) of every visible record, in log order (for check/stats)."""
        for ordinal in range(self.visible_segments()):
            segment = self.segment(ordinal)
            for record in scan_records(segment.read, 0, self.visible_end(ordinal), segment.path):
                yield ordinal, record

    # -- writing -------------------------------------------------------------------------------

    def put_at(self, number: int, value: bytes) -> None:
        """Writer only: store `value` at block `number`, above every number stored so far.

        Raises OffsetOutOfOrder for a number not above last_offset(), StoreFull or
        StoreWriteFailed (after rolling back to the last commit).
        """
        self.require_writer()
        if number < self.next_offset:
            raise OffsetOutOfOrder(self.name, number, self.next_offset - 1)
        try:
            position, _ = self.append_record(number, b"", value, 0)
        except OSError as error:
            self.fail(error, self.segments[-1].path if self.segments else self.directory)
        segment = self.segments[-1]
        last = self._last_entry_position
        due = last is None or position - last >= self.config.offset_index_interval
        if due and self.offset_indexes[-1].append(number - segment.base_offset, position):
            self._last_entry_position = position
        self.next_offset = number + 1
        self.records += 1
        self.cache.put(number, value)  # the chain's writer reads its newest blocks back at once

    def roll(self, base_offset: int) -> None:
        super().roll(base_offset)
        capacity = self.config.segment_bytes // self.config.offset_index_interval + 2
        path = self.directory / offset_index_file_name(base_offset)
        self.offset_indexes.append(OffsetIndex(path, True, capacity, create=True))
        self._last_entry_position = None

    def log_syncs(self) -> list[SyncJob]:
        """Commit step 1: the segments' fsyncs and the msyncs of their offset indexes (entries
        past the commit are cut off at the next open, so they need not wait for the logs)."""
        jobs = super().log_syncs()
        if self.config.fsync:
            jobs += [self.offset_indexes[ordinal].sync for ordinal in sorted(self._dirty)]
        return jobs

    def files_of_segment(self, base_offset: int) -> list[Path]:
        return [
            *super().files_of_segment(base_offset),
            self.directory / offset_index_file_name(base_offset),
        ]

    # -- opening and recovery ------------------------------------------------------------------

    def recover(self) -> None:
        """Writer: open at the last commit, dropping uncommitted segments, bytes and index
        entries. Raises StoreCorrupted if a committed offset index is missing."""
        self.remove_temporary_files()
        extra = self.open_writer_segments()
        for segment in self.segments:
            path = self.directory / offset_index_file_name(segment.base_offset)
            if not path.exists():
                if not self._made_by_last_append(segment.ordinal):
                    raise StoreCorrupted(path, 0, "offset index missing: run `khipu db repair`")
                # its directory entry was made durable beside the commit file: a crash may
                # have lost it; its entries are rebuilt below
                capacity = self.config.segment_bytes // self.config.offset_index_interval + 2
                OffsetIndex(path, True, capacity, create=True).close()
            self.offset_indexes.append(OffsetIndex(path, writable=True))
        self.discard_uncommitted(extra)
        if self.state.appended_in >= 0 and self.segments:
            self._rebuild_appended_entries()
        if self.offset_indexes:
            self.offset_indexes[-1].truncate(self.state.end)
            self._last_entry_position = self.offset_indexes[-1].last_position()

    def _made_by_last_append(self, ordinal: int) -> bool:
        """Whether segment `ordinal` was created by the last commit that appended here."""
        state = self.state
        if state.appended_in < 0:
            return False
        return ordinal > state.appended_segment or state.appended_position == 0

    def _rebuild_appended_entries(self) -> None:
        """Enter again the offset index entries of the records the last appending commit
        wrote: their msync ran beside the commit file's fdatasync, so a crash may have cut it
        short (older entries were durable before that commit began). Raises StoreCorrupted at
        a damaged committed record."""
        state = self.state
        interval = self.config.offset_index_interval
        for ordinal in range(state.appended_segment, len(self.segments)):
            segment = self.segments[ordinal]
            start = state.appended_position if ordinal == state.appended_segment else 0
            end = state.end if ordinal == len(self.segments) - 1 else segment.size
            index = self.offset_indexes[ordinal]
            # the entry before `start` (a segment's first record always has one)
            last = index.lookup(MAX_RELATIVE, start) if start > 0 else None
            entries = []
            for record in scan_records(segment.read, start, end, segment.path, False):
                if last is None or record.position - last >= interval:
                    entries.append((record.offset - segment.base_offset, record.position))
                    last = record.position
            index.rebuild_from(start, entries)

    def reset_to_commit(self) -> None:
        self.cache.clear()
        self._last_entry_position = None
        super().reset_to_commit()

    def close_segments(self) -> None:
        for index in self.offset_indexes:
            index.close()
        self.offset_indexes = []
        super().close_segments()
