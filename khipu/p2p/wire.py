"""RLP for the wire: the one place khipu.p2p encodes and decodes RLP, and the checked accessors
that turn a peer's decoded message into typed values or a PeerMisbehaved error."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeAlias

import rlp  # type: ignore[import-untyped]

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


def decode(data: bytes, what: str = "message", strict: bool = True) -> Item:
    """Decode untrusted RLP; raise PeerMisbehaved naming `what` if it is malformed.

    With strict=False trailing bytes after the first item are ignored (EIP-8 padding).
    """
    try:
        item: Item = rlp.decode(data, strict=strict)
    except rlp.DecodingError as exc:
        raise PeerMisbehaved(f"malformed RLP in {what}: {exc}") from exc
    return item


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
