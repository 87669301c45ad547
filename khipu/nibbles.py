"""Trie paths as nibbles: byte keys and hex-prefix (compact) keys, both ways.

The one place khipu turns trie keys into nibbles and back (the batched state root, snap serving
and range-proof checks all walk hexary tries). Each conversion goes through hex digits: one
C-level pass instead of a Python loop per byte, which matters on paths run per trie node.
"""

from __future__ import annotations

Nibbles = tuple[int, ...]
TERMINATOR = 16  # marks the end of a leaf's key in the nibble form some walkers use

_NIBBLE_VALUES = bytes.maketrans(b"0123456789abcdef", bytes(range(16)))
_HEX_DIGITS = bytes.maketrans(bytes(range(16)), b"0123456789abcdef")


def key_nibbles(key: bytes) -> Nibbles:
    """The nibbles of a byte key, high nibble first, without terminator."""
    return tuple(key.hex().encode().translate(_NIBBLE_VALUES))


def nibbles_key(path: Nibbles) -> bytes:
    """The bytes of an even-length nibble path (the inverse of `key_nibbles`).
    Raises ValueError for an odd length or a value over 15."""
    return bytes.fromhex(bytes(path).translate(_HEX_DIGITS).decode())


def hex_prefix_decode(compact: bytes) -> tuple[Nibbles, bool]:
    """The path of a non-empty hex-prefix key and whether it is flagged as a leaf's.
    Raises IndexError for an empty key."""
    flag = compact[0] >> 4
    nibbles = compact.hex().encode().translate(_NIBBLE_VALUES)[1 if flag & 1 else 2 :]
    return tuple(nibbles), bool(flag & 2)


def hex_prefix_encode(path: Nibbles, leaf: bool) -> bytes:
    """The hex-prefix key of `path`, flagged as a leaf's or an extension's."""
    flag = (2 if leaf else 0) + len(path) % 2
    return nibbles_key((flag, *path) if len(path) % 2 else (flag, 0, *path))
