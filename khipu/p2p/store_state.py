"""The StateReader (khipu.p2p.snap.abc) of the node's own datadir: what snap/1 serves.

Trie nodes come from Kesque's `storage` hash topic (account and storage tries share it, see
khipu/storage/chain_store.py) and code from `evmcode`; both are looked up through the on-disk
hash index, so a read costs one index probe and one record read, and nothing else of py-evm's
key space (headers, LevelDB indexes) can be handed out as a trie node.

Like StoreChainReader, the store is reached through attribute access on every call, so the
node passes its LiveStore proxy and always reads the StorageWriter's current store; while the
writer restarts the proxy raises, which is turned into StateUnavailable.
"""

from __future__ import annotations

from khipu.p2p.snap.abc import StateUnavailable
from khipu.storage.chain_store import ChainStore


class StoreStateReader:
    """Trie nodes and code of a ChainStore (or a proxy with the same attributes)."""

    def __init__(self, store: ChainStore) -> None:
        self.store = store

    def trie_node(self, node_hash: bytes) -> bytes | None:
        """The stored node with this hash, or None. Raises StateUnavailable during a restart."""
        try:
            topic = self.store.db.trie_nodes
        except RuntimeError as exc:  # LiveStore's StoreUnavailable
            raise StateUnavailable(f"cannot read trie nodes now: {exc}") from exc
        return topic.get(node_hash)

    def code(self, code_hash: bytes) -> bytes | None:
        """The stored code with this hash, or None. Raises StateUnavailable during a restart."""
        try:
            topic = self.store.db.code
        except RuntimeError as exc:  # LiveStore's StoreUnavailable
            raise StateUnavailable(f"cannot read code now: {exc}") from exc
        return topic.get(code_hash)
