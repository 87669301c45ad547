"""HashTopic: a topic whose records are found by key through the on-disk hash index.

Used for trie nodes and code, keyed by their 32-byte hash. A put of a key that already holds the
same value appends nothing. The index of the writer's uncommitted records is kept in memory
(bounded by one commit) and written into the shared index only after the logs are fsynced, so
after a crash every index entry past the commit points at a record still in the log tail, which
recovery finds and retires.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

from khipu.storage.kesque import files
from khipu.storage.kesque.cache import LRUCache
from khipu.storage.kesque.commit_file import TopicState
from khipu.storage.kesque.config import KesqueConfig
from khipu.storage.kesque.errors import StoreCorrupted
from khipu.storage.kesque.hash_index import (
    HashIndex,
    build_index,
    index_file_name,
    list_index_generations,
)
from khipu.storage.kesque.segment import FLAG_TOMBSTONE, Record, decode_record, scan_records
from khipu.storage.kesque.topic import StoreLink, TopicLog

# (key hash, segment ordinal, position, length)
IndexEntry = tuple[int, int, int, int]


class HashTopic(TopicLog):
    """Key -> value records of one topic, found through its hash index."""

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
        self.cache: LRUCache[bytes] = LRUCache(config.cache_bytes_of(name))
        self.index: HashIndex | None = None
        self.index_used = state.index_used
        self._pending: list[IndexEntry] = []
        self._pending_by_key: dict[bytes, IndexEntry] = {}
        self._superseded = False
        self._grown: HashIndex | None = None
        self._grown_used = 0

    # -- reading -------------------------------------------------------------------------------

    def get(self, key: bytes) -> bytes | None:
        """The value of `key` (a reader: as of its last seen commit; the writer: as last put),
        or None. Raises StoreCorrupted if the record found is damaged."""
        self.store.maybe_refresh()
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        record = self._newest(key)
        if record is None and self.store.refresh():
            record = self._newest(key)
        if record is None or record.tombstone:
            return None
        self.cache.put(key, record.value)
        return record.value

    def contains(self, key: bytes) -> bool:
        """Whether `key` has a value (one record read unless cached)."""
        return self.get(key) is not None

    def last_offset(self) -> int:
        """The sequence number of the last record (-1 when empty)."""
        self.store.maybe_refresh()
        return self.next_offset - 1

    def current_index(self) -> HashIndex | None:
        if self.index is None and self.state.index_generation and not self.writable:
            self.index = HashIndex(
                self.directory / index_file_name(self.state.index_generation), writable=False
            )
        return self.index

    def _newest(self, key: bytes, hashed: int = 0) -> Record | None:
        if self._pending_by_key:
            pending = self._pending_by_key.get(key)
            if pending is not None:
                return self.read_record(pending[1], pending[2], pending[3])
        index = self.current_index()
        if index is None:
            return None
        found = index.candidates(hashed or index.hash_of(key))
        if len(found) > 1:  # the newest record wins: a key that was put again or deleted
            found.sort(key=lambda entry: (entry[1], entry[2]), reverse=True)
        for _, ordinal, position, length in found:
            if self.is_visible(ordinal, position, length):
                record = self.read_record(ordinal, position, length)
                if record.key == key:
                    return record
        return None

    def read_record(self, ordinal: int, position: int, length: int) -> Record:
        """The record an index entry points at, in one pread. Raises StoreCorrupted."""
        segment = self.segment(ordinal)
        data = segment.read(position, length)
        record = decode_record(data, 0, position, segment.path, self.config.verify_reads)
        if record.length != length:
            raise StoreCorrupted(
                segment.path, position, f"index says {length} bytes, record has {record.length}"
            )
        return record

    def apply_state(self, state: TopicState) -> None:
        """Reader only: adopt a newer commit (raises FileNotFoundError if its index generation
        was already replaced again; the caller re-reads the commit file)."""
        if state.index_generation != self.state.index_generation:
            new_index = HashIndex(
                self.directory / index_file_name(state.index_generation), writable=False
            )
            # the old map is not closed: another thread may be probing it; it goes with its
            # last reference
            self.index = new_index
        if state.overwrites != self.state.overwrites:
            self.cache.clear()
        super().apply_state(state)

    # -- writing -------------------------------------------------------------------------------

    def put(self, key: bytes, value: bytes) -> None:
        """Writer only: set `key` to `value` (visible to readers after commit()).

        Raises StoreFull or StoreWriteFailed (after rolling back to the last commit).
        """
        self.require_writer()
        assert self.index is not None
        hashed = self.index.hash_of(key)
        current = self._newest(key, hashed)
        if current is not None and not current.tombstone and current.value == value:
            return
        self._append(key, value, 0, current is not None, hashed)

    def delete(self, key: bytes) -> bool:
        """Writer only: delete `key` by appending a tombstone; False if it had no value."""
        self.require_writer()
        current = self._newest(key)
        if current is None or current.tombstone:
            return False
        self._append(key, b"", FLAG_TOMBSTONE, True, 0)
        return True

    def _append(self, key: bytes, value: bytes, flags: int, superseding: bool, hashed: int) -> None:
        assert self.index is not None
        hashed = hashed or self.index.hash_of(key)
        try:
            position, length = self.append_record(self.next_offset, key, value, flags)
        except OSError as error:
            self.fail(error, self.segments[-1].path if self.segments else self.directory)
        entry = (hashed, len(self.segments) - 1, position, length)
        self._pending.append(entry)
        self._pending_by_key[key] = entry
        self.next_offset += 1
        self.records += 1
        self._superseded |= superseding
        if superseding:
            self.cache.discard(key)

    def publish_indexes(self) -> None:
        """Commit step 2: enter the fsynced records into the index (a grown copy if it would be
        too full), then msync it. Raises OSError."""
        index = self.index
        assert index is not None
        durable = self.config.fsync
        if self._pending:
            needed = self.index_used + len(self._pending)
            if needed > self.config.hash_index_max_load * index.slots:
                self._grow(index, needed)
                return
            for entry in self._pending:
                index.insert(*entry)
            self.index_used += len(self._pending)
        if durable and (self._pending or self._created_files):
            index.sync()

    def _grow(self, index: HashIndex, needed: int) -> None:
        slots_log2 = index.slots_log2 + 1
        while needed > self.config.hash_index_max_load * (1 << slots_log2) / 2:
            slots_log2 += 1
        generation = index.generation + 1
        live = (entry[1:] for entry in index.entries())
        path = self.directory / index_file_name(generation)
        self._grown, self._grown_used = build_index(
            path,
            slots_log2,
            generation,
            index.salt,
            itertools.chain(live, self._pending),
            self.config.fsync,
        )
        if self.config.fsync:
            files.fsync_directory(self.directory)

    def proposed_state(self) -> TopicState:
        index = self._grown or self.index
        assert index is not None
        return (
            super()
            .proposed_state()
            .with_changes(
                index_generation=index.generation,
                index_used=self._grown_used if self._grown else self.index_used,
                index_slots=index.slots,
                overwrites=self.state.overwrites + int(self._superseded),
            )
        )

    def committed(self, state: TopicState) -> None:
        if self._grown is not None:
            # the old map is not closed: a reader thread of this process (the RPC server on
            # the writer's store) may be probing it; it goes with its last reference
            self.index = self._grown
            self.index_used = self._grown_used
            self._grown = None
            self._remove_index_generations(keep_from=self.index.generation - 1)
        self._pending = []
        self._pending_by_key = {}
        self._superseded = False
        super().committed(state)

    def has_changes(self) -> bool:
        return bool(self._pending) or super().has_changes()

    # -- opening and recovery ------------------------------------------------------------------

    def recover(self) -> None:
        """Writer: open at the last commit, retiring index entries of uncommitted records and
        cutting the logs back. Raises StoreCorrupted if committed files are missing."""
        self.remove_temporary_files()
        generation = self.state.index_generation
        self._remove_index_generations(keep_from=generation - 1, keep_to=generation)
        if generation == 0:
            slots_log2 = self.config.hash_index_initial_slots.bit_length() - 1
            path = self.directory / index_file_name(1)
            self.index = HashIndex.create(path, slots_log2, 1, os.urandom(16))
            self.index_used = 0
            self._created_files = True
        else:
            path = self.directory / index_file_name(generation)
            if not path.exists():
                raise StoreCorrupted(path, 0, "hash index missing: run `khipu db repair`")
            self.index = HashIndex(path, writable=True)
        extra = self.open_writer_segments()
        retired = 0
        for segment, start, end in self.uncommitted_regions(extra):
            try:
                for record in scan_records(segment.read, start, end, segment.path, verify=False):
                    retired += self._retire(record.key, segment.ordinal, record.position)
            except StoreCorrupted:
                pass  # a torn tail: records are indexed only after a complete fsync
            finally:
                if segment.ordinal >= len(self.segments):
                    segment.close()
        self.discard_uncommitted(extra)
        self.index_used = self.state.index_used + retired
        if retired and self.config.fsync:
            self.index.sync()

    def _retire(self, key: bytes, ordinal: int, position: int) -> int:
        assert self.index is not None
        retired = 0
        for slot, entry_ordinal, entry_position, _ in self.index.candidates(
            self.index.hash_of(key)
        ):
            if (entry_ordinal, entry_position) == (ordinal, position):
                self.index.mark_deleted(slot)
                retired += 1
        return retired

    def _remove_index_generations(self, keep_from: int, keep_to: int | None = None) -> None:
        for generation in list_index_generations(self.directory):
            if generation < keep_from or (keep_to is not None and generation > keep_to):
                (self.directory / index_file_name(generation)).unlink(missing_ok=True)

    def iter_records(self) -> Iterator[tuple[int, Record]]:
        """(segment ordinal, record) of every visible record, in log order (for check/stats)."""
        for ordinal in range(self.visible_segments()):
            segment = self.segment(ordinal)
            end = self.visible_end(ordinal)
            for record in scan_records(segment.read, 0, end, segment.path):
                yield ordinal, record

    def reset_to_commit(self) -> None:
        self._close_indexes()
        self._pending = []
        self._pending_by_key = {}
        self._superseded = False
        self.cache.clear()
        super().reset_to_commit()

    def _close_indexes(self) -> None:
        if self.index is not None:
            self.index.close()
            self.index = None
        if self._grown is not None:
            self._grown.close()
            self._grown = None

    def close(self) -> None:
        self._close_indexes()
        super().close()
