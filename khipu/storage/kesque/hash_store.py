"""KesqueHashStore: py-evm's AtomicDatabaseAPI over one hash topic of Kesque.

py-evm keeps trie nodes and contract code keyed by their 32-byte hash; routed here they land in
Kesque's append-only logs behind the on-disk hash index. This is the only Kesque module that
imports py-evm.

Durability follows Kesque, not py-evm's "written out at once": a write (or a finished
`atomic_batch()`) is visible to this process at once and to other processes after the owner's
`Kesque.commit()`, which the storage writer calls once per block so that a block's state lands
atomically with its header. Pass `commit_each_batch=True` to commit after every batch instead.
Deletes append a tombstone; py-evm's archive state never deletes trie nodes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from eth.abc import AtomicWriteBatchAPI
from eth.db.atomic import AtomicDBWriteBatch
from eth.db.backends.base import BaseAtomicDB

from khipu.storage.kesque.hash_topic import HashTopic
from khipu.storage.kesque.store import Kesque


class KesqueHashStore(BaseAtomicDB):
    """A py-evm key-value database backed by the hash topic `topic` of `store`."""

    def __init__(
        self, store: Kesque, topic: str = "storage", commit_each_batch: bool = False
    ) -> None:
        self.store = store
        self.topic: HashTopic = store.hash_topic(topic)
        self.commit_each_batch = commit_each_batch

    def __getitem__(self, key: bytes) -> bytes:
        value = self.topic.get(bytes(key))
        if value is None:
            raise KeyError(key)
        return value

    def __setitem__(self, key: bytes, value: bytes) -> None:
        """Raises PermissionError on a read-only store, StoreFull if the disk is full."""
        self.topic.put(bytes(key), bytes(value))

    def __delitem__(self, key: bytes) -> None:
        """Append a tombstone; KeyError if the key has no value."""
        if not self.topic.delete(bytes(key)):
            raise KeyError(key)

    def _exists(self, key: bytes) -> bool:
        return self.topic.contains(bytes(key))

    @contextmanager
    def atomic_batch(self) -> Iterator[AtomicWriteBatchAPI]:
        """Collect writes; apply them all when the block ends without an exception, else none."""
        with AtomicDBWriteBatch._commit_unless_raises(self) as batch:
            yield batch
        if self.commit_each_batch:
            self.store.commit()
