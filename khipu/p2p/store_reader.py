"""The ChainReader (khipu.p2p.abc) of the node's own datadir: what an eth peer of ours serves.

Headers, bodies and receipts come from the Kesque number topics as stored (the bodies and
receipts records are in devp2p encoding already, see khipu/storage/chain_records.py); a block
hash is turned into its number by the store's hash index. Only the canonical chain up to the
head is served: a header the writer has put into Kesque but whose block is not yet the head
(its LevelDB write pending) is not handed out.

The store is read through attribute access on every call, so the node can pass its LiveStore
proxy and always read the StorageWriter's current store. While the writer restarts the proxy
raises its StoreUnavailable; the caller (the p2p host) treats that as "cannot serve now".
"""

from __future__ import annotations

from eth_typing import Hash32

from khipu.chain.config import Genesis
from khipu.chain.forkid import ForkPoints
from khipu.chain.rules import ChainRules
from khipu.p2p import wire
from khipu.p2p.keys import keccak256
from khipu.storage.chain_records import CANONICAL_HEAD_KEY
from khipu.storage.chain_store import ChainStore


class StoreChainReader:
    """A ChainReader over a ChainStore (or a proxy with the same attributes)."""

    def __init__(
        self, store: ChainStore, genesis: Genesis, genesis_hash: bytes | None = None
    ) -> None:
        """`genesis_hash` as the datadir holds it, read from `store` when not given (the node
        gives it: its store proxy is not open before the StorageWriter starts)."""
        self.store = store
        self._network_id = genesis.config.chain_id
        self._genesis_hash = store.genesis_hash if genesis_hash is None else genesis_hash
        self._terminal: tuple[int, int] | None = None  # (first PoS block, terminal TD)
        self._fork_points = ChainRules(genesis.config).fork_points(
            self._genesis_hash, genesis.timestamp
        )

    def network_id(self) -> int:
        """The chain id of the genesis (devp2p's network id is the chain id on every network
        khipu knows)."""
        return self._network_id

    def genesis_hash(self) -> bytes:
        """The hash of block 0 as the datadir holds it."""
        return self._genesis_hash

    def fork_points(self) -> ForkPoints:
        """The fork activations of the genesis config, for fork ids."""
        return self._fork_points

    def _head(self) -> tuple[int, bytes]:
        """(number, hash) of the canonical head."""
        head_hash = self.store.db[CANONICAL_HEAD_KEY]
        number = self.store.db.block_number_of(head_hash)
        if number is None:  # the genesis of a fresh store before its index write: block 0
            return 0, self._genesis_hash
        return number, head_hash

    def head_header(self) -> bytes:
        """The RLP of the canonical head header."""
        number, _ = self._head()
        header = self.store.db.headers.get_at(number)
        assert header is not None, f"head header #{number} missing from the header topic"
        return header

    def head_total_difficulty(self) -> int:
        """The total difficulty at the head, frozen at the terminal total difficulty after the
        merge. (py-evm scores a difficulty-0 block with its number, so the stored score of a
        post-merge block is not its total difficulty: the score of the last proof-of-work block
        is taken instead.)"""
        number, _ = self._head()
        if self._difficulty(number) > 0:
            return self._score(number)
        if self._terminal is None or self._terminal[0] > number:
            self._terminal = (self._first_difficulty_zero(number), 0)
            first = self._terminal[0]
            self._terminal = (first, self._score(first - 1) if first > 0 else 0)
        return self._terminal[1]

    def _difficulty(self, number: int) -> int:
        header = self.store.db.headers.get_at(number)
        assert header is not None, f"header #{number} missing from the header topic"
        return wire.as_int(wire.as_list(wire.decode(header), "header", 15)[7], "difficulty")

    def _score(self, number: int) -> int:
        header = self.store.db.headers.get_at(number)
        assert header is not None, f"header #{number} missing from the header topic"
        return int(self.store.chaindb.get_score(Hash32(keccak256(header))))

    def _first_difficulty_zero(self, head: int) -> int:
        """The first block of the difficulty-0 run that ends at `head` (binary search: after
        the merge every block has difficulty 0)."""
        low, high = 0, head
        while low < high:
            middle = (low + high) // 2
            if self._difficulty(middle) == 0:
                high = middle
            else:
                low = middle + 1
        return low

    def header_by_number(self, number: int) -> bytes | None:
        """The canonical header at `number`, or None beyond the head (or for a negative one)."""
        if number < 0 or number > self._head()[0]:
            return None
        return self.store.db.headers.get_at(number)

    def _number_of(self, block_hash: bytes) -> int | None:
        if len(block_hash) != 32:
            return None
        number = self.store.db.block_number_of(block_hash)
        if number is None or number > self._head()[0]:
            return None
        return number

    def header_by_hash(self, block_hash: bytes) -> bytes | None:
        """The canonical header with this hash, or None if unknown (or not canonical)."""
        number = self._number_of(block_hash)
        return None if number is None else self.store.db.headers.get_at(number)

    def body_by_hash(self, block_hash: bytes) -> bytes | None:
        """`rlp([txs, uncles(, withdrawals)])` of the canonical block with this hash, or None."""
        number = self._number_of(block_hash)
        return None if number is None else self.store.db.bodies.get_at(number)

    def receipts_by_hash(self, block_hash: bytes) -> bytes | None:
        """The eth/68 receipts list of the canonical block with this hash, or None."""
        number = self._number_of(block_hash)
        return None if number is None else self.store.db.receipts.get_at(number)
