"""Verification of snap/1 range proofs (devp2p caps/snap.md), after go-ethereum's
VerifyRangeProof: rebuild the trie from the two edge proofs with everything between them removed,
insert the returned leaves, and compare the root. It also tells whether more leaves follow.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from khipu.nibbles import Nibbles
from khipu.p2p import wire
from khipu.p2p.errors import PeerMisbehaved
from khipu.p2p.keys import keccak256
from khipu.p2p.snap.trie_nodes import (
    BadProof,
    Branch,
    HashRef,
    Node,
    Short,
    Value,
    decode_node,
    insert,
    key_to_nibbles,
    root_hash,
)


def verify_range_proof(
    root: bytes,
    first_key: bytes,
    keys: Sequence[bytes],
    values: Sequence[bytes],
    proof: Sequence[bytes],
) -> bool:
    """Check that `keys`/`values` are exactly the trie's leaves from `first_key` to the last key.

    Returns True if the trie holds more leaves after the last one. Raises BadProof if the keys
    are unsorted, a value is empty, a proof node is missing or the rebuilt root differs.
    """
    if len(keys) != len(values):
        raise BadProof(f"{len(keys)} keys but {len(values)} values")
    for previous, current in itertools.pairwise(keys):
        if previous >= current:
            raise BadProof("range keys are not strictly increasing")
    if any(not value for value in values):
        raise BadProof("range holds an empty value")
    if not proof:  # the whole trie must be in the response
        trie: Node | None = None
        for key, value in zip(keys, values, strict=True):
            trie = insert(trie, key_to_nibbles(key), Value(value))
        if root_hash(trie) != root:
            raise BadProof("leaves without proof do not form the whole trie")
        return False
    nodes = {keccak256(node): node for node in proof}
    if not keys:
        tree, found = _proof_to_path(root, None, first_key, nodes, allow_absent=True)
        if found is not None or _has_right_element(tree, first_key):
            raise BadProof("empty range, but the proof shows leaves after the origin")
        return False
    last_key = keys[-1]
    if len(keys) == 1 and first_key == last_key:
        tree, found = _proof_to_path(root, None, first_key, nodes, allow_absent=False)
        if found != values[0]:
            raise BadProof("the proven value differs from the returned one")
        return _has_right_element(tree, first_key)
    if first_key >= last_key or len(first_key) != len(last_key):
        raise BadProof("range origin must be shorter-or-equal and before the last key")
    tree, _ = _proof_to_path(root, None, first_key, nodes, allow_absent=True)
    tree, _ = _proof_to_path(root, tree, last_key, nodes, allow_absent=True)
    rebuilt: Node | None = None if _unset_internal(tree, first_key, last_key) else tree
    for key, value in zip(keys, values, strict=True):
        rebuilt = insert(rebuilt, key_to_nibbles(key), Value(value))
    if root_hash(rebuilt) != root:
        raise BadProof(f"rebuilt root 0x{root_hash(rebuilt).hex()} is not 0x{root.hex()}")
    return _has_right_element(rebuilt, last_key)


def _resolve(node_hash: bytes, nodes: dict[bytes, bytes]) -> Node:
    raw = nodes.get(node_hash)
    if raw is None:
        raise BadProof(f"proof lacks node 0x{node_hash.hex()}")
    try:
        return decode_node(wire.decode(raw, "proof node"))
    except PeerMisbehaved as exc:
        raise BadProof(str(exc)) from exc


def _step(node: Node, key: Nibbles) -> tuple[Nibbles, Node | None]:
    """One step down the path of `key`: the remaining key and the child (None if absent)."""
    if isinstance(node, Short):
        if key[: len(node.key)] != node.key:
            return (), None
        return key[len(node.key) :], node.child
    if isinstance(node, Branch):
        return key[1:], node.children[key[0]]
    return (), None


def _proof_to_path(
    root: bytes, tree: Node | None, key: bytes, nodes: dict[bytes, bytes], allow_absent: bool
) -> tuple[Node, bytes | None]:
    """Resolve the proof nodes along `key` into `tree`; return the tree and the value found."""
    tree = tree if tree is not None else _resolve(root, nodes)
    parent, path = tree, key_to_nibbles(key)
    while True:
        rest, child = _step(parent, path)
        if child is None:
            if allow_absent:
                return tree, None
            raise BadProof(f"proof does not contain key 0x{key.hex()}")
        if isinstance(child, (Short, Branch)):
            parent, path = child, rest
            continue
        if isinstance(child, HashRef):
            child = _resolve(child.hash, nodes)
            if isinstance(parent, Short):
                parent.child = child
            elif isinstance(parent, Branch):
                parent.children[path[0]] = child
            if isinstance(child, Value):
                return tree, child.data
            parent, path = child, rest
            continue
        assert isinstance(child, Value)
        return tree, child.data


def _compare(left: Nibbles, right: Nibbles) -> int:
    return (left > right) - (left < right)


def _unset_internal(tree: Node, first: bytes, last: bytes) -> bool:
    """Remove every reference strictly between the two edge paths; True if the whole trie
    lies inside the range (so it is rebuilt from the leaves alone)."""
    left, right = key_to_nibbles(first), key_to_nibbles(last)
    node, pos = tree, 0
    parent: Node | None = None
    fork_left = fork_right = 0
    while True:
        if isinstance(node, Short):
            size = len(node.key)
            fork_left = _compare(left[pos : pos + size], node.key)
            fork_right = _compare(right[pos : pos + size], node.key)
            if fork_left or fork_right:
                break
            parent, node, pos = node, node.child, pos + size
        elif isinstance(node, Branch):
            left_child, right_child = node.children[left[pos]], node.children[right[pos]]
            if left_child is None or right_child is None or left_child is not right_child:
                break
            parent, node, pos = node, left_child, pos + 1
        else:
            raise BadProof("edge paths end inside a leaf")
    if isinstance(node, Branch):
        for index in range(left[pos] + 1, right[pos]):
            node.children[index] = None
        _unset(node, node.children[left[pos]], left, pos + 1, remove_left=False)
        _unset(node, node.children[right[pos]], right, pos + 1, remove_left=True)
        return False
    assert isinstance(node, Short)
    if fork_left == fork_right != 0:
        raise BadProof("empty range: both edges fall on the same side of a leaf")
    if fork_left and fork_right:  # the short node lies wholly inside the range
        return _drop_from(parent, left, pos)
    if fork_right:  # the left edge runs through this node; the right edge is past it
        if isinstance(node.child, Value):
            return _drop_from(parent, left, pos)
        _unset(node, node.child, left, pos + len(node.key), remove_left=False)
        return False
    if fork_left:
        if isinstance(node.child, Value):
            return _drop_from(parent, right, pos)
        _unset(node, node.child, right, pos + len(node.key), remove_left=True)
    return False


def _drop_from(parent: Node | None, key: Nibbles, pos: int) -> bool:
    if parent is None:
        return True
    assert isinstance(parent, Branch)
    parent.children[key[pos - 1]] = None
    return False


def _unset(parent: Node, child: Node | None, key: Nibbles, pos: int, remove_left: bool) -> None:
    """Below the fork, remove the references on the inner side of one edge path."""
    if isinstance(child, Branch):
        if remove_left:
            for index in range(key[pos]):
                child.children[index] = None
        else:
            for index in range(key[pos] + 1, 16):
                child.children[index] = None
        _unset(child, child.children[key[pos]], key, pos + 1, remove_left)
    elif isinstance(child, Short):
        size = len(child.key)
        if key[pos : pos + size] != child.key:
            order = _compare(child.key, key[pos:])
            if (remove_left and order < 0) or (not remove_left and order > 0):
                assert isinstance(parent, Branch)
                parent.children[key[pos - 1]] = None  # the subtree lies inside the range
            return
        if isinstance(child.child, Value):
            assert isinstance(parent, Branch)
            parent.children[key[pos - 1]] = None
            return
        _unset(child, child.child, key, pos + size, remove_left)


def _has_right_element(node: Node | None, key: bytes) -> bool:
    path, pos = key_to_nibbles(key), 0
    while node is not None:
        if isinstance(node, Branch):
            if any(node.children[i] is not None for i in range(path[pos] + 1, 16)):
                return True
            node, pos = node.children[path[pos]], pos + 1
        elif isinstance(node, Short):
            size = len(node.key)
            if path[pos : pos + size] != node.key:
                return _compare(node.key, path[pos:]) > 0
            node, pos = node.child, pos + size
        else:
            return False
    return False
