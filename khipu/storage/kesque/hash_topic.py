"""HashTopic: a topic whose records are found by key through the on-disk hash index.

Used for trie nodes and code, keyed by their 32-byte hash. A put of a key that already holds the
same value appends nothing. The index of the writer's uncommitted records is kept in memory
(bounded by one commit) and written into the shared index only after the logs are fsynced, so
after a crash every index entry past the commit points at a record still in the log tail, which
recovery finds and retires.

The get of a key is the hot path of the whole node, so it has a lean variant (`get`, over a
`ReadView` snapshot): hash the key inline, probe the mapped index with one unpack per slot, one
pread of exactly the record, one header unpack, the key compared and the CRC32C checked (C,
SSE4.2). It stops at the first entry whose record has the key, which is right
only while no key was ever superseded or deleted (always so for content-addressed trie nodes and
code); otherwise, and for version 1 indexes, gets take the general path (`_newest`), which
orders every candidate entry. `put_many` is the matching lean write path.
"""

from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

from khipu.storage.kesque import files
from khipu.storage.kesque.cache import LRUCache
from khipu.storage.kesque.commit_file import TopicState
from khipu.storage.kesque.config import KesqueConfig
from khipu.storage.kesque.crc32c import crc32c
from khipu.storage.kesque.errors import StoreCorrupted
from khipu.storage.kesque.files import READS
from khipu.storage.kesque.hash_growth import IndexGrowth
from khipu.storage.kesque.hash_index import (
    EMPTY,
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
    list_index_generations,
)
from khipu.storage.kesque.hash_recovery import replay_committed, retire_uncommitted
from khipu.storage.kesque.index_sync import IndexSync
from khipu.storage.kesque.segment import (
    BODY_HEADER,
    FLAG_TOMBSTONE,
    HEADER_SIZE,
    LENGTH_CRC,
    MAX_KEY_BYTES,
    RECORD_HEADER,
    WRITE_BUFFER_BYTES,
    Record,
    decode_record,
    scan_records,
)
from khipu.storage.kesque.topic import StoreLink, TopicLog

# (key hash, segment ordinal, position, length)
IndexEntry = tuple[int, int, int, int]

_unpack_slot = SLOT.unpack_from
_unpack_hash = struct.Struct("<Q").unpack_from
_unpack_header = RECORD_HEADER.unpack_from
_unpack_words = KEY_WORDS.unpack
_pack_body_header = BODY_HEADER.pack
_pack_body_header_32 = struct.Struct(BODY_HEADER.format + "32s").pack
_pack_length_crc = LENGTH_CRC.pack
_pread = os.pread


class ReadView(NamedTuple):
    """What the lean get needs, fixed per commit (replaced whole, so a reader thread never
    sees half of an update)."""

    index_map: mmap.mmap
    shift: int
    mask: int
    salt_word: int
    fds: tuple[int, ...]
    """The descriptor of each committed segment, by ordinal."""
    last_ordinal: int
    end: int
    """Committed bytes of the last segment."""
    verify: bool
    hash_index: HashIndex


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
        self._view: ReadView | None = None
        self._index_sync = IndexSync(name, state.replay_from, config.index_sync_bytes)
        self._staged: list[int] | None = None
        self._growth = IndexGrowth(name, directory, config)

    # -- reading -------------------------------------------------------------------------------

    def get(self, key: bytes) -> bytes | None:
        """The value of `key` (a reader: as of the newest commit; the writer: as last put), or
        None. Raises StoreCorrupted if the record found is damaged."""
        if self.commit_counter[0] != self.seen_counter:
            self.store.follow_commits()
        if self._pending_by_key:
            pending = self._pending_by_key.get(key)
            if pending is not None:
                record = self.read_record(pending[1], pending[2], pending[3])
                return None if record.tombstone else record.value
        cache = self.cache
        caching = cache.capacity_bytes
        if caching:
            cached = cache.get(key)
            if cached is not None:
                return cached
        view = self._view
        if view is None:
            return self._get_general(key)
        # the lean path: see the module docstring
        index_map, shift, mask, salt, fds, last_ordinal, end, verify, hash_index = view
        if len(key) == 32:
            a, b, c, d = _unpack_words(key)
            hashed = (((a ^ b ^ c ^ d ^ salt) * WORD_MULTIPLIER) & MASK64) | HASH_FLOOR
        else:
            hashed = hash_index.hash_of(key)
        slot = hashed >> shift
        while True:
            entry_hash, ordinal, position, length = _unpack_slot(
                index_map, SLOTS_START + slot * SLOT_SIZE
            )
            if entry_hash == hashed:
                if ordinal < last_ordinal or (ordinal == last_ordinal and position + length <= end):
                    READS.calls += 1
                    data = _pread(fds[ordinal], length, position)
                    if len(data) != length:
                        return self._get_general(key)  # raises the typed error
                    record_length, crc, _, _, key_length = _unpack_header(data)
                    value_start = HEADER_SIZE + key_length
                    if data[HEADER_SIZE:value_start] == key:
                        if record_length != length or (verify and crc32c(data[8:]) != crc):
                            return self._get_general(key)  # raises the typed error
                        value = data[value_start:]
                        if caching:
                            cache.put(key, value)
                        return value
            elif entry_hash == EMPTY:
                if self.refresh_on_miss and self.store.refresh():
                    return self.get(key)
                return None
            slot = (slot + 1) & mask

    def _get_general(self, key: bytes) -> bytes | None:
        """`get` by ordering every candidate entry (superseded keys, version 1 indexes)."""
        record = self._newest(key)
        if record is None and self.refresh_on_miss and self.store.refresh():
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
        self.follow()
        return self.next_offset - 1

    def _update_view(self) -> None:
        """Rebuild the lean get's snapshot after the index, the segments or the commit changed
        (None where the lean path would be wrong: see the module docstring)."""
        index = self.index if self.writable else self.current_index()
        state = self.state
        if (
            self.closed
            or index is None
            or index.version != VERSION_WORDS
            or state.may_have_superseded
            or not self.config.lean_reads
        ):
            self._view = None
            return
        if state.segments:
            self.segment(state.segments - 1)  # a reader opens the committed segments now
        fds = tuple(segment.fd for segment in self.segments[: state.segments])
        self._view = ReadView(
            index.map,
            index.shift,
            index.mask,
            index.salt_word,
            fds,
            state.segments - 1,
            state.end,
            self.config.verify_reads,
            index,
        )

    def start_reading(self) -> None:
        """Reader: map the index and open the committed segments (called once at open). A
        missing or foreign index file is left for the first get (or `khipu db check`) to
        report."""
        try:
            self._update_view()
        except (OSError, ValueError):
            self._view = None

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
        self._update_view()

    # -- writing -------------------------------------------------------------------------------

    def put(self, key: bytes, value: bytes) -> None:
        """Writer only: set `key` to `value` (visible to readers after commit()).

        Raises StoreFull or StoreWriteFailed (after rolling back to the last commit).
        """
        self.put_many(((key, value),))

    def put_many(self, items: Iterable[tuple[bytes, bytes]]) -> None:
        """Writer only: put every (key, value) in order, exactly as `put` of each would.

        A key new to the topic (no index entry with its hash, not put since the commit) is
        encoded straight into the active segment's buffer; any other goes through the general
        path, which compares values and supersedes. Raises ValueError for a key longer than
        64 KiB (records before it stay put), StoreFull or StoreWriteFailed (after rolling back
        to the last commit).
        """
        self.require_writer()
        index = self.index
        assert index is not None
        index_map, shift, mask, salt = index.map, index.shift, index.mask, index.salt_word
        words = index.version == VERSION_WORDS
        pending, pending_by_key = self._pending, self._pending_by_key
        append_entry = pending.append
        segment_bytes = self.segment_bytes
        # the loop keeps its counters in locals and hands them back before anything that
        # reads them (the general path, a roll) and at the end, whatever happens
        next_offset = self.next_offset
        added = 0
        failed = False
        segment = self.segments[-1] if self.segments else None
        buffer = segment.buffer if segment is not None else bytearray()
        position = segment.end if segment is not None else 0
        ordinal = segment.ordinal if segment is not None else -1
        if segment is not None:
            self._dirty.add(ordinal)
        try:
            for key, value in items:
                key_length = len(key)
                if key_length == 32 and words:
                    a, b, c, d = _unpack_words(key)
                    hashed = (((a ^ b ^ c ^ d ^ salt) * WORD_MULTIPLIER) & MASK64) | HASH_FLOOR
                else:
                    hashed = index.hash_of(key)
                known = key in pending_by_key
                if not known:  # a committed entry with this hash? (almost never for a new key)
                    slot = hashed >> shift
                    while True:
                        entry_hash = _unpack_hash(index_map, SLOTS_START + slot * SLOT_SIZE)[0]
                        if entry_hash in (hashed, EMPTY):
                            known = entry_hash == hashed
                            break
                        slot = (slot + 1) & mask
                if known:
                    self.next_offset, self.records = next_offset, self.records + added
                    added = 0
                    self._put_general(key, value, hashed)
                    next_offset = self.next_offset
                    segment = self.segments[-1]
                    buffer, position, ordinal = segment.buffer, segment.end, segment.ordinal
                    continue
                if key_length > MAX_KEY_BYTES:
                    raise ValueError(f"key of {key_length} bytes is longer than {MAX_KEY_BYTES}")
                length = HEADER_SIZE + key_length + len(value)
                if segment is None or (position > 0 and position + length > segment_bytes):
                    self.roll(next_offset)
                    segment = self.segments[-1]
                    buffer, position, ordinal = segment.buffer, 0, segment.ordinal
                    self._dirty.add(ordinal)
                if key_length == 32:
                    body = _pack_body_header_32(0, next_offset, 32, key) + value
                else:
                    body = _pack_body_header(0, next_offset, key_length) + key + value
                buffer += _pack_length_crc(length, crc32c(body))
                buffer += body
                entry = (hashed, ordinal, position, length)
                append_entry(entry)
                pending_by_key[key] = entry
                position += length
                next_offset += 1
                added += 1
                if len(buffer) >= WRITE_BUFFER_BYTES:
                    segment.flush()
        except OSError as error:
            failed = True  # the rollback puts the counters back at the commit
            self.fail(error, self.segments[-1].path if self.segments else self.directory)
        finally:
            if not failed:
                self.next_offset, self.records = next_offset, self.records + added

    def _put_general(self, key: bytes, value: bytes, hashed: int) -> None:
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

    def write_out(self) -> None:
        """Commit step 1: write out the segments; if the new entries would fill the index too
        much, switch to the next generation at this commit (the entries go into it at step 3;
        built now, or adopted from a child that built it meanwhile: hash_growth.py). Raises
        OSError."""
        super().write_out()
        index = self.index
        assert index is not None
        if self._pending and self._grown is None:
            needed = self.index_used + len(self._pending)
            grown = self._growth.step(index, needed, self.state, self.segments)
            if grown is not None:
                self._grown, self._grown_used = grown.index, grown.used
                if grown.replay_from is not None:  # what the grown file lacks on disk
                    self._index_sync.replaced(grown.replay_from)

    def stage_index(self) -> None:
        """Commit step 2, while the flushes run on other threads: write every new entry's
        location into the slot its insert will take, with the hash DELETED, so that no get
        finds it yet (HashIndex.stage); step 3 gives them their hashes. Raises OverflowError
        if the index is full (it grew at step 1 to make room)."""
        index = self._grown or self.index
        assert index is not None
        self._staged = index.stage(self._pending) if self._pending else None

    def enter_index(self) -> None:
        """Commit step 3 (the records and the commit file are durable): give the entries staged
        at step 2 their hashes; start an fsync of the index in the background when
        `index_sync_bytes` of records were entered since the last one began. Until it is done,
        the commit file names where the records begin whose entries may not be durable, and a
        writer re-enters them at open (hash_recovery.py)."""
        index = self._grown or self.index
        assert index is not None
        pending = self._pending
        if pending:
            assert self._staged is not None  # step 2 staged every pending entry
            index.enter_staged(pending, self._staged)
            self._staged = None
            if self._grown is not None:
                self._grown_used += len(pending)
            else:
                self.index_used += len(pending)
            self._index_sync.entered((pending[0][1], pending[0][2]), sum(e[3] for e in pending))
        if self.config.fsync:
            self._index_sync.maybe_start(index, now=self._created_files)
        else:  # the page cache holds the entries of earlier commits
            self._index_sync.not_durable()

    def settle_index(self) -> bool:
        """Writer closing: make the index durable if committed entries may not be yet; True if
        the commit file should now say so (no replay at the next open). Raises OSError."""
        if self.index is None or not self.config.fsync:
            return False
        self._index_sync.wait()
        if self._index_sync.replay_from is None and self.state.replay_from is None:
            return False
        self.index.sync()
        self._index_sync.reset(None)
        return True

    def proposed_state(self, sequence: int) -> TopicState:
        index = self._grown or self.index
        assert index is not None
        replay = self._index_sync.replay_from
        if replay is None and self._pending:  # entered after the commit file is durable
            replay = self._pending[0][1], self._pending[0][2]
        return (
            super()
            .proposed_state(sequence)
            .with_changes(
                index_generation=index.generation,
                index_used=(self._grown_used if self._grown else self.index_used)
                + len(self._pending),
                index_slots=index.slots,
                overwrites=self.state.overwrites + int(self._superseded),
                superseded=int(self.state.may_have_superseded or self._superseded),
                replay_segment=replay[0] if replay else -1,
                replay_position=replay[1] if replay else 0,
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
        self._update_view()

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
            if self.config.fsync:  # durable before any commit file names it
                self.index.sync()
                files.fsync_directory(self.directory)
        else:
            path = self.directory / index_file_name(generation)
            if not path.exists():
                raise StoreCorrupted(path, 0, "hash index missing: run `khipu db repair`")
            self.index = HashIndex(path, writable=True)
        extra = self.open_writer_segments()
        regions = self.uncommitted_regions(extra)
        try:
            retired = retire_uncommitted(self.index, regions)
        finally:
            for segment, _, _ in regions:
                if segment.ordinal >= len(self.segments):
                    segment.close()
        self.discard_uncommitted(extra)
        self.index_used = self.state.index_used + retired
        replay = self.state.replay_from
        if replay is not None and self.segments:
            replay_committed(self.index, self.segments, replay, self.state.end)
        durable_to_commit = True
        if (retired or replay) and self.config.fsync:
            try:
                self.index.sync()
            except OSError:  # the commit file keeps naming the replay point
                durable_to_commit = False
        self._index_sync.reset(None if durable_to_commit else replay)
        self._update_view()

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
        self._growth.stop()  # before recover() removes the temporary files
        # slots staged in the index for the failed commit stay there as deleted ones
        staged = len(self._staged or ()) if self._grown is None else 0
        self._staged = None
        self._close_indexes()
        self._pending = []
        self._pending_by_key = {}
        self._superseded = False
        self.cache.clear()
        super().reset_to_commit()
        self.index_used += staged

    def _close_indexes(self) -> None:
        self._view = None
        self._index_sync.wait()
        if self.index is not None:
            self.index.close()
            self.index = None
        if self._grown is not None:
            self._grown.close()
            self._grown = None

    def close(self) -> None:
        self._growth.stop()
        self._close_indexes()
        self._index_sync.close()
        super().close()
