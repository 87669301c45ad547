"""A small in-memory Merkle Patricia trie, enough to rebuild a range of leaves between two proof
paths and hash it: nodes decoded from proofs, unresolved subtrees kept as their hashes.

Keys are nibble tuples ending with the terminator 16, as in go-ethereum's "hex" key form.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sha3 import keccak_256

from khipu.nibbles import TERMINATOR, Nibbles, hex_prefix_decode, hex_prefix_encode, key_nibbles
from khipu.p2p import wire
from khipu.p2p.errors import P2PError, PeerMisbehaved


class BadProof(P2PError):
    """A range proof that does not prove what the response claims."""


@dataclass
class HashRef:
    """A subtree known only by its hash."""

    hash: bytes


@dataclass
class Value:
    data: bytes


@dataclass
class Short:
    """An extension (key without terminator) or a leaf (key ending with the terminator)."""

    key: Nibbles
    child: Node


@dataclass
class Branch:
    children: list[Node | None] = field(default_factory=lambda: [None] * 17)


Node = HashRef | Value | Short | Branch


def key_to_nibbles(key: bytes) -> Nibbles:
    """A byte key as nibbles plus the terminator."""
    return (*key_nibbles(key), TERMINATOR)


def compact_to_nibbles(compact: bytes) -> Nibbles:
    """A hex-prefix (compact) key as nibbles, with the terminator if it is flagged as a leaf's.

    Raises BadProof for an empty key.
    """
    if not compact:
        raise BadProof("empty hex-prefix key")
    path, leaf = hex_prefix_decode(compact)
    return (*path, TERMINATOR) if leaf else path


def requested_path(compact: bytes) -> Nibbles | None:
    """A GetTrieNodes path (compact) as nibbles: empty is the root; None if it is not a
    hex-prefix key."""
    if not compact:
        return ()
    try:
        return compact_to_nibbles(compact)
    except BadProof:
        return None


def _nibbles_to_compact(nibbles: Nibbles) -> bytes:
    leaf = bool(nibbles) and nibbles[-1] == TERMINATOR
    return hex_prefix_encode(nibbles[:-1] if leaf else nibbles, leaf)


def decode_node(item: wire.Item) -> Node:
    """A trie node from its decoded RLP; raise BadProof if it is not one."""
    if not isinstance(item, list):
        raise BadProof("trie node is not a list")
    if len(item) == 17:
        branch = Branch()
        for index in range(16):
            branch.children[index] = _decode_reference(item[index])
        value = item[16]
        if not isinstance(value, bytes):
            raise BadProof("branch value is not a string")
        branch.children[16] = Value(value) if value else None
        return branch
    if len(item) == 2:
        try:
            key = compact_to_nibbles(wire.as_bytes(item[0], "node key"))
        except PeerMisbehaved as exc:
            raise BadProof(str(exc)) from exc
        if key and key[-1] == TERMINATOR:
            if not isinstance(item[1], bytes):
                raise BadProof("leaf value is not a string")
            return Short(key, Value(item[1]))
        child = _decode_reference(item[1])
        if child is None:
            raise BadProof("extension without child")
        return Short(key, child)
    raise BadProof(f"trie node has {len(item)} items")


def _decode_reference(item: wire.Item) -> Node | None:
    if isinstance(item, list):
        return decode_node(item)  # embedded node (its RLP is under 32 bytes)
    if item == b"":
        return None
    if len(item) == 32:
        return HashRef(item)
    raise BadProof(f"child reference of {len(item)} bytes")


def _encode(node: Node) -> bytes:
    """The RLP of a node, children as hashes or embedded nodes (written out as bytes: this is
    the inner loop of range-proof verification)."""
    if isinstance(node, Short):
        child = node.child
        reference = wire.encode(child.data) if isinstance(child, Value) else _reference(child)
        return wire.encode_raw_list([wire.encode(_nibbles_to_compact(node.key)), reference])
    if isinstance(node, Branch):
        items = [b"\x80" if c is None else _reference(c) for c in node.children[:16]]
        value = node.children[16]
        items.append(wire.encode(value.data) if isinstance(value, Value) else b"\x80")
        return wire.encode_raw_list(items)
    raise BadProof(f"cannot encode a bare {type(node).__name__}")


def _reference(node: Node) -> bytes:
    """How a parent's RLP refers to `node`: its hash, or the node itself if under 32 bytes."""
    if isinstance(node, HashRef):
        return b"\xa0" + node.hash
    encoded = _encode(node)
    return encoded if len(encoded) < 32 else b"\xa0" + _keccak(encoded)


def _keccak(data: bytes) -> bytes:
    digest: bytes = keccak_256(data).digest()  # pysha3: several times pycryptodome's speed
    return digest


def root_hash(node: Node | None) -> bytes:
    """The hash of a trie whose root is `node` (the empty trie for None)."""
    if node is None:
        return _keccak(b"\x80")
    if isinstance(node, HashRef):
        return node.hash
    return _keccak(_encode(node))


def insert(node: Node | None, key: Nibbles, value: Node) -> Node:
    """Insert `value` at `key` below `node`; return the new subtree root.

    Raises BadProof if the key leads into a subtree known only by its hash: in a range proof
    that means a leaf outside the proven range.
    """
    if not key:
        return value
    if node is None:
        return Short(key, value)
    if isinstance(node, Short):
        match = _common_prefix(key, node.key)
        if match == len(node.key):
            node.child = insert(node.child, key[match:], value)
            return node
        branch = Branch()
        branch.children[node.key[match]] = insert(None, node.key[match + 1 :], node.child)
        branch.children[key[match]] = insert(None, key[match + 1 :], value)
        return branch if match == 0 else Short(key[:match], branch)
    if isinstance(node, Branch):
        node.children[key[0]] = insert(node.children[key[0]], key[1:], value)
        return node
    raise BadProof("a leaf of the range falls into a subtree the proof left out")


def _common_prefix(left: Nibbles, right: Nibbles) -> int:
    length = 0
    for a, b in zip(left, right, strict=False):
        if a != b:
            break
        length += 1
    return length
