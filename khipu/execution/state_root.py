"""py-evm's AccountDB with the end-of-block state root computed by batched trie updates.

`AccountDB.persist` (called once per block, in `finalize_block`) pushes every changed storage
slot and every changed account through `HexaryTrie.__setitem__` one key at a time. Here the same
changes are collected from py-evm's journals and applied with `update_trie`, one pass per storage
trie and one for the account trie; the new nodes, the code written during the block and the
storage roots end up in the database exactly as py-evm's own `persist` leaves them.

The storage tries of different accounts are independent: with `storage_roots` set (the merge
sets it), their batches go to the worker pool (storage_roots.StorageRoots), which returns each
new root and its nodes; the account trie is then updated here with those roots.

A storage wiped during the block (SELFDESTRUCT, CREATE over an address with storage) keeps
py-evm's own path for that account: its lookup holds a stack of tries to revert to, which only
py-evm's code understands. This module reaches into py-evm's private attributes (pinned
py-evm 0.12.1b1); `tests/unit/execution/test_state_root.py` compares it with `AccountDB`.
"""

from __future__ import annotations

import time
from typing import Any, cast

from eth.abc import (
    AccountStorageDatabaseAPI,
    AtomicDatabaseAPI,
    DatabaseAPI,
    MetaWitnessAPI,
)
from eth.constants import BLANK_ROOT_HASH, EMPTY_SHA3
from eth.db.accesslog import KeyAccessLoggerDB
from eth.db.account import AccountDB
from eth.db.cache import CacheDB
from eth.db.hash_trie import HashTrie
from eth.db.journal import JournalDB
from eth.db.storage import AccountStorageDB, StorageLookup
from eth.rlp.accounts import Account
from eth.validation import validate_canonical_address, validate_uint64, validate_uint256
from eth.vm.interrupt import MissingBytecode
from eth_hash.auto import keccak
from eth_typing import Address, Hash32
from trie.hexary import HexaryTrie

from khipu.execution.node_cache import NodeCachingTrie
from khipu.execution.storage_roots import StorageBatch, StorageRoots, storage_root_here
from khipu.execution.trie_batch import update_trie


class BatchedAccountDB(AccountDB):
    """An AccountDB whose `persist` updates the storage tries and account trie in batches,
    and whose account reads go through the per-process decoded-node cache."""

    # Set by the merge for a block whose storage roots may go to the workers.
    storage_roots: StorageRoots | None = None

    def __init__(self, db: AtomicDatabaseAPI, state_root: Hash32 = BLANK_ROOT_HASH) -> None:
        super().__init__(db, state_root)
        # py-evm's read pipeline over the account trie, rebuilt on a node-caching trie.
        caching = NodeCachingTrie(self._batchtrie, state_root, prune=True)
        self._trie = HashTrie(cast(DatabaseAPI, caching))
        self._trie_logger = KeyAccessLoggerDB(self._trie, log_missing_keys=False)
        self._trie_cache = CacheDB(self._trie_logger)
        self._journaltrie = JournalDB(self._trie_cache)

    # py-evm's setters copy the account (rlp's copy deep-copies every unchanged field) and
    # get_code copies the whole set of keys read so far: these build the account directly
    # and look the key up in place, with the same checks and the same effect.

    def set_balance(self, address: Address, balance: int) -> None:
        validate_canonical_address(address, title="Storage Address")
        validate_uint256(balance, title="Account Balance")
        account = self._get_account(address)
        self._set_account(
            address, Account(account.nonce, balance, account.storage_root, account.code_hash)
        )

    def set_nonce(self, address: Address, nonce: int) -> None:
        validate_canonical_address(address, title="Storage Address")
        validate_uint64(nonce, title="Nonce")
        account = self._get_account(address)
        self._set_account(
            address, Account(nonce, account.balance, account.storage_root, account.code_hash)
        )

    def increment_nonce(self, address: Address) -> None:
        self.set_nonce(address, self.get_nonce(address) + 1)

    def get_code(self, address: Address) -> bytes:
        validate_canonical_address(address, title="Storage Address")
        code_hash = self.get_code_hash(address)
        if code_hash == EMPTY_SHA3:
            return b""
        try:
            return bytes(self._journaldb[code_hash])
        except KeyError:
            raise MissingBytecode(code_hash) from KeyError
        finally:
            if code_hash in self._raw_store_db._keys_read:
                self._accessed_bytecodes.add(address)

    def _get_address_store(self, address: Address) -> AccountStorageDatabaseAPI:
        known = address in self._account_stores
        store = super()._get_address_store(address)
        if not known:
            # Storage reads of the parent trie go through the decoded-node cache too.
            cast(Any, store)._storage_lookup.__class__ = CachingStorageLookup
        return store

    def persist(self) -> MetaWitnessAPI:
        """Write the block's storage, code and account changes; same result as AccountDB's.

        The storage tries go through `storage_roots` (on the workers) when it is set, else
        they are updated here. Raises MissingTrieNodeError (trie_batch) if a node on a changed
        path is missing.
        """
        started = time.perf_counter()
        nodes: dict[bytes, bytes] = {}
        by_pyevm: list[AccountStorageDB] = []
        new_roots: dict[Address, Hash32] = {}
        batches: list[StorageBatch] = []
        storage_store: Any = None
        for address, store in self._dirty_account_stores():
            pending = self._storage_changes(address, store, by_pyevm)
            if isinstance(pending, StorageBatch):
                batches.append(pending)
                storage_store = cast(Any, store)._storage_lookup._db
            elif pending is not None:
                new_roots[address] = pending
        if batches:
            if self.storage_roots is None:
                computed = {b.address: storage_root_here(storage_store, b) for b in batches}
            else:
                computed = self.storage_roots.compute(storage_store, batches)
            for batch in batches:
                update = computed[batch.address]
                nodes.update(update.nodes)
                new_roots[Address(batch.address)] = update.root_hash
        for address, new_root in new_roots.items():
            if self.account_exists(address) or new_root != BLANK_ROOT_HASH:
                self._set_storage_root(address, new_root)

        nodes.update(fold_account_changes(self))

        with self._raw_store_db.atomic_batch() as write_batch:
            for store in by_pyevm:
                store.persist(write_batch)
            for node_hash, encoded in nodes.items():
                write_batch[node_hash] = encoded
        meta_witness = self._get_meta_witness()

        self._account_stores = {}
        self._dirty_accounts = set()
        self._accessed_accounts = set()
        self._accessed_bytecodes = set()
        self._account_cache.clear()

        self._validate_generated_root()
        with self._raw_store_db.atomic_batch() as write_batch:
            self._batchtrie.commit_to(write_batch, apply_deletes=False)
            self._batchdb.commit_to(write_batch, apply_deletes=False)
        self._root_hash_at_last_persist = self.state_root
        if self.storage_roots is not None:
            self.storage_roots.seconds = time.perf_counter() - started
        return meta_witness

    def _storage_changes(
        self, address: Address, store: Any, by_pyevm: list[AccountStorageDB]
    ) -> StorageBatch | Hash32 | None:
        """What `address`'s storage trie needs: None if it is untouched; its new root if
        py-evm must make it (then `store` goes to `by_pyevm`, py-evm writes the nodes); else
        the batch of sorted slot updates to apply to its parent root."""
        store.lock_changes()
        lookup = store._storage_lookup
        # A wipe, or a root already made by py-evm this block: py-evm finishes what it began.
        if (
            lookup._historical_write_tries
            or lookup.has_changed_root
            or store._locked_changes.has_clear()
        ):
            store.make_storage_root()
            by_pyevm.append(store)
            return Hash32(store.get_changed_root()) if store.has_changed_root else None
        diff = store._locked_changes.diff()
        updates = {keccak(slot.rjust(32, b"\x00")): value for slot, value in diff.pending_items()}
        updates.update((keccak(slot.rjust(32, b"\x00")), b"") for slot in diff.deleted_keys())
        if not updates:
            return None
        return StorageBatch(
            bytes(address), bytes(lookup._starting_root_hash), tuple(sorted(updates.items()))
        )


class CachingStorageLookup(StorageLookup):
    """py-evm's StorageLookup reading the unchanged storage trie through the node cache."""

    def _get_read_trie(self) -> HexaryTrie:
        if self._write_trie is not None:
            return self._write_trie
        return NodeCachingTrie(self._db, root_hash=self._starting_root_hash)


def fold_account_changes(account_db: Any) -> dict[bytes, bytes]:
    """Fold an AccountDB's journal into its account trie in one `update_trie` pass (code goes
    to its batch), as py-evm's `make_state_root` does key by key; sets the new root and returns
    the new account-trie nodes (not yet stored anywhere). Raises MissingTrieNodeError
    (trie_batch) if a node on a changed path is missing."""
    account_db._journaldb.persist()
    diff = account_db._journaltrie.diff()
    updates: dict[bytes, bytes | None] = {
        keccak(address): value for address, value in diff.pending_items()
    }
    updates.update((keccak(address), None) for address in diff.deleted_keys())
    nodes: dict[bytes, bytes] = {}
    if updates:
        account_trie = update_trie(account_db._batchtrie, account_db.state_root, updates)
        nodes = account_trie.nodes
        account_db._trie.root_hash = account_trie.root_hash
    account_db._journaltrie.reset()
    account_db._trie_cache.reset_cache()
    return nodes
