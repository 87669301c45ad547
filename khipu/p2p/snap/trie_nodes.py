"""A small in-memory Merkle Patricia trie, enough to rebuild a range of leaves between two proof
paths and hash it: nodes decoded from proofs, unresolved subtrees kept as their hashes.

Keys are nibble tuples ending with the terminator 16, as in go-ethereum's "hex" key form.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from khipu.p2p import wire
from khipu.p2p.errors import P2PError, PeerMisbehaved
from khipu.p2p.keys import keccak256

TERMINATOR = 16
Nibbles = tuple[int, ...]


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
    nibbles = []
    for byte in key:
        nibbles += [byte >> 4, byte & 0x0F]
    return (*nibbles, TERMINATOR)


def compact_to_nibbles(compact: bytes) -> Nibbles:
    """A hex-prefix (compact) key as nibbles, with the terminator if it is flagged as a leaf's.

    Raises BadProof for an empty key.
    """
    if not compact:
        raise BadProof("empty hex-prefix key")
    flag = compact[0] >> 4
    # hex digits turned into nibble values: one C-level pass instead of a loop per byte
    nibbles = compact.hex().encode().translate(_NIBBLE_VALUES)[1 if flag & 1 else 2 :]
    return (*nibbles, TERMINATOR) if flag & 2 else tuple(nibbles)


_NIBBLE_VALUES = bytes.maketrans(b"0123456789abcdef", bytes(range(16)))


def _nibbles_to_compact(nibbles: Nibbles) -> bytes:
    leaf = bool(nibbles) and nibbles[-1] == TERMINATOR
    body = list(nibbles[:-1] if leaf else nibbles)
    flag = (2 if leaf else 0) + (len(body) % 2)
    body = [flag, *body] if len(body) % 2 else [flag, 0, *body]
    return bytes((body[i] << 4) | body[i + 1] for i in range(0, len(body), 2))


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


def _encode(node: Node) -> object:
    """The RLP structure of a node, children as hashes or embedded structures."""
    if isinstance(node, Short):
        child = node.child.data if isinstance(node.child, Value) else _reference(node.child)
        return [_nibbles_to_compact(node.key), child]
    if isinstance(node, Branch):
        items: list[object] = [b"" if c is None else _reference(c) for c in node.children[:16]]
        value = node.children[16]
        items.append(value.data if isinstance(value, Value) else b"")
        return items
    raise BadProof(f"cannot encode a bare {type(node).__name__}")


def _reference(node: Node) -> object:
    if isinstance(node, HashRef):
        return node.hash
    structure = _encode(node)
    encoded = wire.encode(structure)
    return structure if len(encoded) < 32 else keccak256(encoded)


def root_hash(node: Node | None) -> bytes:
    """The hash of a trie whose root is `node` (the empty trie for None)."""
    if node is None:
        return keccak256(wire.encode(b""))
    if isinstance(node, HashRef):
        return node.hash
    return keccak256(wire.encode(_encode(node)))


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
