"""Random Ethereum-shaped states for snap serving tests: an account trie built with py-trie whose
accounts carry storage tries and code, all nodes in one dict, served as a StateReader."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import rlp
from trie import HexaryTrie

from khipu.p2p import wire
from khipu.p2p.keys import keccak256
from khipu.p2p.snap.messages import EMPTY_CODE_HASH, EMPTY_ROOT


@dataclass
class DictState:
    """A StateReader over dicts; counts the trie nodes read."""

    nodes: dict[bytes, bytes] = field(default_factory=dict)
    codes: dict[bytes, bytes] = field(default_factory=dict)
    reads: int = 0

    def trie_node(self, node_hash: bytes) -> bytes | None:
        self.reads += 1
        return self.nodes.get(node_hash)

    def code(self, code_hash: bytes) -> bytes | None:
        return self.codes.get(code_hash)


@dataclass
class RandomState:
    """A state and what it holds: full account bodies and slots by hash."""

    state: DictState
    root: bytes
    accounts: dict[bytes, bytes]
    storage: dict[bytes, dict[bytes, bytes]]
    storage_roots: dict[bytes, bytes]


def build_trie(db: dict[bytes, bytes], items: dict[bytes, bytes]) -> bytes:
    """Insert `items` into a fresh trie over `db`; its root hash."""
    trie = HexaryTrie(db)
    for key, value in items.items():
        trie[key] = value
    return bytes(trie.root_hash)


def random_state(seed: int, accounts: int, storage_sizes: tuple[int, ...] = ()) -> RandomState:
    """`accounts` accounts with random hashes; the first len(storage_sizes) get that many slots
    and code."""
    rng = random.Random(seed)
    state = DictState()
    bodies: dict[bytes, bytes] = {}
    storage: dict[bytes, dict[bytes, bytes]] = {}
    roots: dict[bytes, bytes] = {}
    for index in range(accounts):
        account_hash = rng.randbytes(32)
        storage_root, code_hash = EMPTY_ROOT, EMPTY_CODE_HASH
        if index < len(storage_sizes):
            slots = {
                rng.randbytes(32): rlp.encode(rng.randrange(1, 2 ** rng.choice([8, 64, 256])))
                for _ in range(storage_sizes[index])
            }
            storage_root = build_trie(state.nodes, slots) if slots else EMPTY_ROOT
            storage[account_hash], roots[account_hash] = slots, storage_root
            code = rng.randbytes(rng.randrange(1, 300))
            code_hash = keccak256(code)
            state.codes[code_hash] = code
        nonce, balance = rng.randrange(0, 1000), rng.randrange(0, 10**24)
        bodies[account_hash] = wire.encode([nonce, balance, storage_root, code_hash])
    root = build_trie(state.nodes, bodies)
    return RandomState(state, root, bodies, storage, roots)


def hashed_proof(trie_root: bytes, db: dict[bytes, bytes], key: bytes) -> list[bytes]:
    """py-trie's proof of `key`, as snap sends it: the root and every node of 32 bytes or more."""
    trie = HexaryTrie(db, trie_root)
    nodes = [rlp.encode(node) for node in trie.get_proof(key)]
    return [n for i, n in enumerate(nodes) if i == 0 or len(n) >= 32]


def compact(nibbles: tuple[int, ...]) -> bytes:
    """The hex-prefix form of an extension path (no terminator)."""
    padded = [1, *nibbles] if len(nibbles) % 2 else [0, 0, *nibbles]
    return bytes((padded[i] << 4) | padded[i + 1] for i in range(0, len(padded), 2))


class LyingState(DictState):
    """A state that answers one node hash with altered bytes (one child hash of that branch
    changed: still a well-formed node, so the server hands it out)."""

    def __init__(self, base: DictState, victim: bytes) -> None:
        super().__init__(dict(base.nodes), dict(base.codes))
        node = bytearray(self.nodes[victim])
        node[10] ^= 1  # inside the first child's hash
        self.nodes[victim] = bytes(node)
