"""Read-only access to the stored chain for the RPC methods: blocks, receipts, state at any block.

Every read goes straight to the database (LevelDB reads are thread-safe), so server threads never
wait for the block importer, and an answer is always about one consistent block: the block a
request names is resolved to a header once, and everything after is read by that header's hash
and state root.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from eth.abc import (
    BlockAPI,
    BlockHeaderAPI,
    ReceiptAPI,
    SignedTransactionAPI,
    StateAPI,
    VirtualMachineAPI,
)
from eth.db.chain import ChainDB
from eth.exceptions import BlockNotFound, HeaderNotFound, TransactionNotFound
from eth.vm.interrupt import EVMMissingData
from eth_typing import BlockNumber, Hash32
from trie.exceptions import MissingTrieNode

from khipu.chain.chain import KhipuChain, open_chain
from khipu.chain.config import Genesis
from khipu.chain.rules import ChainRules
from khipu.rpc.errors import ServerError
from khipu.rpc.params import BlockSelector
from khipu.storage.chain_store import ChainStore


@dataclass(frozen=True)
class TransactionLocation:
    """Where a transaction sits: its block header and index in the block."""

    header: BlockHeaderAPI
    index: int


class ChainView:
    """What the RPC methods read: headers, blocks, receipts and state, by number, tag or hash."""

    def __init__(
        self, store: ChainStore, rules: ChainRules, genesis: Genesis | None = None
    ) -> None:
        self.store = store
        self.rules = rules
        self.genesis = genesis
        self._chain: KhipuChain | None = None
        self._chain_db: Any = None  # the database `_chain` was opened on

    # The node's store is a LiveStore: the StorageWriter reopens the datadir on every restart,
    # so the database is looked up on each use, never kept from an incarnation that is gone.

    @property
    def chaindb(self) -> ChainDB:
        """py-evm's chain database of the store open now."""
        chaindb: ChainDB = self.store.chaindb
        return chaindb

    @property
    def chain(self) -> KhipuChain:
        """A chain over the store open now (opened again when the store was reopened)."""
        db = self.store.db
        if self._chain is None or self._chain_db is not db:
            self._chain, self._chain_db = open_chain(self.rules, db), db
        return self._chain

    @property
    def chain_id(self) -> int:
        return self.rules.config.chain_id

    def head(self) -> BlockHeaderAPI:
        """The canonical head header."""
        return self.chaindb.get_canonical_head()

    def header_by_number(self, number: int) -> BlockHeaderAPI | None:
        """The canonical header at `number`, or None past the head."""
        try:
            return self.chaindb.get_canonical_block_header_by_number(BlockNumber(number))
        except (HeaderNotFound, BlockNotFound):
            return None

    def header_by_hash(self, block_hash: bytes) -> BlockHeaderAPI | None:
        """The header with `block_hash`, canonical or not, or None."""
        try:
            return self.chaindb.get_block_header_by_hash(Hash32(block_hash))
        except (HeaderNotFound, BlockNotFound):
            return None

    def is_canonical(self, header: BlockHeaderAPI) -> bool:
        canonical = self.header_by_number(header.block_number)
        return canonical is not None and canonical.hash == header.hash

    def find_header(self, selector: BlockSelector) -> BlockHeaderAPI | None:
        """The header a block parameter names, or None when there is no such block.

        Tags: latest, pending, safe and finalized are the head (this node follows no consensus
        client, and everything it stores is final for it); earliest is the genesis. Raises
        ServerError for a hash with requireCanonical that is not canonical.
        """
        if selector.block_hash is not None:
            header = self.header_by_hash(selector.block_hash)
            if header is not None and selector.require_canonical and not self.is_canonical(header):
                raise ServerError(f"hash 0x{selector.block_hash.hex()} is not currently canonical")
            return header
        if selector.tag == "earliest":
            return self.header_by_number(0)
        if selector.tag is not None:
            return self.head()
        assert selector.number is not None
        return self.header_by_number(selector.number)

    def require_header(self, selector: BlockSelector) -> BlockHeaderAPI:
        """The header a block parameter names; ServerError as geth words it when absent."""
        header = self.find_header(selector)
        if header is None:
            if selector.block_hash is not None:
                raise ServerError(f"header for hash 0x{selector.block_hash.hex()} not found")
            raise ServerError("header not found")
        return header

    def number_of(self, selector: BlockSelector) -> int:
        """The block number a number or tag stands for (may lie past the head)."""
        if selector.number is not None:
            return selector.number
        if selector.tag == "earliest":
            return 0
        header = self.find_header(selector)
        return 0 if header is None else header.block_number

    def vm_class(self, header: BlockHeaderAPI) -> type[VirtualMachineAPI]:
        return self.rules.vm_class_for_header(header)

    def block(self, header: BlockHeaderAPI) -> BlockAPI:
        """The whole block of `header`: transactions, uncles, withdrawals."""
        block_class = self.vm_class(header).get_block_class()
        return block_class.from_header(header, self.chaindb)

    def transactions(self, header: BlockHeaderAPI) -> Sequence[SignedTransactionAPI]:
        block_class = self.vm_class(header).get_block_class()
        return self.chaindb.get_block_transactions(header, block_class.get_transaction_builder())

    def receipts(self, header: BlockHeaderAPI) -> Sequence[ReceiptAPI]:
        block_class = self.vm_class(header).get_block_class()
        return self.chaindb.get_receipts(header, block_class.get_receipt_builder())

    def uncles(self, header: BlockHeaderAPI) -> Sequence[BlockHeaderAPI]:
        return self.chaindb.get_block_uncles(header.uncles_hash)

    def locate_transaction(self, tx_hash: bytes) -> TransactionLocation | None:
        """The canonical block and index of a transaction, or None if it is not stored."""
        try:
            number, index = self.chaindb.get_transaction_index(Hash32(tx_hash))
        except (TransactionNotFound, KeyError):
            return None
        header = self.header_by_number(number)
        if header is None:
            return None
        return TransactionLocation(header, index)

    def vm_at(self, header: BlockHeaderAPI) -> VirtualMachineAPI:
        """A VM over the post-state of `header`, with `header` as its block context."""
        return self.chain.get_vm(header)

    def state_at(self, header: BlockHeaderAPI) -> StateAPI:
        """The state after the block of `header`. ServerError if its trie nodes are missing."""
        state = self.vm_at(header).state
        if header.state_root not in self.store.db and header.state_root != _EMPTY_ROOT:
            raise ServerError(f"missing trie node {header.state_root.hex()} (state unavailable)")
        return state

    def read_state(self, header: BlockHeaderAPI, read: Callable[[StateAPI], Any]) -> Any:
        """`read(state)` on the post-state of `header`; a missing trie node is a ServerError."""
        state = self.state_at(header)
        try:
            return read(state)
        except (EVMMissingData, MissingTrieNode) as exc:
            raise ServerError(f"missing trie node (state unavailable): {exc}") from None


_EMPTY_ROOT = bytes.fromhex("56e81f171bcc55a6ff8345e692c0f86e5b48e01b996cadc001622fb5e363b421")


def blob_base_fee(rules: ChainRules, header: BlockHeaderAPI) -> int | None:
    """The blob base fee of the block of `header` (EIP-4844), None before Cancun."""
    from khipu.rpc.formatting import MIN_BLOB_BASE_FEE, fake_exponential, header_field

    excess = header_field(header, "excess_blob_gas")
    if excess is None:
        return None
    fork = rules.fork_name(header.block_number, header.timestamp, header.difficulty)
    schedule = rules.blob_schedule(fork)
    if schedule is None:
        return None
    return fake_exponential(MIN_BLOB_BASE_FEE, excess, schedule.base_fee_update_fraction)
