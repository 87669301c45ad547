"""The in-order merge of speculative outcomes, inside py-evm's own `import_block`.

`parallel_vm_class(vm_class)` is the fork's VM whose `apply_all_transactions` merges instead of
executing: in block order, a transaction that failed speculatively, wiped a storage, or one of
whose read (or absolutely written) keys holds another value in the merged state than the
pre-value it saw (validation.py) is re-executed here against the merged state (recording its
rw-set); every other transaction's writes are applied as it ran and its receipt kept with the
cumulative gas patched in (MergedReceipt). py-evm then does the
block-level work in its place: withdrawals, rewards, Prague requests, and the state root, which
this VM's state computes with batched trie updates (BatchedAccountDB).

Before Byzantium each receipt carries the state root after its transaction. Speculation leaves a
placeholder there (PLACEHOLDER_STATE_ROOT: the worker's root would be of the parent state plus
one transaction, and costly); the merge computes the merged state's root after each committed
transaction, as py-evm's `make_receipt` does, and patches it in. A re-executed transaction's
receipt is py-evm's own, root included. Either root is computed with a batched account trie
(intermediate_root.py). The DAO fork's irregular state change happens in
py-evm's `configure_header`, which both `begin_block` and `import_block` call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from eth.abc import BlockAPI, BlockHeaderAPI, ReceiptAPI, SignedTransactionAPI, WithdrawalAPI
from eth.rlp.accounts import Account
from eth.vm.forks.byzantium import ByzantiumVM
from eth.vm.forks.frontier.validation import validate_frontier_transaction_against_header
from eth.vm.forks.prague.constants import (
    DEPOSIT_CONTRACT_ADDRESS,
    DEPOSIT_EVENT_SIGNATURE_HASH,
    DEPOSIT_REQUEST_TYPE,
)
from eth_bloom.bloom import BloomFilter
from eth_utils import ValidationError, to_bytes

from khipu.execution.built_tries import reusing_transaction_trie
from khipu.execution.intermediate_root import IntermediateRootStateMixin
from khipu.execution.merged_receipt import MergedReceipt
from khipu.execution.rwset import (
    FieldKey,
    ReadWriteSet,
    RecordingStateMixin,
    recording_state_class,
)
from khipu.execution.senders import worker_sender
from khipu.execution.state_root import BatchedAccountDB
from khipu.execution.storage_roots import StorageRoots
from khipu.execution.trie_batch import ordered_trie
from khipu.execution.validation import read_values_changed

# Blob transactions always go through py-evm (blob gas accounting on the header).
BLOB_TRANSACTION_TYPE = 3

# The state root a speculative receipt before Byzantium carries until the merge patches it.
PLACEHOLDER_STATE_ROOT = b"\x00" * 32


def receipts_carry_state_root(vm_class: type[Any]) -> bool:
    """True for forks before Byzantium: a receipt holds the state root after its transaction."""
    return not issubclass(vm_class, ByzantiumVM)


@dataclass(frozen=True)
class TxOutcome:
    """A transaction run speculatively: its receipt (gas of this transaction alone) and rw-set,
    or the error that stopped it (then it is re-executed in the merge)."""

    index: int
    receipt: bytes | None
    rwset: ReadWriteSet | None
    error: str | None = None
    # (address, RLP of the account in the parent state) for every existing account it
    # touched: the merge seeds its account cache with them instead of walking the trie again.
    parent_accounts: tuple[tuple[bytes, bytes], ...] = ()
    # The sender the worker recovered running the transaction: a re-execution here uses it
    # instead of recovering it again (see senders.worker_sender).
    sender: bytes | None = None
    # The keys of rwset.values whose pre-value came from earlier transactions of its share
    # (speculated as a chain on one state), not from the parent state.
    inherited: frozenset[FieldKey] = frozenset()


class ParallelVMMixin:
    """Mixed in before a fork's VM: `apply_all_transactions` merges `speculation` outcomes."""

    speculation: Sequence[TxOutcome] = ()
    reexecuted: int = 0
    storage_roots: StorageRoots | None = None  # where the end-of-block storage roots run
    reexecuted_indices: tuple[int, ...] = ()  # which transactions, in block order
    merged_receipts: Sequence[Any] = ()
    # Set by begin_block, which only speculation calls: receipts get PLACEHOLDER_STATE_ROOT.
    speculative: bool = False
    # (transactions, root, nodes) of the transaction trie set_block_transactions_and_withdrawals
    # built: validate_block reuses it (built_tries.py)
    built_transaction_trie: tuple[Sequence[Any], bytes, dict[bytes, bytes]] | None = None

    def begin_block(self, block: BlockAPI) -> BlockHeaderAPI:
        """Do what py-evm's `import_block` does before its transactions (block fields, a fresh
        state, pre-processing system calls, the DAO fork's state change); returns the header
        to apply transactions on. The VM is speculative from then on (see make_receipt)."""
        vm: Any = self
        self.speculative = True
        fields: dict[str, Any] = {
            "coinbase": block.header.coinbase,
            "difficulty": block.header.difficulty,
            "gas_limit": block.header.gas_limit,
            "timestamp": block.header.timestamp,
            "extra_data": block.header.extra_data,
            "mix_hash": block.header.mix_hash,
            "nonce": block.header.nonce,
        }
        if hasattr(block.header, "parent_beacon_block_root"):
            fields["parent_beacon_block_root"] = block.header.parent_beacon_block_root
        vm._block = vm.get_block().copy(header=vm.configure_header(**fields))
        context = vm.create_execution_context(block.header, vm.previous_hashes, vm.chain_context)
        header = vm.get_header().copy(gas_used=0)
        vm._state = vm.get_state_class()(vm.chaindb.db, context, header.state_root)
        vm.block_preprocessing(block)
        return cast(BlockHeaderAPI, header)

    def make_receipt(
        self,
        base_header: BlockHeaderAPI,
        transaction: SignedTransactionAPI,
        computation: Any,
        state: Any,
    ) -> ReceiptAPI:
        """py-evm's receipt; on a speculative VM before Byzantium with PLACEHOLDER_STATE_ROOT
        instead of the state root (the merge patches the real one in)."""
        if self.speculative and receipts_carry_state_root(type(self)):
            state = PlaceholderRootState(state)
        parent: Any = super()
        return cast(ReceiptAPI, parent.make_receipt(base_header, transaction, computation, state))

    def apply_all_transactions(
        self, transactions: Sequence[SignedTransactionAPI], base_header: BlockHeaderAPI
    ) -> tuple[BlockHeaderAPI, tuple[ReceiptAPI, ...], tuple[Any, ...]]:
        vm: Any = self
        state = cast(RecordingStateMixin, vm.state)
        intermediate_roots = receipts_carry_state_root(type(vm))
        seed_parent_accounts(vm.state, self.speculation)
        vm.state._account_db.storage_roots = self.storage_roots
        # Only Frontier's gas-limit check is known to need nothing but gas from the header;
        # with any other check every transaction gets a header of its own, as in py-evm.
        gas_check_only = (
            type(vm).validate_transaction_against_header
            is validate_frontier_transaction_against_header
        )
        written: set[FieldKey] = set()
        wiped: set[bytes] = set()
        reexecuted: list[int] = []
        receipts: list[Any] = []
        header = base_header
        gas_used, bloom = header.gas_used, int(header.bloom)
        for index, transaction in enumerate(transactions):
            outcome = self.speculation[index] if index < len(self.speculation) else None
            rwset = None if outcome is None else outcome.rwset
            if not self.speculation:  # execute_block_batched: nothing to record or compare
                header = _header_at(header, gas_used, bloom)
                receipt, _computation = vm.apply_transaction(header, transaction)
                header = vm.add_receipt_to_header(header, receipt)
                header = vm.increment_blob_gas_used(header, transaction)
                gas_used, bloom = header.gas_used, int(header.bloom)
                receipts.append(receipt)
                continue
            if (
                outcome is None
                or outcome.receipt is None
                or rwset is None
                or rwset.has_wipe
                or getattr(transaction, "type_id", None) == BLOB_TRANSACTION_TYPE
                or read_values_changed(rwset, outcome.inherited, vm.state, written, wiped)
            ):
                header = _header_at(header, gas_used, bloom)
                state.start_recording()
                try:
                    with worker_sender(transaction, outcome):
                        receipt, _computation = vm.apply_transaction(header, transaction)
                finally:
                    rwset = state.finish_recording()
                self.reexecuted += 1
                reexecuted.append(index)
                header = vm.add_receipt_to_header(header, receipt)
                header = vm.increment_blob_gas_used(header, transaction)
                gas_used, bloom = header.gas_used, int(header.bloom)
            else:
                if gas_check_only:
                    if gas_used + transaction.gas > header.gas_limit:
                        header = _header_at(header, gas_used, bloom)
                        vm.validate_transaction_against_header(header, transaction)  # raises
                else:
                    header = _header_at(header, gas_used, bloom)
                    vm.validate_transaction_against_header(header, transaction)
                vm.state.lock_changes()
                apply_writes(vm.state, rwset)
                root = vm.state.make_state_root() if intermediate_roots else None
                receipt = MergedReceipt(outcome.receipt, gas_used, root)
                gas_used, bloom = receipt.gas_used, bloom | receipt.bloom
            keys = rwset.written_keys()
            written |= keys
            wiped.update(key[1] for key in keys if key[0] == "wipe")
            receipts.append(receipt)
        self.merged_receipts = receipts
        self.reexecuted_indices = tuple(reexecuted)
        return _header_at(header, gas_used, bloom), tuple(receipts), ()

    def process_deposit_request_data(self, block: BlockAPI) -> None:
        """Prague's deposit requests, from the receipts in memory instead of re-reading the
        receipt trie; a block whose bloom does not name the deposit contract has none."""
        vm: Any = self
        if DEPOSIT_CONTRACT_ADDRESS not in BloomFilter(block.header.bloom):
            block.block_requests.append(DEPOSIT_REQUEST_TYPE)
            return
        builder = vm.get_receipt_builder()
        data = b""
        for merged in self.merged_receipts:
            receipt = merged.decoded(builder) if isinstance(merged, MergedReceipt) else merged
            for entry in receipt.logs:
                if (
                    entry.address == DEPOSIT_CONTRACT_ADDRESS
                    and entry.topics
                    and to_bytes(entry.topics[0]) == DEPOSIT_EVENT_SIGNATURE_HASH
                ):
                    # The layout of py-evm's (EIP-6110): key, credentials, amount, signature,
                    # index out of the ABI-encoded event data.
                    log_data = entry.data
                    data += (
                        log_data[192:240] + log_data[288:320] + log_data[352:360]
                        + log_data[416:512] + log_data[544:552]
                    )  # fmt: skip
        block.block_requests.append(DEPOSIT_REQUEST_TYPE + data)

    def set_block_transactions_and_withdrawals(
        self,
        base_block: BlockAPI,
        new_header: BlockHeaderAPI,
        transactions: Sequence[SignedTransactionAPI],
        receipts: Sequence[ReceiptAPI],
        withdrawals: Sequence[WithdrawalAPI] | None = None,
    ) -> BlockAPI:
        """py-evm's, with the transaction, receipt and withdrawal tries built in one pass."""
        vm: Any = self
        fields: dict[str, Any] = {"transactions": transactions}
        roots: dict[str, Any] = {}
        lists: list[tuple[str, Sequence[Any]]] = [
            ("transaction_root", transactions), ("receipt_root", receipts)
        ]  # fmt: skip
        if withdrawals:
            fields["withdrawals"] = withdrawals
            lists.append(("withdrawals_root", withdrawals))
        for name, items in lists:
            trie = ordered_trie([item.encode() for item in items])
            vm.chaindb.persist_trie_data_dict(trie.nodes)
            roots[name] = trie.root_hash
            if name == "transaction_root":
                self.built_transaction_trie = (tuple(items), trie.root_hash, trie.nodes)
        fields["header"] = new_header.copy(**roots)
        return base_block.copy(**fields)

    def validate_block(self, block: BlockAPI) -> None:
        """py-evm's checks (raising its ValidationError), with the transaction trie this VM
        built from the same transaction objects instead of a second HexaryTrie build."""
        parent: Any = super()
        built = self.built_transaction_trie
        if built is None:
            parent.validate_block(block)
            return
        with reusing_transaction_trie(*built):
            parent.validate_block(block)


class PlaceholderRootState:
    """A state seen through py-evm's `make_receipt`: `make_state_root` gives the placeholder
    (nothing is computed or flushed), everything else is the state's own."""

    def __init__(self, state: Any) -> None:
        self._state = state

    def make_state_root(self) -> bytes:
        return PLACEHOLDER_STATE_ROOT

    def __getattr__(self, name: str) -> Any:
        return getattr(self._state, name)


def _header_at(header: BlockHeaderAPI, gas_used: int, bloom: int) -> BlockHeaderAPI:
    """`header` with the block's gas and bloom so far (copied only if they changed)."""
    if header.gas_used == gas_used and header.bloom == bloom:
        return header
    return header.copy(gas_used=gas_used, bloom=bloom)


def apply_writes(state: Any, rwset: ReadWriteSet) -> None:
    """Apply a transaction's recorded writes to `state` (balance deltas add to what is there).

    Balance, nonce and existence go to the account in one write (py-evm's setters copy the
    account once per field). Raises ValidationError if a balance would leave 0..2**256-1.
    """
    account_db = state._account_db
    for address, write in rwset.writes.items():
        if (
            write.balance is not None
            or write.balance_delta
            or write.nonce is not None
            or write.exists
        ):
            account = account_db._get_account(address)
            if write.balance is not None:
                balance = write.balance
            else:
                balance = account.balance + (write.balance_delta or 0)
            if not 0 <= balance < 2**256:
                raise ValidationError(f"balance of 0x{address.hex()} would become {balance}")
            nonce = account.nonce if write.nonce is None else write.nonce
            account_db._set_account(
                address, Account(nonce, balance, account.storage_root, account.code_hash)
            )
        if write.code is not None:
            state.set_code(address, write.code)
        for slot, value in write.storage:
            account_db.set_storage(address, slot, value)


def seed_parent_accounts(state: Any, speculation: Sequence[TxOutcome]) -> None:
    """Put the parent-state accounts the workers read into the state's trie cache, where a
    read of the parent trie would have put them (py-evm resets that cache at each persist)."""
    cached = state._account_db._trie_cache._cached_values
    for outcome in speculation:
        for address, encoded in outcome.parent_accounts:
            cached[address] = encoded


class ShallowCopyBlockMixin:
    """Mixed in before a fork's block class: `copy` keeps the unchanged fields as they are.

    rlp's `Serializable.copy` deep-copies every field not given, so each of py-evm's several
    `block.copy(header=...)` per import copies every transaction again; nothing mutates them.
    """

    def copy(self, *args: Any, **kwargs: Any) -> Any:
        block: Any = self
        if args:
            return super().copy(*args, **kwargs)  # type: ignore[misc]
        fields = {name: getattr(block, name) for name in block._meta.field_names}
        fields.update(kwargs)
        return type(block)(**fields)


def as_block_class(block: BlockAPI, block_class: type[Any]) -> BlockAPI:
    """`block` as an instance of `block_class` (the fork's own), sharing its fields."""
    if type(block) is block_class:
        return block
    fields = {name: getattr(block, name) for name in block_class._meta.field_names}
    return cast(BlockAPI, block_class(**fields))


_VM_CLASSES: dict[type[Any], type[Any]] = {}


def parallel_vm_class(vm_class: type[Any]) -> type[Any]:
    """The VM class of `vm_class`'s fork that records rw-sets and merges speculation."""
    parallel = _VM_CLASSES.get(vm_class)
    if parallel is None:
        recording = recording_state_class(vm_class.get_state_class())
        # The merged state's end-of-block root is computed with batched trie updates, and so
        # are the roots after each transaction before Byzantium (intermediate_root.py).
        state_class = type("Batched" + recording.__name__,
                           (IntermediateRootStateMixin, recording),
                           {"account_db_class": BatchedAccountDB})  # fmt: skip
        base_block = vm_class.get_block_class()
        block_class = type(base_block.__name__, (ShallowCopyBlockMixin, base_block), {})
        parallel = type("Parallel" + vm_class.__name__, (ParallelVMMixin, vm_class),
                        {"_state_class": state_class, "block_class": block_class})  # fmt: skip
        _VM_CLASSES[vm_class] = parallel
    return parallel
