"""Byte-level access to the items of an RLP list, without decoding them.

The merge patches one field of an encoded receipt, and a worker's task carries only its own
transactions of a block: both need where the items of an RLP list start and end, not the items.
"""

from __future__ import annotations


class RlpItemError(ValueError):
    """Bytes that should hold an RLP list of items do not."""


def item_end(data: bytes, pos: int) -> int:
    """Where the RLP item starting at `pos` ends. Raises RlpItemError past the end of data."""
    if pos >= len(data):
        raise RlpItemError(f"no RLP item at offset {pos} of {len(data)} bytes")
    first = data[pos]
    if first < 0x80:
        end = pos + 1
    elif first < 0xB8:
        end = pos + 1 + first - 0x80
    elif first < 0xC0:
        size = first - 0xB7
        end = pos + 1 + size + int.from_bytes(data[pos + 1 : pos + 1 + size], "big")
    elif first < 0xF8:
        end = pos + 1 + first - 0xC0
    else:
        size = first - 0xF7
        end = pos + 1 + size + int.from_bytes(data[pos + 1 : pos + 1 + size], "big")
    if end > len(data):
        raise RlpItemError(f"RLP item at offset {pos} runs past the end ({end} > {len(data)})")
    return end


def list_payload(data: bytes, pos: int) -> tuple[int, int]:
    """Start and end of the payload of the RLP list at `pos`. Raises RlpItemError if the item
    there is not a list or runs past the data."""
    if pos >= len(data) or data[pos] < 0xC0:
        raise RlpItemError(f"no RLP list at offset {pos}")
    end = item_end(data, pos)
    first = data[pos]
    return (pos + 1 if first < 0xF8 else pos + 1 + first - 0xF7), end


def list_items(data: bytes, pos: int = 0) -> list[bytes]:
    """The encoded items of the RLP list at `pos`, each as its own bytes."""
    start, end = list_payload(data, pos)
    items = []
    while start < end:
        stop = item_end(data, start)
        items.append(data[start:stop])
        start = stop
    if start != end:
        raise RlpItemError(f"RLP list at offset {pos} has items past its end")
    return items


def length_prefix(length: int, offset: int) -> bytes:
    """The prefix of an RLP string (`offset` 0x80) or list (0xC0) of `length` payload bytes."""
    if length < 56:
        return bytes((offset + length,))
    size = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes((offset + 55 + len(size),)) + size


def list_prefix(length: int) -> bytes:
    """The prefix of an RLP list whose payload is `length` bytes."""
    return length_prefix(length, 0xC0)


def encode_list(items: list[bytes]) -> bytes:
    """The RLP list of already-encoded `items`."""
    payload = b"".join(items)
    return list_prefix(len(payload)) + payload
