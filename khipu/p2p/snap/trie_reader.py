"""Reading Merkle Patricia tries node by node from a StateReader, as a snap/1 server needs:
leaves in key order from an origin, the proof of a key's path, a leaf by key, and the node at a
path. Nothing loads a whole trie; every node read is counted so that a request can be cut off.

Nodes are kept as their decoded RLP (`[16 children, value]` for a branch, `[compact key,
child or value]` for an extension or leaf); a child is a 32-byte hash or, when its RLP is under
32 bytes, the embedded node itself.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from khipu.nibbles import TERMINATOR, Nibbles, key_nibbles, nibbles_key
from khipu.p2p import wire
from khipu.p2p.errors import P2PError, PeerMisbehaved
from khipu.p2p.snap.abc import StateReader
from khipu.p2p.snap.trie_nodes import BadProof, compact_to_nibbles

KEY_NIBBLES = 64  # the account and storage tries are keyed by 32-byte hashes


class MissingTrieNode(P2PError):
    """A trie node the walk needs is not in the store."""

    def __init__(self, node_hash: bytes, root: bytes) -> None:
        super().__init__(f"trie node 0x{node_hash.hex()} of root 0x{root.hex()} is not stored")
        self.node_hash = node_hash
        self.root = root


class MalformedTrieNode(P2PError):
    """Stored bytes under a node hash are not a trie node of a hash-keyed trie (a corrupt
    store, or a root that is not an account or storage trie)."""


def _nibbles_key(path: Nibbles, where: bytes) -> bytes:
    """The 32-byte key of a leaf's full path."""
    if len(path) != KEY_NIBBLES:
        raise MalformedTrieNode(f"leaf of {len(path)} nibbles under 0x{where.hex()}")
    return nibbles_key(path)


class TrieReader:
    """The tries of a StateReader, read one node at a time.

    `max_loads` and `deadline` (time.monotonic) bound the work of one request: past either,
    `exhausted` turns True and the caller stops adding items. Loads go on being served after
    that (a proof still completes), so one request costs at most one item's walk over the
    limit.
    """

    def __init__(
        self, state: StateReader, max_loads: int = 1 << 62, deadline: float = float("inf")
    ) -> None:
        self.state = state
        self.max_loads = max_loads
        self.deadline = deadline
        self.loads = 0

    @property
    def exhausted(self) -> bool:
        """True once the request has used up its node loads or its time."""
        return self.loads >= self.max_loads or time.monotonic() >= self.deadline

    def has_root(self, root: bytes) -> bool:
        """True if the root node of the trie `root` is stored."""
        self.loads += 1
        return self.state.trie_node(root) is not None

    def raw(self, node_hash: bytes, root: bytes) -> bytes:
        """The stored RLP of a node. Raises MissingTrieNode if it is not stored."""
        self.loads += 1
        raw = self.state.trie_node(node_hash)
        if raw is None:
            raise MissingTrieNode(node_hash, root)
        return raw

    def node(self, node_hash: bytes, root: bytes) -> list[wire.Item]:
        """A stored node, decoded. Raises MissingTrieNode, or MalformedTrieNode if it does not
        decode as a branch, extension or leaf."""
        return _decoded(self.raw(node_hash, root), node_hash)

    def _child(self, reference: wire.Item, root: bytes) -> list[wire.Item] | None:
        """The node a child reference points to; None for an empty slot."""
        if isinstance(reference, list):
            return _checked(reference, root)
        if not reference:
            return None
        if len(reference) != 32:
            raise MalformedTrieNode(f"child reference of {len(reference)} bytes in 0x{root.hex()}")
        return self.node(reference, root)

    # -- leaves in key order ------------------------------------------------------------------

    def leaves(self, root: bytes, origin: bytes) -> Iterator[tuple[bytes, bytes]]:
        """The (32-byte key, value) leaves with key >= `origin`, in key order, read lazily.

        Raises MissingTrieNode for a node not in the store (the root included) and
        MalformedTrieNode for a node that is not one, or a leaf key that is not 32 bytes.
        """
        yield from self._walk(self.node(root, root), (), key_nibbles(origin), root)

    def _walk(
        self, node: list[wire.Item], path: Nibbles, origin: Nibbles | None, root: bytes
    ) -> Iterator[tuple[bytes, bytes]]:
        """Leaves below `node` (at `path`) in order; `origin` is what is left of the origin's
        path below this node, None once the walk is past it (every leaf counts)."""
        if len(node) == 17:
            first = 0
            if origin is not None:
                if origin:
                    first = origin[0]
                else:
                    origin = None  # the origin is this node's own path: all of it counts
            value = node[16]
            if value and origin is None:
                yield _nibbles_key(path, root), _value(value, root)
            for index in range(first, 16):
                child = self._child(node[index], root)
                if child is None:
                    continue
                below = origin[1:] if origin is not None and index == first else None
                yield from self._walk(child, (*path, index), below, root)
            return
        key = _compact(node[0], root)
        leaf = key[-1:] == (TERMINATOR,)
        if leaf:
            key = key[:-1]
        if origin is not None:
            part = origin[: len(key)]
            if key < part:
                return  # the whole subtree lies before the origin
            origin = origin[len(key) :] if key == part else None
        if leaf:
            if not origin:  # a longer origin would lie after this leaf's key
                yield _nibbles_key((*path, *key), root), _value(node[1], root)
            return
        child = self._child(node[1], root)
        if child is None:
            raise MalformedTrieNode(f"extension without child in 0x{root.hex()}")
        yield from self._walk(child, (*path, *key), origin, root)

    # -- one path -----------------------------------------------------------------------------

    def prove(self, root: bytes, key: bytes) -> list[bytes]:
        """The proof of `key` in the trie `root`, as go-ethereum's Trie.Prove gives it: the RLP
        of every hash-referenced node on the key's path (the root first), down to the leaf or
        to where the path leaves the trie (a proof of absence then). Embedded nodes travel
        inside their parents. Raises MissingTrieNode or MalformedTrieNode."""
        raw = self.raw(root, root)
        proof, node, path = [raw], _decoded(raw, root), key_nibbles(key)
        while True:
            reference, path = _step(node, path, root)
            if reference is None or reference == b"":
                return proof
            if isinstance(reference, list):
                node = _checked(reference, root)
                continue
            if len(reference) != 32:
                raise MalformedTrieNode(f"child reference of {len(reference)} bytes")
            raw = self.raw(reference, root)
            proof.append(raw)
            node = _decoded(raw, reference)

    def get(self, root: bytes, key: bytes) -> bytes | None:
        """The value at `key` in the trie `root`, or None if there is none. Raises
        MissingTrieNode or MalformedTrieNode."""
        node, path = self.node(root, root), key_nibbles(key)
        while True:
            if len(node) == 2:
                compact = _compact(node[0], root)
                if compact[-1:] == (TERMINATOR,):
                    return _value(node[1], root) if compact[:-1] == path else None
            reference, path = _step(node, path, root)
            if reference is None:
                return None
            child = self._child(reference, root)
            if child is None:
                return None
            node = child

    def node_at_path(self, root: bytes, path: Nibbles) -> bytes | None:
        """The RLP of the node reached by following `path` (nibbles, as go-ethereum's
        Trie.GetNode takes them) from the root, if one is stored under its own hash there;
        None if the path ends inside a node, at an embedded node or a value, or runs off the
        trie. Raises MissingTrieNode or MalformedTrieNode."""
        if len(path) > KEY_NIBBLES + 1:
            return None
        root_raw = self.raw(root, root)
        raw: bytes | None = root_raw  # None while at an embedded node
        node, position = _decoded(root_raw, root), 0
        while position < len(path):
            if len(node) == 17:
                if path[position] == TERMINATOR:
                    return None
                reference: wire.Item = node[path[position]]
                position += 1
            else:
                key = _compact(node[0], root)
                if key[-1:] == (TERMINATOR,) or path[position : position + len(key)] != key:
                    return None
                reference = node[1]
                position += len(key)
            if isinstance(reference, list):
                node, raw = _checked(reference, root), None
                continue
            if len(reference) != 32:
                return None
            raw = self.raw(reference, root)
            node = _decoded(raw, reference)
        return raw


def _step(node: list[wire.Item], path: Nibbles, root: bytes) -> tuple[wire.Item | None, Nibbles]:
    """The child reference on `path` below `node` and the rest of the path; None where the
    path ends here or leaves the trie (a leaf, a diverging key)."""
    if len(node) == 17:
        if not path:
            return None, path
        return node[path[0]], path[1:]
    key = _compact(node[0], root)
    if key[-1:] == (TERMINATOR,) or path[: len(key)] != key:
        return None, path
    return node[1], path[len(key) :]


def _decoded(raw: bytes, node_hash: bytes) -> list[wire.Item]:
    """A stored node as its list of items. Branches and leaves hold only strings unless a
    child is embedded, so they are split here directly (a third of the serving time went to
    the general decoder); anything else goes through wire.decode."""
    items = _split_strings(raw)
    if items is None:
        try:
            item = wire.decode(raw, "trie node")
        except PeerMisbehaved as exc:
            raise MalformedTrieNode(f"stored node 0x{node_hash.hex()}: {exc}") from None
        if not isinstance(item, list):
            raise MalformedTrieNode(f"stored node 0x{node_hash.hex()} is not a list")
        items = item
    return _checked(items, node_hash)


def _split_strings(raw: bytes) -> list[wire.Item] | None:
    """The items of an RLP list made only of strings, or None if it is anything else."""
    if not raw or raw[0] < 0xC0:
        return None
    if raw[0] <= 0xF7:
        position, end = 1, 1 + raw[0] - 0xC0
    else:
        position = 1 + raw[0] - 0xF7
        end = position + int.from_bytes(raw[1:position], "big")
    if end != len(raw):
        return None
    items: list[wire.Item] = []
    while position < end:
        first = raw[position]
        if first < 0x80:
            items.append(raw[position : position + 1])
            position += 1
            continue
        if first <= 0xB7:
            start = position + 1
            stop = start + first - 0x80
            if first == 0x81 and stop <= end and raw[start] < 0x80:
                return None  # not canonical: let the strict decoder say so
        elif first < 0xC0:
            start = position + 1 + first - 0xB7
            stop = start + int.from_bytes(raw[position + 1 : start], "big")
        else:
            return None  # an embedded node
        if stop > end:
            return None
        items.append(raw[start:stop])
        position = stop
    return items


def _checked(node: list[wire.Item], where: bytes) -> list[wire.Item]:
    if len(node) not in (2, 17):
        raise MalformedTrieNode(f"a node of {len(node)} items under 0x{where.hex()}")
    return node


def _compact(item: wire.Item, where: bytes) -> Nibbles:
    if not isinstance(item, bytes):
        raise MalformedTrieNode(f"a node key that is a list under 0x{where.hex()}")
    try:
        return compact_to_nibbles(item)
    except BadProof as exc:
        raise MalformedTrieNode(f"{exc} under 0x{where.hex()}") from None


def _value(item: wire.Item, where: bytes) -> bytes:
    if not isinstance(item, bytes) or not item:
        raise MalformedTrieNode(f"a leaf without a byte-string value under 0x{where.hex()}")
    return item
