"""A LevelDB (plyvel) key-value store that py-evm can use as its `AtomicDatabaseAPI`.

An `atomic_batch()` becomes one LevelDB write batch: all of its writes land together or none
do, which is what makes an interrupted import resume cleanly from the last complete block.
"""

from __future__ import annotations

import atexit
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import plyvel
from eth.abc import AtomicWriteBatchAPI
from eth.db.atomic import AtomicDBWriteBatch
from eth.db.backends.base import BaseAtomicDB, BaseDB


class StoreLocked(RuntimeError):
    """Another process holds the database open; LevelDB admits one process at a time."""


class StoreFull(OSError):
    """A write failed for lack of disk space; nothing after the last commit was kept."""


class LevelDB(BaseAtomicDB):
    """A py-evm atomic database on a LevelDB directory."""

    def __init__(self, path: Path, *, create: bool = True) -> None:
        self.path = Path(path)
        try:
            self._db: Any = plyvel.DB(
                str(self.path),
                create_if_missing=create,
                lru_cache_size=64 * 1024 * 1024,
                write_buffer_size=32 * 1024 * 1024,
                max_open_files=512,
            )
        except plyvel.IOError as exc:
            if "lock" in str(exc).lower():
                raise StoreLocked(f"{self.path} is in use by another khipu process") from exc
            raise
        _OPEN_DATABASES[id(self)] = self

    def __getitem__(self, key: bytes) -> bytes:
        value = self._db.get(key)
        if value is None:
            raise KeyError(key)
        return bytes(value)

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self._write(lambda: self._db.put(key, value))

    def _exists(self, key: bytes) -> bool:
        return self._db.get(key) is not None

    def __delitem__(self, key: bytes) -> None:
        if not self._exists(key):
            raise KeyError(key)
        self._write(lambda: self._db.delete(key))

    @contextmanager
    def atomic_batch(self) -> Iterator[AtomicWriteBatchAPI]:
        """A readable batch whose writes are applied in one LevelDB write on success."""
        pending = _PendingWrites(self)
        with AtomicDBWriteBatch._commit_unless_raises(pending) as batch:
            yield batch
        pending.write()

    def write_changes(self, changes: dict[bytes, bytes | None], sync: bool = False) -> None:
        """Apply `changes` (None deletes a key) in one LevelDB write: all land or none do.

        `sync` returns only once the write is durable. Raises StoreFull if the disk is full.
        """
        self._write(lambda: _write_batch(self._db, changes, sync))

    def sync(self) -> None:
        """Make every write so far durable (an empty synchronous write flushes the log)."""
        self._write(lambda: _sync(self._db))

    def close(self) -> None:
        """Close the database; further use raises. Closing twice is harmless."""
        if self._db is not None:
            self._db.close()
            # Drop the handle now: plyvel fails when a handle is freed at interpreter exit.
            self._db = None
        _OPEN_DATABASES.pop(id(self), None)

    def _write(self, operation: Any) -> None:
        try:
            operation()
        except plyvel.IOError as exc:
            if "space" in str(exc).lower():
                raise StoreFull(f"disk full writing {self.path}: {exc}") from exc
            raise


# Mappings are unhashable, so open databases are kept by id.
_OPEN_DATABASES: weakref.WeakValueDictionary[int, LevelDB] = weakref.WeakValueDictionary()


@atexit.register
def _close_open_databases() -> None:
    for db in list(_OPEN_DATABASES.values()):
        db.close()


class _PendingWrites(BaseDB):
    """The write target of a batch: reads go to the database, writes wait for `write()`.

    The plyvel WriteBatch lives only inside `write()`: py-evm keeps references to batch
    objects, and a WriteBatch outliving its database fails noisily at interpreter exit.
    """

    def __init__(self, db: LevelDB) -> None:
        self._db = db
        self._changes: dict[bytes, bytes | None] = {}

    def __getitem__(self, key: bytes) -> bytes:
        return self._db[key]

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self._changes[key] = value

    def __delitem__(self, key: bytes) -> None:
        self._changes[key] = None

    def _exists(self, key: bytes) -> bool:
        return key in self._db

    def write(self) -> None:
        changes, self._changes = self._changes, {}
        self._db._write(lambda: _write_batch(self._db._db, changes))


def _sync(db: Any) -> None:
    with db.write_batch(sync=True) as batch:
        batch.put(_SYNC_KEY, b"")


_SYNC_KEY = b"khipu:sync"


def _write_batch(db: Any, changes: dict[bytes, bytes | None], sync: bool = False) -> None:
    with db.write_batch(sync=sync) as batch:
        for key, value in changes.items():
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
