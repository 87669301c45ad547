"""Block files: geth-style exports (concatenated RLP blocks), read without loading them whole."""

from __future__ import annotations

import mmap
from collections.abc import Iterator
from pathlib import Path


class MalformedBlockFile(ValueError):
    """A block file is not a sequence of RLP lists; names the file and byte offset."""


def _item_span(data: mmap.mmap | bytes, offset: int, path: Path) -> tuple[int, int]:
    """(start of payload, end of item) of the RLP list at `offset`."""
    prefix = data[offset]
    if prefix < 0xC0:
        raise MalformedBlockFile(f"{path}: byte {offset}: expected an RLP list, got 0x{prefix:02x}")
    if prefix <= 0xF7:
        return offset + 1, offset + 1 + (prefix - 0xC0)
    length_size = prefix - 0xF7
    start = offset + 1 + length_size
    if start > len(data):
        raise MalformedBlockFile(f"{path}: byte {offset}: truncated RLP length")
    length = int.from_bytes(data[offset + 1 : start], "big")
    return start, start + length


def iter_rlp_blocks(path: Path) -> Iterator[bytes]:
    """Yield the RLP bytes of each block in a geth-style export, in file order.

    Raises MalformedBlockFile if the file is not a sequence of complete RLP lists.
    """
    path = Path(path)
    with path.open("rb") as handle:
        if path.stat().st_size == 0:
            return
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            offset = 0
            while offset < len(data):
                _start, end = _item_span(data, offset, path)
                if end > len(data):
                    raise MalformedBlockFile(
                        f"{path}: byte {offset}: block runs past the end of the file"
                    )
                yield bytes(data[offset:end])
                offset = end


def count_rlp_blocks(path: Path) -> int:
    """The number of blocks in a geth-style export, found by walking the length prefixes."""
    return sum(1 for _ in _iter_offsets(Path(path)))


def _iter_offsets(path: Path) -> Iterator[int]:
    with path.open("rb") as handle:
        if path.stat().st_size == 0:
            return
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            offset = 0
            while offset < len(data):
                yield offset
                offset = _item_span(data, offset, path)[1]
