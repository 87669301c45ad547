"""Checking a TrieNodes answer node by node: each returned node must hash to the reference its
parent holds at the requested path, found by walking from the state root through nodes we know
already (our own, or nodes of the same answer that checked out before it).

A server answers in request order, skipping nodes it lacks and possibly cutting the tail (snap.md,
"TrieNodes"). So the answer is matched the way go-ethereum's snap syncer matches it: each node is
given to the first remaining requested path whose expected hash it has; a node that fits no
remaining path is a lie. A requested path where no node can be (it runs into a leaf, an empty
slot, an embedded node) simply expects nothing.

Before a request goes out, `check_request` makes sure every path can be checked: a path whose
walk needs a node we neither know nor ask for earlier in the same request would leave a correct
answer unverifiable, so it is refused (UnverifiablePath) instead of blaming the peer later.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from khipu.nibbles import TERMINATOR, Nibbles, key_nibbles
from khipu.p2p import wire
from khipu.p2p.errors import P2PError, PeerMisbehaved
from khipu.p2p.keys import keccak256
from khipu.p2p.snap.trie_nodes import BadProof, compact_to_nibbles, requested_path

NodeLookup = Callable[[bytes], bytes | None]  # a known trie node's RLP by its hash, or None
# One requested node: (account hash for a storage trie or None for the account trie, path).
RequestedNode = tuple[bytes | None, bytes]


class UnverifiablePath(P2PError):
    """A GetTrieNodes path whose node could not be checked: the walk to it needs a node that is
    neither known nor requested before it (the requester's mistake, found before sending)."""


class _Blocked(Exception):
    """The walk needs the node with this hash, which is not known."""

    def __init__(self, node_hash: bytes) -> None:
        super().__init__(node_hash.hex())
        self.node_hash = node_hash


def requested_nodes(paths: Sequence[Sequence[bytes]]) -> list[RequestedNode]:
    """The nodes a GetTrieNodes path list asks for, in answer order: `[path]` is one node of the
    account trie, `[account hash, path, ...]` one node per path of that account's storage."""
    flat: list[RequestedNode] = []
    for path_set in paths:
        if len(path_set) == 1:
            flat.append((None, path_set[0]))
        else:
            flat += [(path_set[0], path) for path in path_set[1:]]
    return flat


def check_request(root: bytes, paths: Sequence[Sequence[bytes]], known: NodeLookup) -> None:
    """Raise UnverifiablePath unless the expected hash of every requested node can be found
    from `known` nodes and the nodes requested before it."""
    requested_before: set[bytes] = set()
    for index, (account, compact) in enumerate(requested_nodes(paths)):
        if account is not None and len(account) != 32:
            raise UnverifiablePath(f"path set {index}: account hash of {len(account)} bytes")
        if requested_path(compact) is None:
            raise UnverifiablePath(f"requested node {index}: 0x{compact.hex()} is no path")
        try:
            expected = _expected_hash(known, root, account, compact)
        except _Blocked as blocked:
            if blocked.node_hash in requested_before:
                continue  # checked once the node it depends on arrives
            raise UnverifiablePath(
                f"requested node {index} (path 0x{compact.hex()}) lies below node "
                f"0x{blocked.node_hash.hex()}, which is neither known nor requested before it"
            ) from None
        if expected is not None:
            requested_before.add(expected)


def match_trie_nodes(
    root: bytes, paths: Sequence[Sequence[bytes]], nodes: list[bytes], known: NodeLookup
) -> list[bytes | None]:
    """The answer's `nodes` placed at their requested positions (None where the server had
    none, or the answer was cut before it).

    Raises BadProof naming the first node that hashes to none of the remaining requested
    paths' expected hashes: a node that is not the one asked for.
    """
    verified: dict[bytes, bytes] = {}

    def lookup(node_hash: bytes) -> bytes | None:
        return verified.get(node_hash) or known(node_hash)

    requested = requested_nodes(paths)
    placed: list[bytes | None] = [None] * len(requested)
    position = 0
    for index, (account, compact) in enumerate(requested):
        if position == len(nodes):
            break
        try:
            expected = _expected_hash(lookup, root, account, compact)
        except _Blocked:  # below a node the server did not have: nothing can come here
            continue
        if expected is not None and keccak256(nodes[position]) == expected:
            placed[index] = verified[expected] = nodes[position]
            position += 1
    if position < len(nodes):
        node_hash = keccak256(nodes[position])
        raise BadProof(
            f"trie node {position} of the answer (hash 0x{node_hash.hex()}) is the node of none "
            f"of the requested paths of root 0x{root.hex()}"
        )
    return placed


def _expected_hash(
    lookup: NodeLookup, root: bytes, account: bytes | None, compact: bytes
) -> bytes | None:
    """The hash the node at `compact` must have, None if no hash-referenced node can be there.
    Raises _Blocked for a node the walk needs and `lookup` does not know."""
    path = requested_path(compact)
    if path is None:
        return None
    trie_root = root
    if account is not None:
        storage_root = _storage_root(lookup, root, account) if len(account) == 32 else None
        if storage_root is None:
            return None
        trie_root = storage_root
    return _reference_at(lookup, trie_root, path)


def _reference_at(lookup: NodeLookup, root: bytes, path: Nibbles) -> bytes | None:
    reference: wire.Item = root
    position = 0
    while position < len(path):
        child, position = _step(_node(lookup, reference), path, position)
        if child is None:
            return None
        reference = child
    return reference if isinstance(reference, bytes) and len(reference) == 32 else None


def _storage_root(lookup: NodeLookup, root: bytes, account: bytes) -> bytes | None:
    """The storage root in the account leaf at `account` (a hash), None if there is none."""
    path, position = key_nibbles(account), 0
    reference: wire.Item = root
    while True:
        node = _node(lookup, reference)
        if len(node) == 2:
            key = _key(node[0])
            if key[-1:] == (TERMINATOR,):
                if key[:-1] != path[position:] or not isinstance(node[1], bytes):
                    return None
                try:
                    fields = wire.as_list(wire.decode(node[1], "account"), "account", 4)
                    return wire.as_hash(fields[2], "storage root")
                except PeerMisbehaved as exc:
                    raise BadProof(f"account 0x{account.hex()}: {exc}") from None
        child, position = _step(node, path, position)
        if child is None:
            return None
        reference = child


def _step(node: list[wire.Item], path: Nibbles, position: int) -> tuple[wire.Item | None, int]:
    """The child reference on `path` below `node` and the position after it; None where no
    node lies further along the path."""
    if len(node) == 17:
        if position >= len(path) or path[position] == TERMINATOR:
            return None, position
        child = node[path[position]]
        return (child if child != b"" else None), position + 1
    key = _key(node[0])
    if key[-1:] == (TERMINATOR,) or tuple(path[position : position + len(key)]) != key:
        return None, position
    return node[1], position + len(key)


def _node(lookup: NodeLookup, reference: wire.Item) -> list[wire.Item]:
    """The decoded node a reference stands for (embedded, or looked up by hash)."""
    if isinstance(reference, list):
        item: wire.Item = reference
    else:
        raw = lookup(reference)
        if raw is None:
            raise _Blocked(reference)
        try:
            item = wire.decode(raw, "trie node")
        except PeerMisbehaved as exc:
            raise BadProof(f"trie node 0x{reference.hex()}: {exc}") from None
    if not isinstance(item, list) or len(item) not in (2, 17):
        raise BadProof("a trie node that is neither a branch nor a short node")
    return item


def _key(item: wire.Item) -> Nibbles:
    if not isinstance(item, bytes):
        raise BadProof("a short node whose key is a list")
    return compact_to_nibbles(item)
