"""A least-recently-used value cache bounded by the bytes of its values."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Generic, TypeVar

K = TypeVar("K")


class LRUCache(Generic[K]):
    """Maps keys to values, evicting the least recently used once `capacity_bytes` is passed.

    Thread-safe (writers take a lock, gets need none); a capacity of 0 caches nothing.
    """

    def __init__(self, capacity_bytes: int) -> None:
        self.capacity_bytes = capacity_bytes
        self.size_bytes = 0
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[K, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> bytes | None:
        """The cached value of `key` (now the most recently used), or None.

        Takes no lock: each OrderedDict operation is atomic under the GIL, and a key evicted
        between the two is simply not moved (the hit and miss counts may be off by a few)."""
        if not self.capacity_bytes:
            return None
        entries = self._entries
        value = entries.get(key)
        if value is None:
            self.misses += 1
            return None
        try:  # noqa: SIM105 (contextlib.suppress costs more on this hot path)
            entries.move_to_end(key)
        except KeyError:
            pass
        self.hits += 1
        return value

    def put(self, key: K, value: bytes) -> None:
        """Cache `value` under `key`; a value larger than the whole cache is not kept."""
        if len(value) > self.capacity_bytes:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self.size_bytes -= len(old)
            self._entries[key] = value
            self.size_bytes += len(value)
            while self.size_bytes > self.capacity_bytes:
                _, evicted = self._entries.popitem(last=False)
                self.size_bytes -= len(evicted)

    def discard(self, key: K) -> None:
        """Forget `key` if cached."""
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self.size_bytes -= len(old)

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._entries.clear()
            self.size_bytes = 0

    def __len__(self) -> int:
        return len(self._entries)
