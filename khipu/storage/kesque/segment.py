"""Segment files (`{first_offset:020d}.log`) and the records they hold.

A record is laid out as

    length  u32   bytes of the whole record, this header included
    crc     u32   CRC32C of everything after this field
    flags   u8    bit 0: tombstone (the key was deleted)
    offset  u64   Kafka-style offset: a sequence number, or the block number of number topics
    key_len u16
    key     key_len bytes
    value   the rest

all little-endian. A segment is append-only; the writer buffers appends in memory and writes them
out at `flush()`, and bytes past the committed end are invisible to readers.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

from khipu.storage.kesque import files
from khipu.storage.kesque.crc32c import crc32c
from khipu.storage.kesque.errors import StoreCorrupted

RECORD_HEADER = struct.Struct("<IIBQH")
HEADER_SIZE = RECORD_HEADER.size
LENGTH_CRC = struct.Struct("<II")
BODY_HEADER = struct.Struct("<BQH")
FLAG_TOMBSTONE = 1
MAX_RECORD_BYTES = (1 << 31) - 1
MAX_KEY_BYTES = (1 << 16) - 1
LOG_SUFFIX = ".log"
WRITE_BUFFER_BYTES = 1 << 20


class TornRecord(StoreCorrupted):
    """A record runs past the end of the readable bytes (a crash cut it short)."""


class Record(NamedTuple):
    """One decoded record and where it lies in its segment."""

    position: int
    length: int
    crc: int
    offset: int
    key: bytes
    value: bytes
    flags: int

    @property
    def end(self) -> int:
        return self.position + self.length

    @property
    def tombstone(self) -> bool:
        return bool(self.flags & FLAG_TOMBSTONE)


def encode_record(offset: int, key: bytes, value: bytes, flags: int = 0) -> bytes:
    """The bytes of a record; raises ValueError if the key or the record is too large."""
    if len(key) > MAX_KEY_BYTES:
        raise ValueError(f"key of {len(key)} bytes is longer than {MAX_KEY_BYTES}")
    body = BODY_HEADER.pack(flags, offset, len(key)) + key + value
    length = 8 + len(body)
    if length > MAX_RECORD_BYTES:
        raise ValueError(f"record of {length} bytes is larger than {MAX_RECORD_BYTES}")
    return LENGTH_CRC.pack(length, crc32c(body)) + body


def decode_record(
    buffer: bytes, start: int, position: int, file: Path, verify: bool = True
) -> Record:
    """Decode the record at `buffer[start:]`, which lies at byte `position` of `file`.

    Raises TornRecord if the buffer ends inside the record and StoreCorrupted for an impossible
    length or (with `verify`) a CRC mismatch.
    """
    available = len(buffer) - start
    if available < HEADER_SIZE:
        raise TornRecord(file, position, f"only {available} bytes of a record header")
    length, crc, flags, offset, key_length = RECORD_HEADER.unpack_from(buffer, start)
    if length < HEADER_SIZE + key_length:
        raise StoreCorrupted(file, position, f"record length {length} is impossible")
    if length > available:
        raise TornRecord(file, position, f"record of {length} bytes, only {available} present")
    end = start + length
    if verify and crc32c(buffer[start + 8 : end]) != crc:
        raise StoreCorrupted(file, position, "record CRC32C mismatch")
    key_end = start + HEADER_SIZE + key_length
    key = buffer[start + HEADER_SIZE : key_end]
    return Record(position, length, crc, offset, key, buffer[key_end:end], flags)


def record_crc_ok(record: Record) -> bool:
    """Whether a record decoded without verification matches its CRC32C."""
    body = BODY_HEADER.pack(record.flags, record.offset, len(record.key)) + record.key
    return crc32c(body + record.value) == record.crc


def segment_file_name(base_offset: int) -> str:
    return f"{base_offset:020d}{LOG_SUFFIX}"


def list_segment_bases(directory: Path) -> list[int]:
    """The base offsets of the segment files in `directory`, ascending."""
    bases = []
    for name in os.listdir(directory):
        if name.endswith(LOG_SUFFIX) and name[: -len(LOG_SUFFIX)].isdigit():
            bases.append(int(name[: -len(LOG_SUFFIX)]))
    return sorted(bases)


class Segment:
    """One log file of a topic: pread access for everyone, buffered appends for the writer."""

    def __init__(
        self, directory: Path, base_offset: int, ordinal: int, writable: bool, create: bool = False
    ) -> None:
        self.path = directory / segment_file_name(base_offset)
        self.base_offset = base_offset
        self.ordinal = ordinal
        self.writable = writable
        flags = os.O_RDWR if writable else os.O_RDONLY
        if create:
            flags |= os.O_CREAT | os.O_EXCL
        self.fd = os.open(self.path, flags, 0o644)
        self.size = os.fstat(self.fd).st_size
        """Bytes written to the file (the buffer comes after them)."""
        self.buffer = bytearray()
        """Appended bytes not written to the file yet. The writer may extend it directly (it is
        never replaced, only cleared); whoever does calls `flush()` once it passes
        WRITE_BUFFER_BYTES."""
        self.crc = 0
        """Writer: CRC32C of the bytes written out since the topic's last commit (continued
        from the previous segment's when the topic rolled into this one)."""

    @property
    def end(self) -> int:
        """Where the next appended record will start."""
        return self.size + len(self.buffer)

    def append(self, record: bytes) -> int:
        """Buffer `record` at the end of the segment and return its position. Raises OSError."""
        position = self.end
        self.buffer += record
        if len(self.buffer) >= WRITE_BUFFER_BYTES:
            self.flush()
        return position

    def flush(self) -> None:
        """Write the buffered records to the file (not yet durable). Raises OSError."""
        if self.buffer:
            with files.naming(self.path):
                files.write_at(self.fd, self.buffer, self.size)
            self.crc = crc32c(self.buffer, self.crc)
            self.size += len(self.buffer)
            self.buffer.clear()

    def sync(self) -> None:
        """Flush and fsync (the flush is a no-op when the caller flushed already, so the fsync
        may run on another thread). Raises OSError."""
        self.flush()
        with files.naming(self.path):
            files.fsync(self.fd)

    def read(self, position: int, length: int) -> bytes:
        """`length` bytes at `position` (fewer at the end), from the file or the write buffer."""
        if position >= self.size and self.buffer:
            start = position - self.size
            return bytes(self.buffer[start : start + length])
        if position + length > self.size and self.buffer:
            self.flush()
        return files.read_at(self.fd, length, position)

    def truncate(self, size: int) -> None:
        """Drop everything from `size` on, buffered or written."""
        self.buffer.clear()
        if self.size != size:
            os.ftruncate(self.fd, size)
            self.size = size

    def refresh_size(self) -> None:
        """Re-read the file size (a reader does so when a commit moved the segment's end)."""
        self.size = os.fstat(self.fd).st_size

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def scan_records(
    read: Callable[[int, int], bytes],
    start: int,
    end: int,
    file: Path,
    verify: bool = True,
    chunk_bytes: int = 1 << 20,
) -> Iterator[Record]:
    """Every record from byte `start` up to `end`, read through `read(position, length)`.

    Raises TornRecord where a record runs past `end` and StoreCorrupted at a bad record.
    """
    position = start
    buffer = b""
    buffer_start = start
    while position < end:
        offset_in_buffer = position - buffer_start
        try:
            record = decode_record(buffer, offset_in_buffer, position, file, verify)
        except TornRecord:
            buffer = read(position, min(max(chunk_bytes, HEADER_SIZE), end - position))
            buffer_start = position
            if len(buffer) >= HEADER_SIZE:
                length = RECORD_HEADER.unpack_from(buffer, 0)[0]
                if len(buffer) < length <= end - position:
                    buffer += read(position + len(buffer), length - len(buffer))
            record = decode_record(buffer, 0, position, file, verify)
        yield record
        position += record.length


def byte_ranges(
    segments: Sequence[Segment], first: tuple[int, int], count: int, end: int
) -> Iterator[tuple[Segment, int, int]]:
    """(segment, start, end) over the log bytes from `first` (segment ordinal, position) up
    to byte `end` of segment `count - 1`; each segment in between to its size."""
    first_ordinal, first_position = first
    for segment in segments[first_ordinal:count]:
        start = first_position if segment.ordinal == first_ordinal else 0
        yield segment, start, end if segment.ordinal == count - 1 else segment.size
