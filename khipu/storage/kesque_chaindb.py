"""KesqueChainDatabase: py-evm's AtomicDatabaseAPI routed onto Kesque and a small LevelDB.

py-evm's ChainDB and AccountDB write into one flat key space; this database sends each entry
where the design wants it (chain_records.py tells the kinds apart):

    trie nodes (state, storage, transaction, receipt, withdrawal tries), uncle lists
                                            -> Kesque hash topic `storage`
    contract code                           -> Kesque hash topic `evmcode`
    canonical headers, total difficulties   -> Kesque number topics `header`, `td` (by number)
    bodies, receipts (rebuilt per block)    -> Kesque number topics `body`, `receipts`
    block hash -> number, number -> hash, canonical head, tx/withdrawal -> block, chain gaps,
    khipu's own keys, side-chain headers    -> LevelDB

A header enters the `header` topic only if it extends the headers there (its parent is the last
one): the topic is the chain as first imported and is never rewritten. Any other header (a side
block) is kept in LevelDB under its hash, so py-evm still finds it; a reorg onto such a block
would make LevelDB's canonical index and the number topics disagree (the importer never reorgs).

Commit grouping: writes to Kesque wait for the next block. When a write batch holds a header
that went to Kesque, its body and receipts records are added, Kesque commits once (the block's
state, header, td, body and receipts together), and only then the batch's LevelDB keys (the new
canonical head among them) are written in one LevelDB write. A process killed at any moment
reopens at the last complete block; a block whose Kesque commit landed but whose LevelDB write
did not is imported again, its Kesque records found equal and kept. That LevelDB write is not
synced (Kesque's commit is, when configured to fsync): after a power cut LevelDB may be a few
blocks behind Kesque, never ahead, and those blocks are imported again the same way.

A read-only view (`index=None`, another process) has no LevelDB (one process at a time): it
serves the canonical chain from Kesque alone, resolving block hashes among the latest
`recent_window` headers, and knows no transaction or withdrawal index.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import rlp
from eth.abc import AtomicWriteBatchAPI
from eth.db.atomic import AtomicDBWriteBatch
from eth.db.backends.base import BaseAtomicDB, BaseDB
from eth_hash.auto import keccak

from khipu.storage import chain_records as records
from khipu.storage.kesque import Kesque, NumberTopic
from khipu.storage.leveldb import LevelDB

GENESIS_HASH_KEY = b"khipu:genesis-hash"


@dataclass
class _BlockWrites:
    """What one write batch does, sorted by destination."""

    headers: list[tuple[bytes, int, list[bytes]]] = field(default_factory=list)
    """(hash, number, fields) of the headers that are in the `header` topic."""
    index: dict[bytes, bytes | None] = field(default_factory=dict)
    """LevelDB keys to write (None: delete)."""
    trie_nodes: list[tuple[bytes, bytes]] = field(default_factory=list)
    code: list[tuple[bytes, bytes]] = field(default_factory=list)


class KesqueChainDatabase(BaseAtomicDB):
    """The node's chain and state database: Kesque for the data, LevelDB for the indexes."""

    def __init__(self, kesque: Kesque, index: LevelDB | None, recent_window: int = 8192) -> None:
        """`index` None makes a read-only view."""
        self.kesque = kesque
        self.index = index
        self.recent_window = recent_window
        self.trie_nodes = kesque.hash_topic("storage")
        self.code = kesque.hash_topic("evmcode")
        self.headers = kesque.number_topic("header")
        self.bodies = kesque.number_topic("body")
        self.receipts = kesque.number_topic("receipts")
        self.scores = kesque.number_topic("td")
        self._write_lock = threading.Lock()
        self._pending_numbers: dict[bytes, int] = {}
        self._tip: tuple[int, bytes] | None = None
        self._recent: dict[bytes, int] = {}
        self._recent_high = -1

    @property
    def readonly(self) -> bool:
        return self.index is None

    # -- reading -------------------------------------------------------------------------------

    def __getitem__(self, key: bytes) -> bytes:
        key = bytes(key)
        if len(key) == 32:
            value = self._get_hashed(key)
        elif key.startswith(records.SCORE_KEY_PREFIX):
            value = self._get_score(key)
        else:
            value = self._get_indexed(key)
        if value is None:
            raise KeyError(key)
        return value

    def _exists(self, key: bytes) -> bool:
        try:
            self[key]
        except KeyError:
            return False
        return True

    def _get_hashed(self, key: bytes) -> bytes | None:
        value = self.trie_nodes.get(key)
        if value is None:
            value = self.code.get(key)
        if value is None:
            number = self.block_number_of(key)
            if number is not None:
                value = self.headers.get_at(number)
        if value is None and self.index is not None:
            value = self.index.get(key)  # a side-chain header
        return value

    def _get_score(self, key: bytes) -> bytes | None:
        block_hash = records.hash_of_score_key(key)
        number = None if block_hash is None else self.block_number_of(block_hash)
        value = None if number is None else self.scores.get_at(number)
        if value is None and self.index is not None:
            value = self.index.get(key)
        return value

    def _get_indexed(self, key: bytes) -> bytes | None:
        if self.index is not None:
            return self.index.get(key)
        return self._derive_index_value(key)

    def block_number_of(self, block_hash: bytes) -> int | None:
        """The number of the block `block_hash` if its header is in the `header` topic."""
        pending = self._pending_numbers.get(block_hash)
        if pending is not None:
            return pending
        if self.index is None:
            return self._recent_number_of(block_hash)
        raw = self.index.get(records.HASH_TO_NUMBER_PREFIX + block_hash)
        return None if raw is None else records.decode_number(raw)

    def canonical_hash(self, number: int) -> bytes | None:
        """The hash of the header stored at `number` in the `header` topic, or None."""
        raw = self.headers.get_at(number)
        return None if raw is None else keccak(raw)

    # -- the read-only view's index, derived from the header topic -----------------------------

    def _derive_index_value(self, key: bytes) -> bytes | None:
        if key == records.CANONICAL_HEAD_KEY:
            return self.canonical_hash(self.headers.last_offset())
        if key == GENESIS_HASH_KEY:
            return self.canonical_hash(0)
        number = records.number_of_number_key(key)
        if number is not None:
            found = self.canonical_hash(number)
            return None if found is None else rlp.encode(found)
        return None

    def _recent_number_of(self, block_hash: bytes) -> int | None:
        found = self._recent.get(block_hash)
        if found is not None:
            return found
        last = self.headers.last_offset()
        if last > self._recent_high:
            start = max(self._recent_high + 1, last - self.recent_window + 1, 0)
            for number, raw in self.headers.iter_from(start, last):
                self._recent[keccak(raw)] = number
            self._recent_high = last
        return self._recent.get(block_hash)

    # -- writing -------------------------------------------------------------------------------

    def __setitem__(self, key: bytes, value: bytes) -> None:
        """Route one write (Kesque writes become visible to others with the next block).
        Raises PermissionError on a read-only view, Kesque's StoreFull/StoreWriteFailed."""
        self.apply_changes({bytes(key): bytes(value)})

    def __delitem__(self, key: bytes) -> None:
        if not self._exists(key):
            raise KeyError(key)
        self.apply_changes({bytes(key): None})

    @contextmanager
    def atomic_batch(self) -> Iterator[AtomicWriteBatchAPI]:
        """Collect writes; route them all when the block ends without an exception, else none."""
        pending = _PendingChanges(self)
        with AtomicDBWriteBatch._commit_unless_raises(pending) as batch:
            yield batch
        self.apply_changes(pending.take())

    def apply_changes(self, changes: dict[bytes, bytes | None]) -> None:
        """Route `changes` (None deletes); a batch holding a new block commits it (see above)."""
        if self.index is None:
            raise PermissionError(f"{self.kesque.path}: a read-only chain database")
        with self._write_lock:
            writes = _BlockWrites()
            try:
                for key, value in changes.items():
                    if len(key) == 32 and value is not None:
                        self._put_hashed(key, value, writes)
                self.trie_nodes.put_many(writes.trie_nodes)
                self.code.put_many(writes.code)
                for key, value in changes.items():
                    if value is None:
                        self._delete(key, writes)
                    elif len(key) != 32:
                        if key.startswith(records.SCORE_KEY_PREFIX):
                            self._put_score(key, value, writes)
                        else:
                            writes.index[key] = value
                if writes.headers:
                    self._commit_blocks(writes)
                elif writes.index:
                    self.index.write_changes(writes.index)
            except BaseException:
                if writes.headers:  # the block's records and state must not outlive it
                    self.kesque.rollback()
                    self._tip = None
                raise
            finally:
                self._pending_numbers = {}

    def _put_hashed(self, key: bytes, value: bytes, writes: _BlockWrites) -> None:
        if records.is_header(value):
            try:
                fields = records.header_fields(value)
            except ValueError:
                pass
            else:
                self._put_header(key, value, fields, writes)
                return
        if records.is_rlp_list(value):
            writes.trie_nodes.append((key, value))
        else:
            writes.code.append((key, value))

    def _put_header(
        self, block_hash: bytes, raw: bytes, fields: list[bytes], writes: _BlockWrites
    ) -> None:
        number = records.header_number(fields)
        last = self.headers.last_offset()
        if number == last + 1 and (
            number == 0 or records.header_parent_hash(raw) == self._tip_hash(last)
        ):
            self.headers.put_at(number, raw)
            self._tip = (number, block_hash)
        elif not (number <= last and self.headers.get_at(number) == raw):
            writes.index[block_hash] = raw  # a side-chain header
            return
        writes.headers.append((block_hash, number, fields))
        self._pending_numbers[block_hash] = number

    def _tip_hash(self, last: int) -> bytes | None:
        if self._tip is None or self._tip[0] != last:
            found = self.canonical_hash(last)
            if found is None:
                return None
            self._tip = (last, found)
        return self._tip[1]

    def _put_score(self, key: bytes, value: bytes, writes: _BlockWrites) -> None:
        block_hash = records.hash_of_score_key(key)
        number = None if block_hash is None else self.block_number_of(block_hash)
        if number is None or not _put_number_record(self.scores, number, value):
            writes.index[key] = value

    def _delete(self, key: bytes, writes: _BlockWrites) -> None:
        # py-evm deletes only index keys (decanonicalised numbers, transactions); trie nodes
        # are never deleted in an archive, Kesque headers cannot be.
        if len(key) == 32 and self.index is not None and self.index.get(key) is None:
            if not self.trie_nodes.delete(key):
                self.code.delete(key)
            return
        writes.index[key] = None

    def _commit_blocks(self, writes: _BlockWrites) -> None:
        assert self.index is not None
        for block_hash, number, fields in writes.headers:
            try:
                body = records.body_record(self, fields)
                receipts = records.receipts_record(self, fields)
            except KeyError:
                pass  # a header persisted without its block (none of khipu's paths does that)
            else:
                _put_number_record(self.bodies, number, body)
                _put_number_record(self.receipts, number, receipts)
            writes.index[records.HASH_TO_NUMBER_PREFIX + block_hash] = records.encode_number(number)
        self.kesque.commit()
        self.index.write_changes(writes.index)

    def sync(self) -> None:
        """Commit whatever Kesque holds uncommitted and make LevelDB durable (a no-op when
        read-only)."""
        if self.index is None:
            return
        with self._write_lock:
            self.kesque.commit()
            self.index.sync()


def _put_number_record(topic: NumberTopic, number: int, value: bytes) -> bool:
    """Store `value` at `number` unless that number is taken; True if the topic now holds
    exactly `value` there (stored now, or found equal after a crash between commits)."""
    if number > topic.last_offset():
        topic.put_at(number, value)
        return True
    return topic.get_at(number) == value


class _PendingChanges(BaseDB):
    """The write target of a batch: reads go to the database, writes wait for `take()`."""

    def __init__(self, db: KesqueChainDatabase) -> None:
        self._db = db
        self._changes: dict[bytes, bytes | None] = {}

    def __getitem__(self, key: bytes) -> bytes:
        return self._db[key]

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self._changes[bytes(key)] = bytes(value)

    def __delitem__(self, key: bytes) -> None:
        self._changes[bytes(key)] = None

    def _exists(self, key: bytes) -> bool:
        return key in self._db

    def take(self) -> dict[bytes, bytes | None]:
        changes, self._changes = self._changes, {}
        return changes
