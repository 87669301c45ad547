"""Decoded trie nodes kept per process, keyed by hash.

A trie node is named by the hash of its encoding, so a decoded node never goes stale. py-trie
decodes every node on every lookup; the parallel executor's workers and merge look up the same
upper levels of the account trie for every transaction of every block. `decoded_node` keeps them
decoded (bounded: the cache is dropped whole when it is full), and `NodeCachingTrie` is a
`HexaryTrie` that reads through it.
"""

from __future__ import annotations

import copy
from typing import Any, Protocol

import rlp
from trie.constants import BLANK_NODE, BLANK_NODE_HASH
from trie.hexary import HexaryTrie

MAX_CACHED_NODES = 200_000

_decoded: dict[bytes, Any] = {}


class NodeStore(Protocol):
    """Where trie nodes are read: node hash -> RLP-encoded node, KeyError if absent."""

    def __getitem__(self, key: bytes) -> bytes: ...


def decoded_node(store: NodeStore, node_hash: bytes) -> Any:
    """The RLP-decoded node `node_hash` of `store` (KeyError if absent). Callers must not
    modify what they get: it is shared."""
    node = _decoded.get(node_hash)
    if node is None:
        node = rlp.decode(store[node_hash])
        if len(_decoded) >= MAX_CACHED_NODES:
            _decoded.clear()
        _decoded[node_hash] = node
    return node


class NodeCachingTrie(HexaryTrie):
    """A HexaryTrie whose node reads go through the per-process decoded-node cache.

    HexaryTrie edits the nodes it reads in place when it writes, so every node handed out is a
    fresh list: a shallow copy of a cached node (its embedded children are reached only through
    `get_node` again, which deep-copies them).
    """

    __slots__ = ()

    def get_node(self, node_hash: Any) -> Any:
        if isinstance(node_hash, list):
            return copy.deepcopy(node_hash)
        if node_hash in (BLANK_NODE, BLANK_NODE_HASH):
            return BLANK_NODE
        if len(node_hash) < 32:
            return super().get_node(node_hash)  # type: ignore[no-untyped-call]
        node = decoded_node(self.db, node_hash)
        return list(node) if isinstance(node, list) else node
