"""e2store: the type-length-value container under era and era1 history files.

Each entry is an 8-byte header — a 2-byte type, a 4-byte little-endian length of the data that
follows, 2 reserved bytes that must be zero — then the data (status-im/nimbus-eth2 docs/e2store.md).
A type is written here as the little-endian integer of its two bytes, as go-ethereum does: the
era1 Version entry, bytes [0x65, 0x32], is type 0x3265.

The reader maps the file and checks every header it touches: a bad reserved field, an entry that
runs past the end of the file, or an unexpected type raises Era1FormatError with the offset.
"""

from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

HEADER_SIZE = 8
_HEADER = struct.Struct("<HIH")


class Era1FormatError(Exception):
    """The bytes of an e2store/era1 file break the format: where, and what is wrong.

    `offset` is the byte position of the entry (or field) at fault; `block_number` is set when the
    entry belongs to a known block.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        offset: int,
        reason: str,
        block_number: int | None = None,
    ) -> None:
        self.path = Path(path)
        self.offset = offset
        self.reason = reason
        self.block_number = block_number
        where = f"{self.path} at offset {offset}"
        if block_number is not None:
            where += f" (block {block_number})"
        super().__init__(f"{where}: {reason}")


@dataclass(frozen=True)
class Entry:
    """One e2store entry: its type, where its header starts, and its data."""

    type: int
    offset: int
    value: bytes

    @property
    def end(self) -> int:
        """The offset just past this entry, where the next one begins."""
        return self.offset + HEADER_SIZE + len(self.value)


class E2StoreReader:
    """Random and sequential access to the entries of one e2store file, memory-mapped.

    Use as a context manager or call close(). Raises Era1FormatError (from the constructor) for
    an empty file and OSError if the file cannot be opened.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._file = open(self.path, "rb")  # noqa: SIM115 -- closed by close()
        try:
            self.size = os.fstat(self._file.fileno()).st_size
            if self.size == 0:
                raise Era1FormatError(self.path, 0, "empty file")
            self._map = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)
        except BaseException:
            self._file.close()
            raise

    def close(self) -> None:
        """Unmap and close the file; entries already returned stay valid (they are copies)."""
        self._map.close()
        self._file.close()

    def __enter__(self) -> E2StoreReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def header_at(self, offset: int) -> tuple[int, int]:
        """The (type, data length) of the entry whose header starts at `offset`.

        Raises Era1FormatError if the header or its data would run past the end of the file, or
        the reserved bytes are not zero.
        """
        if offset < 0 or offset + HEADER_SIZE > self.size:
            raise Era1FormatError(
                self.path, offset, f"truncated entry header (file has {self.size} bytes)"
            )
        entry_type, length, reserved = _HEADER.unpack_from(self._map, offset)
        if reserved != 0:
            raise Era1FormatError(self.path, offset, f"reserved header bytes are 0x{reserved:04x}")
        if offset + HEADER_SIZE + length > self.size:
            raise Era1FormatError(
                self.path,
                offset,
                f"entry of type 0x{entry_type:04x} claims {length} bytes, "
                f"only {self.size - offset - HEADER_SIZE} remain",
            )
        return entry_type, length

    def entry_at(self, offset: int, expected_type: int | None = None) -> Entry:
        """The entry at `offset`; if `expected_type` is given, the entry must be of that type.

        Raises Era1FormatError as header_at does, or on a type other than the expected one.
        """
        entry_type, length = self.header_at(offset)
        if expected_type is not None and entry_type != expected_type:
            raise Era1FormatError(
                self.path,
                offset,
                f"expected an entry of type 0x{expected_type:04x}, found 0x{entry_type:04x}",
            )
        start = offset + HEADER_SIZE
        return Entry(entry_type, offset, self._map[start : start + length])

    def entries(self, offset: int = 0) -> Iterator[Entry]:
        """Every entry from `offset` to the end of the file, in file order.

        Raises Era1FormatError at the first malformed or truncated entry.
        """
        while offset < self.size:
            entry = self.entry_at(offset)
            yield entry
            offset = entry.end

    def read_u64(self, offset: int) -> int:
        """A little-endian uint64 at `offset` (for index fields inside entries).

        Raises Era1FormatError if it would run past the end of the file.
        """
        if offset < 0 or offset + 8 > self.size:
            raise Era1FormatError(self.path, offset, "uint64 field past the end of the file")
        value: int = struct.unpack_from("<Q", self._map, offset)[0]
        return value


def encode_entry(entry_type: int, value: bytes) -> bytes:
    """The bytes of one e2store entry: header then data.

    Raises ValueError if the type does not fit 2 bytes or the data 2**32-1 bytes.
    """
    if not 0 <= entry_type < 2**16:
        raise ValueError(f"entry type {entry_type} does not fit two bytes")
    if len(value) >= 2**32:
        raise ValueError(f"entry data of {len(value)} bytes is too long")
    return _HEADER.pack(entry_type, len(value), 0) + value
