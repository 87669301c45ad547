"""A batch of key updates applied to a hexary Merkle-Patricia trie in one pass.

py-trie's `HexaryTrie.__setitem__` walks, decodes and re-encodes the whole path from the root for
every key, so a block touching a few hundred accounts encodes the root node a few hundred times.
`update_trie` takes all updates of a block at once (sorted by key), loads each touched node from
the store once, applies the updates beneath it, and encodes and hashes each new node once. It
gives exactly the root `HexaryTrie` gives for the same updates, and returns the new nodes keyed by
hash (every node reachable from the new root is either already in the store or among them).

`ordered_trie_root` is the same algorithm on an empty trie: the root of a list of values keyed by
`rlp(index)` (transactions, receipts, withdrawals), with nothing read or stored.

Nodes in flight are plain Python objects; an untouched subtree stays what its parent held: a
32-byte hash, or (for a node whose encoding is under 32 bytes) the decoded node embedded in it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import rlp
from eth_hash.auto import keccak
from eth_typing import Hash32

from khipu.execution.node_cache import NodeStore, decoded_node
from khipu.execution.rlp_items import length_prefix
from khipu.nibbles import Nibbles, hex_prefix_decode, hex_prefix_encode, key_nibbles

BLANK_ROOT = Hash32(keccak(b"\x80"))

Raw = bytes | list[Any]  # a node as RLP-decoded: b"" (blank), a hash, or a list


class MissingTrieNodeError(LookupError):
    """A node needed to apply the updates is not in the store."""

    def __init__(self, node_hash: bytes, root_hash: bytes, prefix: Nibbles) -> None:
        self.node_hash = node_hash
        self.root_hash = root_hash
        self.prefix = prefix
        path = "".join(f"{n:x}" for n in prefix)
        super().__init__(
            f"trie node 0x{node_hash.hex()} (path 0x{path or '-'} under root 0x{root_hash.hex()}) "
            "is missing from the store"
        )


class InvalidTrieNodeError(ValueError):
    """A node read from the store is not a valid hexary trie node."""


@dataclass(frozen=True)
class TrieUpdate:
    """The new root of a trie and the nodes created to reach it (hash -> RLP encoding)."""

    root_hash: Hash32
    nodes: dict[bytes, bytes]


class _Leaf:
    __slots__ = ("path", "value")

    def __init__(self, path: Nibbles, value: bytes) -> None:
        self.path = path
        self.value = value


class _Extension:
    __slots__ = ("child", "path")

    def __init__(self, path: Nibbles, child: Node) -> None:
        self.path = path
        self.child = child


class _Branch:
    __slots__ = ("children", "value")

    def __init__(self, children: list[Node], value: bytes) -> None:
        self.children = children
        self.value = value


# None: blank. bytes (a hash) or list (an embedded node): an untouched subtree as stored.
Node = None | bytes | list[Any] | _Leaf | _Extension | _Branch
Loaded = None | _Leaf | _Extension | _Branch
Update = tuple[Nibbles, bytes]  # full key in nibbles, new value (b"": delete)


def update_trie(
    store: NodeStore, root_hash: bytes, updates: Mapping[bytes, bytes | None]
) -> TrieUpdate:
    """Apply `updates` (trie key -> new value; None or b"" deletes) to the trie at `root_hash`.

    Returns the new root and the new nodes, exactly as `HexaryTrie` would compute them (the
    root node is stored even if its encoding is under 32 bytes; a blank trie stores nothing).
    Raises MissingTrieNodeError if a node on a touched path is not in `store`, and
    InvalidTrieNodeError if one does not decode as a trie node.
    """
    batch = _Batch(store, root_hash)
    items = sorted((key_nibbles(key), value or b"") for key, value in updates.items())
    root: Node = None if root_hash == BLANK_ROOT else root_hash
    new_root = batch.update(root, items, 0)
    return TrieUpdate(batch.finish(new_root), batch.nodes)


def ordered_trie(values: Sequence[bytes]) -> TrieUpdate:
    """The trie mapping rlp(index) -> value for each value (transactions, receipts,
    withdrawals): its root and all its nodes, as py-evm's `make_trie_root_and_nodes` gives."""
    batch = _Batch({}, BLANK_ROOT)
    items = sorted(
        (key_nibbles(rlp.encode(index)), value) for index, value in enumerate(values) if value
    )
    return TrieUpdate(batch.finish(batch.build(items, 0)), batch.nodes)


def ordered_trie_root(values: Sequence[bytes]) -> Hash32:
    """The root of `ordered_trie(values)`."""
    return ordered_trie(values).root_hash


class _Batch:
    """One application of sorted updates; collects the new nodes."""

    def __init__(self, store: NodeStore, root_hash: bytes) -> None:
        self.store = store
        self.root_hash = root_hash
        self.nodes: dict[bytes, bytes] = {}

    # -- applying updates ----------------------------------------------------------------

    def update(self, node: Node, updates: list[Update], depth: int) -> Node:
        """`node` (at `depth` nibbles) with `updates` (sorted, all under it) applied."""
        if not updates:
            return node
        loaded = self.load(node, updates[0][0][:depth])
        if loaded is None:
            return self.build([u for u in updates if u[1]], depth)
        if isinstance(loaded, _Leaf):
            return self.update_leaf(loaded, updates, depth)
        if isinstance(loaded, _Extension):
            return self.update_extension(loaded, updates, depth)
        return self.update_branch(loaded, updates, depth)

    def update_leaf(self, leaf: _Leaf, updates: list[Update], depth: int) -> Node:
        # Rebuild the subtree from the leaf's entry and the updates (an update to the leaf's
        # own key replaces it); sorted order keeps a branch value before its children.
        entries = {leaf.path: leaf.value}
        for key, value in updates:
            entries[key[depth:]] = value
        return self.build(sorted((path, value) for path, value in entries.items() if value), 0)

    def update_extension(self, extension: _Extension, updates: list[Update], depth: int) -> Node:
        path = extension.path
        end = depth + len(path)
        if all(key[depth:end] == path for key, _value in updates):
            child = self.update(extension.child, updates, end)
            return self.join(path, child, updates[0][0][:end])
        # Some key leaves the extension: split it into a branch holding the rest.
        rest = path[1:]
        branch = _Branch([None] * 16, b"")
        branch.children[path[0]] = _Extension(rest, extension.child) if rest else extension.child
        return self.update_branch(branch, updates, depth)

    def update_branch(self, branch: _Branch, updates: list[Update], depth: int) -> Node:
        start = 0
        if len(updates[0][0]) == depth:  # the branch's own value
            branch.value = updates[0][1]
            start = 1
        while start < len(updates):
            nibble = updates[start][0][depth]
            end = start + 1
            while end < len(updates) and updates[end][0][depth] == nibble:
                end += 1
            branch.children[nibble] = self.update(
                branch.children[nibble], updates[start:end], depth + 1
            )
            start = end
        return self.normalize_branch(branch, updates[0][0][:depth])

    def normalize_branch(self, branch: _Branch, prefix: Nibbles) -> Node:
        """A branch left with one item becomes a leaf or extension, with none a blank."""
        used = [index for index, child in enumerate(branch.children) if child is not None]
        if len(used) + (1 if branch.value else 0) >= 2:
            return branch
        if not used:
            return _Leaf((), branch.value) if branch.value else None
        nibble = used[0]
        return self.join((nibble,), branch.children[nibble], (*prefix, nibble))

    def join(self, path: Nibbles, child: Node, prefix: Nibbles) -> Node:
        """An extension by `path` to `child`, merged with the child if that is not a branch."""
        loaded = self.load(child, prefix) if isinstance(child, (bytes, list)) else child
        if loaded is None:
            return None
        if isinstance(loaded, _Leaf):
            return _Leaf(path + loaded.path, loaded.value)
        if isinstance(loaded, _Extension):
            return _Extension(path + loaded.path, loaded.child)
        return _Extension(path, child)  # keep the branch as it was referenced

    def build(self, items: list[Update], depth: int) -> Node:
        """A new subtree holding `items` (sorted, values non-empty, keys from `depth`)."""
        if not items:
            return None
        if len(items) == 1:
            return _Leaf(items[0][0][depth:], items[0][1])
        first, last = items[0][0], items[-1][0]
        common, limit = depth, min(len(first), len(last))
        while common < limit and first[common] == last[common]:
            common += 1
        if common > depth:
            return _Extension(first[depth:common], self.build(items, common))
        branch = _Branch([None] * 16, b"")
        start = 0
        if len(first) == depth:
            branch.value = items[0][1]
            start = 1
        while start < len(items):
            nibble = items[start][0][depth]
            end = start + 1
            while end < len(items) and items[end][0][depth] == nibble:
                end += 1
            branch.children[nibble] = self.build(items[start:end], depth + 1)
            start = end
        return branch

    # -- reading and writing nodes ------------------------------------------------------

    def load(self, node: Node, prefix: Nibbles) -> Loaded:
        """`node` as an object, reading it from the store if it is a hash."""
        if node is None or isinstance(node, (_Leaf, _Extension, _Branch)):
            return node
        raw: Raw = node
        if isinstance(node, bytes):
            if node == b"":
                return None
            try:
                raw = decoded_node(self.store, node)
            except KeyError:
                raise MissingTrieNodeError(node, self.root_hash, prefix) from None
        return _from_raw(raw, node)

    def finish(self, root: Node) -> Hash32:
        """The hash of `root`, storing it even if it is small."""
        if root is None:
            return BLANK_ROOT
        if isinstance(root, bytes):
            return Hash32(root)
        raw = self.encode(root)
        if isinstance(raw, bytes) and len(raw) == 32:
            return Hash32(raw)
        encoded = encode_rlp(raw)
        node_hash = keccak(encoded)
        self.nodes[node_hash] = encoded
        return Hash32(node_hash)

    def encode(self, node: Node) -> Raw:
        """How a parent refers to `node`: its hash, or the node itself if under 32 bytes."""
        if node is None:
            return b""
        if isinstance(node, (bytes, list)):
            return node
        raw: list[Any]
        if isinstance(node, _Leaf):
            raw = [hex_prefix_encode(node.path, True), node.value]
        elif isinstance(node, _Extension):
            raw = [hex_prefix_encode(node.path, False), self.encode(node.child)]
        else:
            raw = [self.encode(child) for child in node.children]
            raw.append(node.value)
        encoded = encode_rlp(raw)
        if len(encoded) < 32:
            return raw
        node_hash = keccak(encoded)
        self.nodes[node_hash] = encoded
        return node_hash


def _from_raw(raw: Raw, where: Any) -> Loaded:
    if raw == b"":
        return None
    if not isinstance(raw, list):
        raise InvalidTrieNodeError(f"trie node {where!r} is not a list")
    if len(raw) == 17:
        children: list[Node] = [None if child == b"" else child for child in raw[:16]]
        return _Branch(children, raw[16])
    if len(raw) == 2 and isinstance(raw[0], bytes) and raw[0]:
        path, leaf = hex_prefix_decode(raw[0])
        if leaf:
            return _Leaf(path, raw[1])
        return _Extension(path, raw[1])
    raise InvalidTrieNodeError(f"trie node {where!r} has {len(raw)} items")


def encode_rlp(item: Raw) -> bytes:
    """RLP of nested lists of bytes (the only shapes trie nodes have), without sedes."""
    if isinstance(item, bytes):
        if len(item) == 1 and item[0] < 0x80:
            return item
        return length_prefix(len(item), 0x80) + item
    payload = b"".join([encode_rlp(element) for element in item])
    return length_prefix(len(payload), 0xC0) + payload
