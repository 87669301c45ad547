"""Keys and values for the Kesque tests."""

from __future__ import annotations

import hashlib


def key_of(i: int) -> bytes:
    """A 32-byte key like a trie node hash."""
    return hashlib.sha256(b"key-%d" % i).digest()


def value_of(i: int, generation: int = 0) -> bytes:
    """A value of 100..400 bytes that differs per key and per generation."""
    seed = hashlib.sha256(b"value-%d-%d" % (i, generation)).digest()
    return seed * (3 + i % 10)
