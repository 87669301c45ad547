"""Parallel block execution: speculate every transaction on the parent state, merge in order.

`execute_block_parallel` runs the transactions of a block in worker processes, each against the
parent state (after the block's pre-processing system calls), recording its read and write set.
It then imports the block through py-evm's own `import_block` on a VM whose
`apply_all_transactions` merges instead of executing: in block order, a transaction whose reads
(or absolute writes) meet an earlier transaction's writes, that failed speculatively, or that wiped
a storage, is re-executed against the merged state in this process; every other transaction's
writes are applied as it ran and its receipt reused with the cumulative gas. py-evm then applies
the block-level work in its place: withdrawals, rewards, Prague requests, the state root.

If the result disagrees with the header in state root, receipts root, bloom, gas used or requests
hash, the block is re-run serially; that serial result is what is returned. Blocks before
Byzantium (receipts carry an intermediate state root per transaction) run serially.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from eth.abc import BlockAPI, BlockHeaderAPI, ReceiptAPI, SignedTransactionAPI, WithdrawalAPI
from eth.rlp.accounts import Account
from eth.vm.chain_context import ChainContext
from eth.vm.forks.byzantium import ByzantiumVM
from eth.vm.forks.frontier.validation import validate_frontier_transaction_against_header
from eth.vm.forks.prague.constants import (
    DEPOSIT_CONTRACT_ADDRESS,
    DEPOSIT_EVENT_SIGNATURE_HASH,
    DEPOSIT_REQUEST_TYPE,
)
from eth_bloom.bloom import BloomFilter
from eth_utils import ValidationError, to_bytes

from khipu.chain.chain import KhipuChain
from khipu.chain.importer import decode_block
from khipu.chain.rules import ChainRules
from khipu.execution.merged_receipt import MergedReceipt
from khipu.execution.pool import PoolLimits, WorkerPool
from khipu.execution.rlp_items import encode_list, list_items
from khipu.execution.rwset import (
    FieldKey,
    ReadWriteSet,
    RecordingStateMixin,
    conflicts,
    recording_state_class,
)
from khipu.execution.state_root import BatchedAccountDB
from khipu.execution.trie_batch import ordered_trie

log = logging.getLogger("khipu.execution")

# Header fields the parallel result must share with the header (else the block runs serially).
# Blob transactions always go through py-evm (blob gas accounting on the header).
BLOB_TRANSACTION_TYPE = 3

CHECKED_FIELDS = ("state_root", "receipt_root", "bloom", "gas_used", "requests_hash")


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


@dataclass(frozen=True)
class SpeculationTask:
    """Transactions `indices` of the block `block_rlp` to run on its parent state. If
    `partial`, `block_rlp` holds only those transactions, in that order (see partial_block)."""

    block_rlp: bytes
    indices: tuple[int, ...]
    partial: bool = False


def partial_block(block_rlp: bytes, runs: Sequence[tuple[int, ...]]) -> list[bytes]:
    """For each run of transaction indices, the block with only those transactions (same
    header, uncles and withdrawals): a worker then decodes only what it runs.

    Raises RlpItemError if `block_rlp` is not an RLP list holding a list of transactions.
    """
    items = list_items(block_rlp)
    transactions = list_items(items[1])
    blocks = []
    for run in runs:
        items[1] = encode_list([transactions[index] for index in run])
        blocks.append(encode_list(items))
    return blocks


@dataclass
class BlockExecution:
    """The executed block and how it was executed."""

    block: BlockAPI
    mode: str  # "parallel", "serial" (not handled) or "serial-fallback" (parallel disagreed)
    transactions: int
    reexecuted: int = 0
    speculate_seconds: float = 0.0  # workers running every transaction on the parent state
    merge_seconds: float = 0.0  # the in-order merge, re-execution and block-level work


class ParallelVMMixin:
    """Mixed in before a fork's VM: `apply_all_transactions` merges `speculation` outcomes."""

    speculation: Sequence[TxOutcome] = ()
    reexecuted: int = 0
    merged_receipts: Sequence[Any] = ()

    def begin_block(self, block: BlockAPI) -> BlockHeaderAPI:
        """Do what py-evm's `import_block` does before its transactions (block fields, a fresh
        state, pre-processing system calls); returns the header to apply transactions on."""
        vm: Any = self
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

    def apply_all_transactions(
        self, transactions: Sequence[SignedTransactionAPI], base_header: BlockHeaderAPI
    ) -> tuple[BlockHeaderAPI, tuple[ReceiptAPI, ...], tuple[Any, ...]]:
        vm: Any = self
        state = cast(RecordingStateMixin, vm.state)
        seed_parent_accounts(vm.state, self.speculation)
        # Only Frontier's gas-limit check is known to need nothing but gas from the header;
        # with any other check every transaction gets a header of its own, as in py-evm.
        gas_check_only = (
            type(vm).validate_transaction_against_header
            is validate_frontier_transaction_against_header
        )
        written: set[FieldKey] = set()
        receipts: list[Any] = []
        header = base_header
        gas_used, bloom = header.gas_used, int(header.bloom)
        for index, transaction in enumerate(transactions):
            outcome = self.speculation[index] if index < len(self.speculation) else None
            rwset = None if outcome is None else outcome.rwset
            if (
                outcome is None
                or outcome.receipt is None
                or rwset is None
                or rwset.has_wipe
                or conflicts(rwset, written)
                or getattr(transaction, "type_id", None) == BLOB_TRANSACTION_TYPE
            ):
                header = _header_at(header, gas_used, bloom)
                state.start_recording()
                try:
                    receipt, _computation = vm.apply_transaction(header, transaction)
                finally:
                    rwset = state.finish_recording()
                self.reexecuted += 1
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
                receipt = MergedReceipt(outcome.receipt, gas_used)
                gas_used, bloom = receipt.gas_used, bloom | receipt.bloom
            written |= rwset.written_keys()
            receipts.append(receipt)
        self.merged_receipts = receipts
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
        fields["header"] = new_header.copy(**roots)
        return base_block.copy(**fields)


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


def parent_accounts_of(state: Any, rwset: ReadWriteSet) -> tuple[tuple[bytes, bytes], ...]:
    """The parent-state RLP of every existing account `rwset` read or wrote."""
    account_db = state._account_db
    addresses = {key[1] for key in rwset.reads} | set(rwset.writes)
    accounts = []
    for address in addresses:
        encoded = account_db._get_encoded_account(address, from_journal=False)
        if encoded:
            accounts.append((address, bytes(encoded)))
    return tuple(accounts)


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
        # The merged state's end-of-block root is computed with batched trie updates.
        state_class = type("Batched" + recording.__name__, (recording,),
                           {"account_db_class": BatchedAccountDB})  # fmt: skip
        base_block = vm_class.get_block_class()
        block_class = type(base_block.__name__, (ShallowCopyBlockMixin, base_block), {})
        parallel = type("Parallel" + vm_class.__name__, (ParallelVMMixin, vm_class),
                        {"_state_class": state_class, "block_class": block_class})  # fmt: skip
        _VM_CLASSES[vm_class] = parallel
    return parallel


def supports_parallel(vm_class: type[Any]) -> bool:
    """Byzantium and later: receipts carry a status, not an intermediate state root."""
    return issubclass(vm_class, ByzantiumVM)


def _new_vm(chain: KhipuChain, vm_class: type[Any], block: BlockAPI) -> Any:
    parent = chain.chaindb.get_block_header_by_hash(block.header.parent_hash)
    base = vm_class.create_header_from_parent(parent, timestamp=block.header.timestamp)
    return vm_class(
        header=base.copy(gas_used=block.header.gas_used),
        chaindb=chain.chaindb,
        chain_context=ChainContext(chain.rules.config.chain_id),
        consensus_context=chain.consensus_context,
    )


def speculate(chain: KhipuChain, task: SpeculationTask) -> list[TxOutcome]:
    """Run the task's transactions, each alone on the parent state, recording rw-sets."""
    block = decode_block(task.block_rlp, chain.rules)
    positions = {index: position for position, index in enumerate(task.indices)}
    return speculate_block(chain, block, task.indices, positions if task.partial else None)


def speculate_block(
    chain: KhipuChain,
    block: BlockAPI,
    indices: Sequence[int],
    positions: dict[int, int] | None = None,
) -> list[TxOutcome]:
    """Run transactions `indices` of `block` (found at `positions[index]` in
    `block.transactions` if given), each alone on the parent state, recording rw-sets."""
    vm_class = parallel_vm_class(chain.rules.vm_class_for_header(block.header))
    outcomes = []
    vm = _new_vm(chain, vm_class, block)
    header = vm.begin_block(block)
    state = vm.state
    state.lock_changes()
    # One state for the whole task: each transaction runs from a snapshot of the parent state
    # (plus pre-processing) that is reverted afterwards, so the next one sees the same base
    # with warm caches. `vm.apply_transaction` would lock the changes, so its steps are here.
    for index in indices:
        transaction = block.transactions[index if positions is None else positions[index]]
        snapshot = state.snapshot()
        state.start_recording()
        try:
            vm.validate_transaction_against_header(header, transaction)
            computation = state.apply_transaction(transaction)
            receipt = vm.make_receipt(header, transaction, computation, state)
            vm.validate_receipt(receipt)
        except (ValidationError, ValueError) as exc:
            state.finish_recording()
            state.revert(snapshot)
            outcomes.append(TxOutcome(index, None, None, f"{type(exc).__name__}: {exc}"))
            continue
        rwset = state.finish_recording()
        state.revert(snapshot)
        outcomes.append(
            TxOutcome(
                index, receipt.encode(), rwset, parent_accounts=parent_accounts_of(state, rwset)
            )
        )
    return outcomes


def execute_block_serial(chain: KhipuChain, block: BlockAPI) -> BlockAPI:
    """Execute `block` on its parent state with py-evm (nothing persisted but trie nodes)."""
    vm_class = chain.rules.vm_class_for_header(block.header)
    return cast(BlockAPI, _new_vm(chain, vm_class, block).import_block(block).block)


def chunks(count: int, parts: int) -> list[tuple[int, ...]]:
    """Split range(count) into at most `parts` contiguous, non-empty, nearly equal runs."""
    parts = max(1, min(parts, count))
    size, extra = divmod(count, parts)
    runs, start = [], 0
    for part in range(parts):
        end = start + size + (1 if part < extra else 0)
        runs.append(tuple(range(start, end)))
        start = end
    return [run for run in runs if run]


def execute_block_parallel(
    chain: KhipuChain,
    block: BlockAPI,
    pool: WorkerPool[SpeculationTask, list[TxOutcome]] | None = None,
    *,
    workers: int = 2,
    tasks_per_worker: int = 1,
    min_transactions: int = 2,
    speculate_here: bool = True,
) -> BlockExecution:
    """Execute `block` on its parent state in parallel; results equal serial execution's.

    With no `pool`, a pool forked now from this process (so it sees the parent state as it is in
    memory) runs the speculation and is closed afterwards. A given pool's handler must be
    `speculate` bound to a chain that can read the parent state (or a `DatadirSpeculator`).
    With `workers` 0 every transaction is speculated here, before the merge (no pool: the
    batched state root and the merge without parallelism). Blocks before Byzantium and blocks
    of fewer than `min_transactions` transactions run serially. Raises py-evm's
    ValidationError if the block is invalid (as serial execution would).
    """
    vm_class = chain.rules.vm_class_for_header(block.header)
    count = len(block.transactions)
    if not supports_parallel(vm_class) or count < max(1, min_transactions):
        return BlockExecution(execute_block_serial(chain, block), "serial", count)
    encoded = block.encode() if hasattr(block, "encode") else _encode(block)
    started = time.perf_counter()
    if workers == 0:
        results = [speculate_block(chain, block, range(count))]
    elif pool is None:
        tasks = [SpeculationTask(encoded, run) for run in chunks(count, workers)]
        handler: Callable[[SpeculationTask], list[TxOutcome]] = lambda task: speculate(chain, task)  # noqa: E731
        with WorkerPool(handler, PoolLimits(workers=workers)) as own_pool:
            results = own_pool.map(tasks)
    else:
        shares = workers * tasks_per_worker
        results = _speculate_with(chain, pool, block, encoded, count, shares, speculate_here)
    speculation = sorted((o for result in results for o in result), key=lambda o: o.index)
    speculated = time.perf_counter()
    vm = _new_vm(chain, parallel_vm_class(vm_class), block)
    vm.speculation = speculation
    try:
        imported = as_block_class(vm.import_block(block).block, vm_class.get_block_class())
    except ValidationError as exc:
        log.warning("block #%d: parallel merge raised %s; re-running serially",
                    block.number, exc)  # fmt: skip
        return BlockExecution(execute_block_serial(chain, block), "serial-fallback", count)
    for name in CHECKED_FIELDS:
        if getattr(imported.header, name, None) != getattr(block.header, name, None):
            log.warning("block #%d: parallel %s differs from the header; re-running serially",
                        block.number, name)  # fmt: skip
            serial = execute_block_serial(chain, block)
            return BlockExecution(serial, "serial-fallback", count, vm.reexecuted)
    merged = time.perf_counter()
    return BlockExecution(
        imported, "parallel", count, vm.reexecuted, speculated - started, merged - speculated
    )


def _speculate_with(
    chain: KhipuChain,
    pool: WorkerPool[SpeculationTask, list[TxOutcome]],
    block: BlockAPI,
    encoded: bytes,
    count: int,
    shares: int,
    speculate_here: bool,
) -> list[list[TxOutcome]]:
    """Every transaction's outcome, in `shares` runs on the pool; with `speculate_here`, one
    more run in this process while the pool works (it would only wait otherwise)."""
    runs = chunks(count, shares + (1 if speculate_here else 0))
    local = runs.pop() if speculate_here and len(runs) > 1 else None
    tasks = [
        SpeculationTask(partial, run, partial=True)
        for partial, run in zip(partial_block(encoded, runs), runs, strict=True)
    ]
    if local is None:
        return pool.map(tasks)
    with ThreadPoolExecutor(1, thread_name_prefix="khipu-speculation") as runner:
        remote = runner.submit(pool.map, tasks)
        results = [speculate_block(chain, block, local)]
    return remote.result() + results


def _encode(block: BlockAPI) -> bytes:
    import rlp

    return bytes(rlp.encode(block))


class DatadirSpeculator:
    """The handler of a long-lived pool over a datadir: each worker opens it read-only
    (`ChainStore.open_readonly`, which follows the writer's commits) on its first task and
    speculates on the parent state stored there. The parent must be committed before the
    block is handed out."""

    def __init__(self, datadir: Path, rules: ChainRules) -> None:
        self.datadir = Path(datadir)
        self.rules = rules
        self._chain: KhipuChain | None = None

    def __call__(self, task: SpeculationTask) -> list[TxOutcome]:
        if self._chain is None:
            from khipu.chain.chain import open_chain
            from khipu.storage.chain_store import ChainStore

            store = ChainStore.open_readonly(self.datadir)
            self._chain = open_chain(self.rules, store.db)
        return speculate(self._chain, task)
