"""The on-disk hash index of a hash topic: key hash -> (segment, position, length) of its record.

One file per generation, `hash.{generation:08d}.idx`: a 64-byte header (magic, version, log2 of
the slot count, generation, the salt of the key hash), then slots of 20 bytes

    key hash u64 (0: empty, 1: deleted)    segment ordinal u32    position u32    length u32

with linear probing from the slot named by the top bits of the 64-bit key hash. The hash is
salted per store so crafted keys cannot pile up in one place: version 2 files (made now) fold a
32-byte key's four words and multiply them with the salt (keys are keccak hashes, so this is
enough and costs a fraction of a microsecond), other keys take a keyed BLAKE2b; version 1 files
(older stores) use the keyed BLAKE2b for every key and keep it when they grow.

Every process memory-maps the file; a get is one probe in the page cache plus one pread of
exactly the record, whose key is compared, since equal hashes do not prove equal keys. The
writer only fills empty slots (location first, hash last, so a reader never sees half an entry)
and marks uncommitted entries deleted after a crash: existing entries never move while readers
use the file. Growing builds the next generation beside it; the commit file names the
generation readers must use.

A commit's entries are staged while its records are being fsynced: each goes into the empty
slot its insert would take, location written and hash DELETED, which every probe passes over;
once the records are durable, `enter_staged` writes the hashes, one store per entry. The probes
(and the page faults of the map) thus overlap the fsyncs. An entry staged for a commit that
fails or is cut by a crash stays a deleted slot.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path

from khipu.storage.kesque import files

MAGIC = b"KSQHASH1"
VERSION_BLAKE2B = 1
"""Every key hashed by a keyed BLAKE2b (stores made before version 2)."""
VERSION_WORDS = 2
"""32-byte keys hashed by folding their words with the salt (`word_key_hash`)."""
VERSION = VERSION_WORDS
"""The version new index files are made in."""
HEADER = struct.Struct("<8sIIQ16s")
SLOTS_START = 64
SLOT = struct.Struct("<QIII")
SLOT_SIZE = SLOT.size
_LOCATION = struct.Struct("<III")
_HASH = struct.Struct("<Q")
KEY_WORDS = struct.Struct("<4Q")
"""Splits a 32-byte key into the four words a version 2 hash folds."""
WORD_MULTIPLIER = 0x9E3779B97F4A7C15  # odd: every input bit reaches the top bits
MASK64 = (1 << 64) - 1
HASH_FLOOR = 2
"""Or-ed into every version 2 hash so none is EMPTY or DELETED."""
EMPTY = 0
DELETED = 1
INDEX_PREFIX = "hash."
INDEX_SUFFIX = ".idx"


def index_file_name(generation: int) -> str:
    return f"{INDEX_PREFIX}{generation:08d}{INDEX_SUFFIX}"


def list_index_generations(directory: Path) -> list[int]:
    """The generations of the hash index files in `directory`, ascending."""
    generations = []
    for name in os.listdir(directory):
        if name.startswith(INDEX_PREFIX) and name.endswith(INDEX_SUFFIX):
            middle = name[len(INDEX_PREFIX) : -len(INDEX_SUFFIX)]
            if middle.isdigit():
                generations.append(int(middle))
    return sorted(generations)


def key_hash(salt: bytes, key: bytes) -> int:
    """The version 1 hash of `key` under the index's salt; never EMPTY or DELETED."""
    value = int.from_bytes(hashlib.blake2b(key, digest_size=8, key=salt).digest(), "little")
    return value if value > DELETED else value + 2


def salt_word(salt: bytes) -> int:
    """The 64-bit word of the salt that version 2 hashes fold into 32-byte keys."""
    return int.from_bytes(salt[:8], "little")


def word_key_hash(salt: bytes, key: bytes) -> int:
    """The version 2 hash of `key` under the index's salt; never EMPTY or DELETED.

    A 32-byte key: the xor of its four little-endian words and the salt word, times an odd
    constant, mod 2**64 (the read path inlines exactly this). Any other key: keyed BLAKE2b.
    """
    if len(key) == 32:
        a, b, c, d = KEY_WORDS.unpack(key)
        folded: int = a ^ b ^ c ^ d ^ salt_word(salt)
        return ((folded * WORD_MULTIPLIER) & MASK64) | HASH_FLOOR
    digest = hashlib.blake2b(key, digest_size=8, key=salt).digest()
    return int.from_bytes(digest, "little") | HASH_FLOOR


class HashIndex:
    """One memory-mapped generation of a hash index."""

    def __init__(self, path: Path, writable: bool) -> None:
        """Map the index file at `path`. Raises OSError, or ValueError for a foreign file."""
        self.path = path
        self.writable = writable
        fd = os.open(path, os.O_RDWR if writable else os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            access = mmap.ACCESS_WRITE if writable else mmap.ACCESS_READ
            self._map = mmap.mmap(fd, size, access=access)
        finally:
            os.close(fd)
        magic, version, slots_log2, generation, salt = HEADER.unpack_from(self._map, 0)
        if magic != MAGIC or version not in (VERSION_BLAKE2B, VERSION_WORDS):
            self._map.close()
            raise ValueError(f"{path} is not a Kesque hash index (magic {magic!r}, v{version})")
        self.version = int(version)
        self.slots_log2 = int(slots_log2)
        self.slots = 1 << self.slots_log2
        self.generation = int(generation)
        self.salt = bytes(salt)
        self.salt_word = salt_word(self.salt)
        self._shift = 64 - self.slots_log2
        self._mask = self.slots - 1
        if size < SLOTS_START + self.slots * SLOT_SIZE:
            self._map.close()
            raise ValueError(f"{path} is {size} bytes, too short for {self.slots} slots")

    @classmethod
    def create(
        cls, path: Path, slots_log2: int, generation: int, salt: bytes, version: int = VERSION
    ) -> HashIndex:
        """Make an empty index file at `path`, its disk space allocated up front (a store of
        mapped files must not be sparse: on a full disk, touching a hole through the map kills
        the process with SIGBUS). Raises OSError (ENOSPC) if the disk has no room for it."""
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            with files.naming(path):
                files.allocate(fd, SLOTS_START + (1 << slots_log2) * SLOT_SIZE)
                os.pwrite(fd, HEADER.pack(MAGIC, version, slots_log2, generation, salt), 0)
        finally:
            os.close(fd)
        return cls(path, writable=True)

    def hash_of(self, key: bytes) -> int:
        """The hash of `key` in this file's version."""
        if self.version == VERSION_WORDS:
            return word_key_hash(self.salt, key)
        return key_hash(self.salt, key)

    @property
    def map(self) -> mmap.mmap:
        """The mapped file (for read paths that probe it inline: slot i is at
        SLOTS_START + i * SLOT_SIZE)."""
        return self._map

    @property
    def shift(self) -> int:
        """A hash shifted right by this many bits is its home slot."""
        return self._shift

    @property
    def mask(self) -> int:
        return self._mask

    def candidates(self, hashed: int) -> list[tuple[int, int, int, int]]:
        """(slot, segment, position, length) of every entry with this hash, in probe order."""
        found = []
        slot = hashed >> self._shift
        mask = self._mask
        unpack = SLOT.unpack_from
        index_map = self._map
        for _ in range(self.slots):
            entry_hash, segment, position, length = unpack(
                index_map, SLOTS_START + slot * SLOT_SIZE
            )
            if entry_hash == EMPTY:
                break
            if entry_hash == hashed:
                found.append((slot, segment, position, length))
            slot = (slot + 1) & mask
        return found

    def insert(self, hashed: int, segment: int, position: int, length: int) -> int:
        """Writer only: store an entry in the first empty slot of its chain; return the slot.

        Raises OverflowError if no slot is empty (the caller grows the index well before).
        """
        slot = hashed >> self._shift
        for _ in range(self.slots):
            offset = SLOTS_START + slot * SLOT_SIZE
            if _HASH.unpack_from(self._map, offset)[0] == EMPTY:
                _LOCATION.pack_into(self._map, offset + 8, segment, position, length)
                _HASH.pack_into(self._map, offset, hashed)
                return slot
            slot = (slot + 1) & self._mask
        raise OverflowError(f"{self.path}: all {self.slots} slots are used")

    def insert_many(self, entries: Iterable[tuple[int, int, int, int]]) -> int:
        """Writer only: insert every (hash, segment, position, length), as `insert` does each;
        return how many. Raises OverflowError if the index fills up."""
        return self._place(entries, None)

    def stage(self, entries: Iterable[tuple[int, int, int, int]]) -> list[int]:
        """Writer only: put the location of every (hash, segment, position, length) into the
        first empty slot of its chain, hash DELETED; return each one's slot offset (for
        `enter_staged`). Raises OverflowError if no slot is empty."""
        staged: list[int] = []
        self._place(entries, staged)
        return staged

    def _place(self, entries: Iterable[tuple[int, int, int, int]], staged: list[int] | None) -> int:
        """Fill the first empty slot of each entry's chain: location, then the hash (or, with
        a `staged` list, DELETED, and the slot's offset appended to it); return how many."""
        index_map = self._map
        shift = self._shift
        mask = self._mask
        unpack_hash = _HASH.unpack_from
        pack_location = _LOCATION.pack_into
        pack_hash = _HASH.pack_into
        keep = staged.append if staged is not None else None
        count = 0
        for hashed, segment, position, length in entries:
            slot = hashed >> shift
            offset = SLOTS_START + slot * SLOT_SIZE
            probes = 0
            while unpack_hash(index_map, offset)[0] != EMPTY:
                probes += 1
                if probes == self.slots:
                    raise OverflowError(f"{self.path}: all {self.slots} slots are used")
                slot = (slot + 1) & mask
                offset = SLOTS_START + slot * SLOT_SIZE
            pack_location(index_map, offset + 8, segment, position, length)
            if keep is None:
                pack_hash(index_map, offset, hashed)
            else:
                pack_hash(index_map, offset, DELETED)
                keep(offset)
            count += 1
        return count

    def enter_staged(self, entries: Iterable[tuple[int, int, int, int]], staged: list[int]) -> None:
        """Writer only: give every entry `stage` placed (its slot offset in `staged`) its hash."""
        index_map = self._map
        pack_hash = _HASH.pack_into
        for (hashed, _, _, _), offset in zip(entries, staged, strict=True):
            pack_hash(index_map, offset, hashed)

    def mark_deleted(self, slot: int) -> None:
        """Writer only: retire the entry in `slot`; probe chains still run through it."""
        _HASH.pack_into(self._map, SLOTS_START + slot * SLOT_SIZE, DELETED)

    def entries(self) -> Iterator[tuple[int, int, int, int, int]]:
        """(slot, hash, segment, position, length) of every live entry, in slot order."""
        chunk_slots = 1 << 14
        for first in range(0, self.slots, chunk_slots):
            start = SLOTS_START + first * SLOT_SIZE
            count = min(chunk_slots, self.slots - first)
            chunk = self._map[start : start + count * SLOT_SIZE]
            for i, (hashed, segment, position, length) in enumerate(SLOT.iter_unpack(chunk)):
                if hashed > DELETED:
                    yield first + i, hashed, segment, position, length

    def live_entries(self) -> Iterator[tuple[int, int, int, int]]:
        """(hash, segment, position, length) of every live entry, in slot order (what a grown
        generation takes: one filtered unpack per slot, no slot numbers)."""
        chunk_slots = 1 << 14
        for first in range(0, self.slots, chunk_slots):
            start = SLOTS_START + first * SLOT_SIZE
            count = min(chunk_slots, self.slots - first)
            chunk = self._map[start : start + count * SLOT_SIZE]
            yield from [entry for entry in SLOT.iter_unpack(chunk) if entry[0] > DELETED]

    def count_used_slots(self) -> int:
        """Slots not empty (live or deleted), by a full scan."""
        used = 0
        chunk_slots = 1 << 14
        for first in range(0, self.slots, chunk_slots):
            start = SLOTS_START + first * SLOT_SIZE
            count = min(chunk_slots, self.slots - first)
            chunk = self._map[start : start + count * SLOT_SIZE]
            used += sum(1 for entry in SLOT.iter_unpack(chunk) if entry[0] != EMPTY)
        return used

    def sync(self) -> None:
        """Writer only: write the entries made through the map to the disk: an fsync of the
        file, which covers the mapped pages and, unlike mmap.flush (msync), releases the GIL,
        so it may run on another thread while the writer goes on. Raises OSError."""
        with files.naming(self.path):
            fd = os.open(self.path, os.O_RDONLY)
            try:
                files.fsync(fd)
            finally:
                os.close(fd)

    def close(self) -> None:
        self._map.close()


def build_index(
    path: Path,
    slots_log2: int,
    generation: int,
    salt: bytes,
    entries: Iterable[tuple[int, int, int, int]],
    durable: bool,
    version: int = VERSION,
) -> tuple[HashIndex, int]:
    """Write a new index generation holding `entries` (hash, segment, position, length, hashed
    as `version` does); return it and the number of entries.

    Built under a temporary name and renamed into place, so a crash leaves no half-built file
    under a generation's name. Raises OSError.
    """
    temporary = path.with_name(path.name + ".tmp")
    index = HashIndex.create(temporary, slots_log2, generation, salt, version)
    try:
        count = index.insert_many(entries)
        if durable:
            index.sync()
    except BaseException:
        index.close()
        os.unlink(temporary)
        raise
    index.close()
    os.replace(temporary, path)
    return HashIndex(path, writable=True), count
