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
from eth_typing import Hash32
from trie.constants import BLANK_NODE, BLANK_NODE_HASH
from trie.exceptions import MissingTrieNode
from trie.hexary import HexaryTrie
from trie.typing import Nibbles

# About 1.3 KB per decoded branch node: some 65 MB per process when full.
MAX_CACHED_NODES = 50_000

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


def forget_decoded_nodes() -> None:
    """Empty this process's decoded-node cache (a node is then read from its store again)."""
    _decoded.clear()


class NodeCachingTrie(HexaryTrie):
    """A HexaryTrie whose node reads go through the per-process decoded-node cache.

    HexaryTrie edits the nodes it reads in place when it writes, so every node handed out is a
    fresh list: a shallow copy of a cached node (its embedded children are reached only through
    `get_node` again, which deep-copies them).
    """

    __slots__ = ()

    def get(self, key: bytes) -> bytes:
        """The value at `key` (b"" if absent), without py-trie's per-node decoding.

        Raises trie's MissingTrieNode if a node on the path is not in the store.
        """
        return lookup(self.db, self.root_hash, key)

    def get_node(self, node_hash: Any) -> Any:
        if isinstance(node_hash, list):
            return copy.deepcopy(node_hash)
        if node_hash in (BLANK_NODE, BLANK_NODE_HASH):
            return BLANK_NODE
        if len(node_hash) < 32:
            return super().get_node(node_hash)  # type: ignore[no-untyped-call]
        node = decoded_node(self.db, node_hash)
        return list(node) if isinstance(node, list) else node


def lookup(store: NodeStore, root_hash: bytes, key: bytes) -> bytes:
    """The value stored at `key` in the trie at `root_hash`, b"" if there is none.

    Raises trie's MissingTrieNode (as HexaryTrie.get does) if a node on the path is missing.
    """
    if root_hash == BLANK_NODE_HASH:
        return b""
    nibbles = bytes(n for byte in key for n in (byte >> 4, byte & 0x0F))
    position = 0
    reference: Any = root_hash
    while True:
        if isinstance(reference, list):
            node = reference
        elif reference == b"":
            return b""
        else:
            try:
                node = decoded_node(store, reference)
            except KeyError:
                missing, root = Hash32(reference), Hash32(root_hash)
                raise MissingTrieNode(
                    missing, root, key, Nibbles(tuple(nibbles[:position]))
                ) from None
        if len(node) == 17:
            if position == len(nibbles):
                return bytes(node[16])
            reference = node[nibbles[position]]
            position += 1
            continue
        encoded_path = node[0]
        flags = encoded_path[0] >> 4
        path = bytes(n for byte in encoded_path for n in (byte >> 4, byte & 0x0F))
        path = path[1:] if flags & 1 else path[2:]
        end = position + len(path)
        if flags & 2:  # a leaf
            return bytes(node[1]) if nibbles[position:] == path else b""
        if nibbles[position:end] != path:
            return b""
        position = end
        reference = node[1]
