"""The store that the StorageWriter has open right now, for readers in the same process.

The StorageWriter owns the datadir and reopens it on every restart; LevelDB admits one handle
per process, so in-process readers (the JSON-RPC server) read through the writer's store. This
proxy always points at the current one, and says clearly when there is none (a restart).
"""

from __future__ import annotations

import threading
from typing import Any

from khipu.storage.chain_store import ChainStore, StoreUnavailable

__all__ = ["LiveStore", "StoreUnavailable"]


class LiveStore:
    """Delegates to the ChainStore the StorageWriter published last."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._store: ChainStore | None = None

    def publish(self, store: ChainStore | None) -> None:
        """Called by the StorageWriter with its store once open, and with None before closing."""
        with self._lock:
            self._store = store

    def current(self) -> ChainStore:
        """The open store. Raises StoreUnavailable while there is none."""
        store = self._store
        if store is None:
            raise StoreUnavailable("the store is not open (the storage writer is restarting)")
        return store

    def __getattr__(self, name: str) -> Any:
        # Only attributes not found on the proxy land here: db, chaindb, head, genesis_hash...
        return getattr(self.current(), name)

    def close(self) -> None:
        """Readers do not close the writer's store."""
