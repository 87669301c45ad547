"""RLP for the wire: the one place khipu.p2p encodes and decodes RLP, and the checked accessors
that turn a peer's decoded message into typed values or a PeerMisbehaved error."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeAlias

from khipu.p2p.errors import PeerMisbehaved

Item: TypeAlias = bytes | list["Item"]


def encode(value: object) -> bytes:
    """RLP of `value`: bytes, non-negative ints, str (as UTF-8) and nested lists of them.

    Written out here rather than through pyrlp, whose type inference costs ~0.5 ms a call.
    Raises TypeError for other types and ValueError for negative integers.
    """
    if isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
        if len(data) == 1 and data[0] < 0x80:
            return data
        return _length_prefix(len(data), 0x80) + data
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"RLP cannot encode the negative integer {value}")
        return encode(value.to_bytes((value.bit_length() + 7) // 8, "big"))
    if isinstance(value, str):
        return encode(value.encode())
    if isinstance(value, list | tuple):
        payload = b"".join(encode(item) for item in value)
        return _length_prefix(len(payload), 0xC0) + payload
    raise TypeError(f"RLP cannot encode {type(value).__name__}")


def _length_prefix(length: int, offset: int) -> bytes:
    if length < 56:
        return bytes([offset + length])
    size = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([offset + 55 + len(size)]) + size


MAX_NESTING = 64  # no devp2p message nests lists deeper than about 6


def decode(data: bytes, what: str = "message", strict: bool = True) -> Item:
    """Decode untrusted RLP; raise PeerMisbehaved naming `what` if it is malformed.

    Canonical RLP only (no leading zeros in lengths, no long form for short items, no single
    byte below 0x80 as a one-byte string), lists nested at most MAX_NESTING deep. With
    strict=False trailing bytes after the first item are ignored (EIP-8 padding).

    Written as a loop with its own stack, not with pyrlp: pyrlp recurses once per nesting
    level (py-evm raises the recursion limit to 100000, so a 450 kB message of nested lists
    ran into RecursionError, after a second of CPU) and copies each list's bytes per level.
    """
    data = bytes(data)
    try:
        item, end = _decode_first(data)
    except _Malformed as exc:
        raise PeerMisbehaved(f"malformed RLP in {what}: {exc}") from None
    if strict and end != len(data):
        raise PeerMisbehaved(f"malformed RLP in {what}: {len(data) - end} bytes after the item")
    return item


class _Malformed(Exception):
    pass


def _header(data: bytes, pos: int, end: int) -> tuple[bool, int, int]:
    """(is a list, payload start, payload length) of the item at `pos`, inside `end`."""
    b0 = data[pos]
    if b0 < 0x80:
        return False, pos, 1
    if b0 < 0xB8:
        length = b0 - 0x80
        if length == 1 and pos + 1 < end and data[pos + 1] < 0x80:
            raise _Malformed(f"single byte below 0x80 encoded as a string at {pos}")
        return False, pos + 1, length
    if 0xC0 <= b0 < 0xF8:
        return True, pos + 1, b0 - 0xC0
    is_list = b0 >= 0xF8
    size = b0 - (0xF7 if is_list else 0xB7)
    if pos + 1 + size > end:
        raise _Malformed(f"length of the item at {pos} runs past its end")
    if data[pos + 1] == 0:
        raise _Malformed(f"length with a leading zero at {pos}")
    length = int.from_bytes(data[pos + 1 : pos + 1 + size], "big")
    if length < 56:
        raise _Malformed(f"long form used for a short item at {pos}")
    return is_list, pos + 1 + size, length


def _decode_first(data: bytes) -> tuple[Item, int]:
    """The first item of `data` and the offset just after it."""
    stack: list[tuple[list[Item], int]] = []  # open lists and where each ends
    pos, end = 0, len(data)
    while True:
        if stack and pos == stack[-1][1]:
            value: Item = stack.pop()[0]
        else:
            if pos >= end:
                raise _Malformed("input ends inside an item" if data else "empty input")
            is_list, start, length = _header(data, pos, end)
            if start + length > end:
                raise _Malformed(f"item at {pos} of {length} B runs past its end")
            if is_list and length:
                if len(stack) >= MAX_NESTING:
                    raise _Malformed(f"lists nested deeper than {MAX_NESTING}")
                stack.append(([], start + length))
                pos, end = start, start + length
                continue
            value = [] if is_list else data[start : start + length]
            pos = start + length
        if not stack:
            return value, pos
        stack[-1][0].append(value)
        end = stack[-1][1] if stack else len(data)


def encode_raw_list(encoded_items: Sequence[bytes]) -> bytes:
    """The RLP list whose items are the given already-encoded RLP items."""
    payload = b"".join(encoded_items)
    return _length_prefix(len(payload), 0xC0) + payload


def as_list(item: Item, what: str, min_length: int = 0) -> list[Item]:
    """`item` as a list of at least `min_length` items, or PeerMisbehaved."""
    if not isinstance(item, list) or len(item) < min_length:
        raise PeerMisbehaved(f"{what} must be a list of at least {min_length} items")
    return item


def as_bytes(item: Item, what: str, length: int | None = None) -> bytes:
    """`item` as a byte string (of exactly `length` bytes if given), or PeerMisbehaved."""
    if not isinstance(item, bytes) or (length is not None and len(item) != length):
        expected = "a byte string" if length is None else f"{length} bytes"
        raise PeerMisbehaved(f"{what} must be {expected}")
    return item


def as_int(item: Item, what: str, max_bits: int = 256) -> int:
    """`item` as an unsigned integer of at most `max_bits`, or PeerMisbehaved.

    Leading zero bytes are tolerated: EthereumJS sends zero as 0x00 instead of 0x80.
    """
    value = int.from_bytes(as_bytes(item, what), "big")
    if value.bit_length() > max_bits:
        raise PeerMisbehaved(f"{what} exceeds {max_bits} bits")
    return value


def as_hash(item: Item, what: str) -> bytes:
    """`item` as a 32-byte hash, or PeerMisbehaved."""
    return as_bytes(item, what, 32)
