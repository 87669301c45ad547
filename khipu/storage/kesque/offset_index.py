"""The sparse offset index of a number-topic segment (`{first_offset:020d}.index`, like Kafka's).

Entries are (offset - base offset, position) pairs, u32 each, one whenever at least
`interval` bytes were appended since the previous entry, and always one for the segment's first
record. The file is preallocated (sparse) to its full size and memory-mapped, so readers map it
once; an unused entry is all zeros, which is never a valid entry after the first since positions
strictly increase. Entries at or past a reader's committed end are ignored, so the writer may
add them before it commits.
"""

from __future__ import annotations

import mmap
import os
import struct
from pathlib import Path

from khipu.storage.kesque import files

ENTRY = struct.Struct("<II")
INDEX_SUFFIX = ".index"


def offset_index_file_name(base_offset: int) -> str:
    return f"{base_offset:020d}{INDEX_SUFFIX}"


class OffsetIndex:
    """The memory-mapped offset index of one segment."""

    def __init__(self, path: Path, writable: bool, capacity: int = 0, create: bool = False) -> None:
        """Open (or with `create`, make with room for `capacity` entries) the index at `path`."""
        self.path = path
        self.writable = writable
        flags = os.O_RDWR if writable else os.O_RDONLY
        if create:
            flags |= os.O_CREAT | os.O_EXCL
        fd = os.open(path, flags, 0o644)
        try:
            if create:
                with files.naming(path):
                    files.allocate(fd, max(capacity, 1) * ENTRY.size)
            size = os.fstat(fd).st_size
            self.capacity = size // ENTRY.size
            access = mmap.ACCESS_WRITE if writable else mmap.ACCESS_READ
            self._map = mmap.mmap(fd, self.capacity * ENTRY.size, access=access)
        finally:
            os.close(fd)
        self.count = self._count_entries() if writable and not create else 0
        """Writer only: entries in use (an empty index reads as one (0, 0) entry until the
        writer truncates it to its segment's committed end)."""

    def _entry(self, i: int) -> tuple[int, int]:
        relative, position = ENTRY.unpack_from(self._map, i * ENTRY.size)
        return int(relative), int(position)

    def _count_entries(self) -> int:
        low, high = 0, self.capacity
        while low < high:  # entries in use are a prefix: find its length
            middle = (low + high) // 2
            if middle == 0 or self._entry(middle)[1] > 0:
                low = middle + 1
            else:
                high = middle
        return low

    def last_position(self) -> int | None:
        """Writer only: the position of the last entry, or None when empty."""
        return self._entry(self.count - 1)[1] if self.count else None

    def append(self, relative_offset: int, position: int) -> bool:
        """Writer only: add an entry; False (and nothing written) when the index is full."""
        if self.count >= self.capacity:
            return False
        ENTRY.pack_into(self._map, self.count * ENTRY.size, relative_offset, position)
        self.count += 1
        return True

    def lookup(self, relative_offset: int, end: int) -> int:
        """The position of the last entry at or before `relative_offset` among entries before
        byte `end`; 0 (the first record) when there is none."""
        low, high = 0, self.capacity
        while low < high:
            middle = (low + high) // 2
            entry_offset, position = self._entry(middle)
            valid = (middle == 0 or position > 0) and position < end
            if valid and entry_offset <= relative_offset:
                low = middle + 1
            else:
                high = middle
        return self._entry(low - 1)[1] if low else 0

    def entries(self, end: int) -> list[tuple[int, int, int]]:
        """(entry number, relative offset, position) of the entries before byte `end`."""
        found = []
        for i in range(self.capacity):
            relative, position = self._entry(i)
            if (i > 0 and position == 0) or position >= end:
                break
            found.append((i, relative, position))
        return found

    def truncate(self, end: int) -> None:
        """Writer only: drop the entries at or past byte `end` of the segment."""
        while self.count and self._entry(self.count - 1)[1] >= end:
            self.count -= 1
            ENTRY.pack_into(self._map, self.count * ENTRY.size, 0, 0)

    def rebuild_from(self, start: int, entries: list[tuple[int, int]]) -> None:
        """Writer: replace the entries at or past byte `start` with `entries` ((relative
        offset, position) pairs, positions ascending from `start`). The entries before `start`
        must be whole (durable from earlier commits); past them anything may be on disk (a
        crash cut an msync short), so every nonzero byte after them is cleared."""
        low, high = 0, self.capacity
        while low < high:  # the valid prefix before `start`
            middle = (low + high) // 2
            position = self._entry(middle)[1]
            if (middle == 0 or position > 0) and position < start:
                low = middle + 1
            else:
                high = middle
        cut = low * ENTRY.size
        tail = self._map[cut:]
        dirty = len(tail.rstrip(b"\0"))
        if dirty:
            self._map[cut : cut + dirty] = bytes(dirty)
        self.count = low
        for relative, position in entries:
            if not self.append(relative, position):
                break

    def sync(self) -> None:
        """Writer only: msync the entries to disk. Raises OSError."""
        with files.naming(self.path):
            self._map.flush()

    def close(self) -> None:
        self._map.close()
