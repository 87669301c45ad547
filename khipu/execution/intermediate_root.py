"""The state root after each transaction of a block before Byzantium, with a batched account trie.

Before Byzantium every receipt carries the state root after its transaction, so the merge asks
for a root once per transaction (py-evm's `make_receipt` and `add_receipt_to_header` do too).
py-evm's `AccountDB.make_state_root` writes each changed account into the account trie one key
at a time; `make_intermediate_state_root` does the same work with one `update_trie` pass.

py-evm's pruning trie drops the nodes that a later transaction of the block replaces, so they
are never stored. Here the new nodes of each pass go to the account DB's pending batch and are
remembered; before the block is persisted, those no longer reachable from the state root are
dropped from the batch (`drop_replaced_nodes`), so the store receives the same nodes as with
py-evm. Storage tries keep py-evm's own `make_storage_root` (with its pruning). This module
reaches into py-evm's private AccountDB attributes (pinned py-evm 0.12.1b1), as state_root.py.
"""

from __future__ import annotations

from typing import Any

import rlp
from eth.constants import BLANK_ROOT_HASH
from eth.db.backends.base import BaseDB
from eth_typing import Hash32

from khipu.execution.state_root import fold_account_changes

# The attribute of an AccountDB holding the account-trie nodes its intermediate roots made.
NODES_ATTRIBUTE = "intermediate_root_nodes"


def make_intermediate_state_root(account_db: Any) -> Hash32:
    """What py-evm's `AccountDB.make_state_root` computes and leaves behind (storage roots
    set, code flushed, the journal folded into the trie), the account trie updated in one
    batch. Raises MissingTrieNodeError (trie_batch) if a node on a changed path is missing."""
    for _address, store in account_db._dirty_account_stores():
        store.make_storage_root()
    for address, storage_root in account_db._get_changed_roots():
        if account_db.account_exists(address) or storage_root != BLANK_ROOT_HASH:
            account_db._set_storage_root(address, storage_root)
    nodes = fold_account_changes(account_db)
    if nodes:
        made: set[bytes] = account_db.__dict__.setdefault(NODES_ATTRIBUTE, set())
        for node_hash, encoded in nodes.items():
            account_db._batchtrie[node_hash] = encoded
            made.add(node_hash)
    return Hash32(account_db.state_root)


def drop_replaced_nodes(account_db: Any) -> int:
    """Drop from the pending batch the account-trie nodes that intermediate roots made and
    that the current state root no longer reaches; returns how many were dropped."""
    made: set[bytes] | None = account_db.__dict__.pop(NODES_ATTRIBUTE, None)
    if not made:
        return 0
    batch: BaseDB = account_db._batchtrie
    reachable: set[bytes] = set()
    pending = [bytes(account_db.state_root)]
    while pending:
        node_hash = pending.pop()
        if node_hash in made and node_hash not in reachable:
            reachable.add(node_hash)
            pending.extend(child_hashes(batch[node_hash]))
    replaced = made - reachable
    for node_hash in replaced:
        del batch[node_hash]
    return len(replaced)


def child_hashes(encoded: bytes) -> list[bytes]:
    """The hashes of the nodes a trie node (RLP) refers to, through embedded nodes too."""
    return _references(rlp.decode(encoded))


def _references(node: Any) -> list[bytes]:
    if len(node) == 17:
        items = node[:16]
    elif len(node) == 2 and node[0] and node[0][0] >> 4 in (0, 1):  # an extension
        items = [node[1]]
    else:  # a leaf: its value is an account, not a reference
        return []
    found: list[bytes] = []
    for item in items:
        if isinstance(item, list):
            found.extend(_references(item))
        elif len(item) == 32:
            found.append(bytes(item))
    return found


class IntermediateRootStateMixin:
    """Mixed in before a fork's State: `make_state_root` batched, `persist` dropping the nodes
    that intermediate roots made and later ones replaced."""

    _account_db: Any

    def make_state_root(self) -> Hash32:
        return make_intermediate_state_root(self._account_db)

    def persist(self) -> Any:
        drop_replaced_nodes(self._account_db)
        state: Any = super()
        return state.persist()
