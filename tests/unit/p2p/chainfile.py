"""An in-memory ChainReader over a test chain: genesis.json plus chain.rlp (blocks 1..N).

The genesis header is not in chain.rlp, so the chain starts at block 1; its genesis hash is
block 1's parent hash. Receipts are only known where a test adds them.
"""

from __future__ import annotations

from pathlib import Path

from khipu.chain.config import Genesis
from khipu.chain.forkid import ForkPoints
from khipu.chain.genesis import chain_identity
from khipu.p2p import wire
from khipu.p2p.eth.messages import header_facts


class MemoryChain:
    """ChainReader over blocks held in dictionaries."""

    def __init__(self, genesis_file: Path, chain_file: Path) -> None:
        self.headers: dict[int, bytes] = {}
        self.bodies: dict[bytes, bytes] = {}
        self.receipts: dict[bytes, bytes] = {}
        self.by_hash: dict[bytes, bytes] = {}
        self.hashes: dict[int, bytes] = {}
        self.difficulty = 0
        data = chain_file.read_bytes()
        while data:
            block, data = _split_first_item(data)
            fields = wire.as_list(wire.decode(block), "block")
            header = wire.encode(fields[0])
            facts = header_facts(header)
            self.headers[facts.number] = header
            self.hashes[facts.number] = facts.block_hash
            self.by_hash[facts.block_hash] = header
            self.bodies[facts.block_hash] = wire.encode(fields[1:])
            self.difficulty += int.from_bytes(wire.as_list(fields[0], "h")[7], "big")
        self.genesis = header_facts(self.headers[1]).parent_hash
        identity = chain_identity(Genesis.load(genesis_file))
        assert identity.genesis.hash == self.genesis
        self.chain_id, self.forks = identity.chain_id, identity.fork_points
        self.genesis_difficulty = identity.genesis.difficulty
        self.head_number = max(self.headers)

    def network_id(self) -> int:
        return self.chain_id

    def genesis_hash(self) -> bytes:
        return self.genesis

    def fork_points(self) -> ForkPoints:
        return self.forks

    def head_header(self) -> bytes:
        return self.headers[self.head_number]

    def head_total_difficulty(self) -> int:
        return self.difficulty + self.genesis_difficulty

    def header_by_number(self, number: int) -> bytes | None:
        return self.headers.get(number) if number <= self.head_number else None

    def header_by_hash(self, block_hash: bytes) -> bytes | None:
        return self.by_hash.get(block_hash)

    def body_by_hash(self, block_hash: bytes) -> bytes | None:
        return self.bodies.get(block_hash)

    def receipts_by_hash(self, block_hash: bytes) -> bytes | None:
        return self.receipts.get(block_hash)


def _split_first_item(data: bytes) -> tuple[bytes, bytes]:
    """The first RLP item of a concatenation, and the rest."""
    prefix = data[0]
    if prefix < 0xC0:
        raise ValueError("chain file must hold RLP lists")
    if prefix <= 0xF7:
        end = 1 + prefix - 0xC0
    else:
        size_length = prefix - 0xF7
        end = 1 + size_length + int.from_bytes(data[1 : 1 + size_length], "big")
    return data[:end], data[end:]
