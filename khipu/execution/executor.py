"""Parallel block execution: speculate shares of a block as chains on its parent, merge in order.

`execute_block_parallel` splits the transactions of a block into shares of likely dependent
transactions (grouping.py) and runs them in worker processes (each given a partial block holding
only its share; this process speculates one more share meanwhile). A share runs as a chain, in
block order on one state that starts as the parent state (after the block's pre-processing
system calls) and keeps each transaction's writes, recording each transaction's read and write
set, the pre-values it read and the parent accounts it touched. It then imports the block
through py-evm's own `import_block` on the merging VM of merge.py: transactions whose pre-values
no longer hold re-executed here, the others committed as they ran, the block-level work and
the (batched) state root by py-evm.

If the result disagrees with the header in state root, receipts root, bloom, gas used or requests
hash, the block is re-run serially; that serial result is what is returned. Blocks before
Byzantium (receipts carry an intermediate state root per transaction) run in parallel too: the
merge computes each root on the merged state (merge.py); KHIPU_PARALLEL_PRE_BYZANTIUM=0 (or
PARALLEL_PRE_BYZANTIUM = False) sends them to py-evm's serial path instead.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from eth.abc import BlockAPI
from eth.vm.chain_context import ChainContext
from eth_utils import ValidationError

from khipu.chain.chain import KhipuChain
from khipu.chain.importer import decode_block
from khipu.chain.rules import ChainRules
from khipu.execution.grouping import speculation_shares
from khipu.execution.merge import (
    TxOutcome,
    as_block_class,
    parallel_vm_class,
    receipts_carry_state_root,
)
from khipu.execution.pool import PoolLimits, WorkerPool
from khipu.execution.rlp_items import encode_list, list_items
from khipu.execution.rwset import FieldKey, ReadWriteSet
from khipu.execution.senders import forget_worker_senders
from khipu.execution.storage_roots import StorageRoots

# TxOutcome lives with the merge; callers keep importing it from here.
__all__ = [
    "BlockExecution",
    "DatadirSpeculator",
    "SpeculationTask",
    "TxOutcome",
    "chunks",
    "execute_block_batched",
    "execute_block_in_shares",
    "execute_block_parallel",
    "execute_block_serial",
    "partial_block",
    "speculate",
    "speculate_block",
    "supports_parallel",
]

log = logging.getLogger("khipu.execution")

# Header fields the parallel result must share with the header (else the block runs serially).
CHECKED_FIELDS = ("state_root", "receipt_root", "bloom", "gas_used", "requests_hash")

# Blocks before Byzantium go through speculation and the merge unless this is False (then
# py-evm executes them serially): the way back if a pre-Byzantium block ever needs it.
PARALLEL_PRE_BYZANTIUM = os.environ.get("KHIPU_PARALLEL_PRE_BYZANTIUM", "1") != "0"


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
    # "parallel", "batched" (execute_block_batched), "serial" (not handled) or
    # "serial-fallback" (the parallel or batched result disagreed with the header)
    mode: str
    transactions: int
    reexecuted: int = 0
    speculate_seconds: float = 0.0  # workers running the shares' chains on the parent state
    merge_seconds: float = 0.0  # the in-order merge, re-execution and block-level work
    roots_seconds: float = 0.0  # of merge_seconds: the state root (storage and account tries)
    reexecuted_indices: tuple[int, ...] = ()  # the transactions re-executed, in block order
    # transactions in the largest speculation share (a chain: the speculation's critical path)
    largest_share: int = 0


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


def supports_parallel(vm_class: type[Any]) -> bool:
    """Every fork from Frontier on; forks before Byzantium (receipts with an intermediate
    state root) only while PARALLEL_PRE_BYZANTIUM."""
    return PARALLEL_PRE_BYZANTIUM or not receipts_carry_state_root(vm_class)


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
    """Run the task's transactions as a chain on the parent state, recording rw-sets."""
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
    `block.transactions` if given) in that order as a chain: one state, starting as the parent
    state after the block's pre-processing, keeps every transaction's writes, so each sees the
    earlier ones'. Records each one's rw-set with its pre-values, and which of those came from
    the chain rather than the parent (`TxOutcome.inherited`).

    A transaction that fails (py-evm's ValidationError or ValueError) is reverted and reported
    with its error; if py-evm refuses that revert, the chain starts again from a fresh parent
    state (what later transactions then see is the parent's, and marked so).
    """
    vm_class = parallel_vm_class(chain.rules.vm_class_for_header(block.header))
    outcomes = []

    def fresh_state() -> tuple[Any, Any, Any]:
        vm = _new_vm(chain, vm_class, block)
        header = vm.begin_block(block)
        return vm, header, vm.state

    # `vm.apply_transaction` would check the header's cumulative gas, so its steps are here.
    vm, header, state = fresh_state()
    chained: set[FieldKey] = set()  # keys written by earlier transactions of the chain
    for index in indices:
        transaction = block.transactions[index if positions is None else positions[index]]
        # As between transactions in py-evm: the SSTORE original values become this state's,
        # the warm accounts and slots are forgotten.
        state.lock_changes()
        snapshot = state.snapshot()
        state.start_recording()
        try:
            vm.validate_transaction_against_header(header, transaction)
            computation = state.apply_transaction(transaction)
            receipt = vm.make_receipt(header, transaction, computation, state)
            vm.validate_receipt(receipt)
        except (ValidationError, ValueError) as exc:
            state.finish_recording()
            if not _reverted(state, snapshot):
                vm, header, state = fresh_state()
                chained = set()
            error = f"{type(exc).__name__}: {exc}"
            # A sender recovered before the failure (a nonce from the future) is still good.
            sender = transaction.__dict__.get("sender")
            outcomes.append(TxOutcome(index, None, None, error, sender=sender))
            continue
        rwset = state.finish_recording()
        inherited = frozenset(
            key for key in rwset.values if key in chained or ("wipe", key[1]) in chained
        )
        chained |= rwset.written_keys()
        outcomes.append(
            TxOutcome(
                index,
                receipt.encode(),
                rwset,
                parent_accounts=parent_accounts_of(state, rwset),
                sender=transaction.sender,  # recovered (and cached) by the run above
                inherited=inherited,
            )
        )
    return outcomes


def _reverted(state: Any, snapshot: Any) -> bool:
    """Revert `state` to `snapshot`; False if py-evm refuses, leaving the state unusable.

    py-evm refuses to revert across two clears of one account's storage (a contract created
    and self-destructed by the same transaction clears it at creation and at deletion); the
    caller then starts from a fresh parent state.
    """
    try:
        state.revert(snapshot)
    except ValidationError:
        return False
    return True


def execute_block_serial(chain: KhipuChain, block: BlockAPI) -> BlockAPI:
    """Execute `block` on its parent state with py-evm (nothing persisted but trie nodes).
    Senders that workers recovered ahead are taken off first: py-evm recovers every sender and
    checks every signature itself."""
    forget_worker_senders(block.transactions)
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
    storage_roots: StorageRoots | None = None,
) -> BlockExecution:
    """Execute `block` on its parent state in parallel; results equal serial execution's.

    With no `pool`, a pool forked now from this process (so it sees the parent state as it is in
    memory) runs the speculation and is closed afterwards. A given pool's handler must be
    `speculate` bound to a chain that can read the parent state (or a `DatadirSpeculator`).
    With `workers` 0 every transaction is speculated here, before the merge (no pool: the
    batched state root and the merge without parallelism). Blocks of fewer than
    `min_transactions` transactions (and blocks before Byzantium if not
    PARALLEL_PRE_BYZANTIUM) run serially. Raises py-evm's ValidationError if the block is
    invalid (as serial execution would). With `storage_roots` the end-of-block storage tries
    are updated there (on the workers, see storage_roots).
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
        runs = speculation_shares(block.transactions, workers)
        tasks = [SpeculationTask(encoded, run) for run in runs]
        handler: Callable[[SpeculationTask], list[TxOutcome]] = lambda task: speculate(chain, task)  # noqa: E731
        with WorkerPool(handler, PoolLimits(workers=workers)) as own_pool:
            results = own_pool.map(tasks)
    else:
        shares = workers * tasks_per_worker
        results = _speculate_with(chain, pool, block, encoded, shares, speculate_here)
    speculation = sorted((o for result in results for o in result), key=lambda o: o.index)
    execution = _merge(chain, block, vm_class, speculation, started, storage_roots=storage_roots)
    execution.largest_share = max(len(result) for result in results)
    return execution


def execute_block_in_shares(
    chain: KhipuChain, block: BlockAPI, shares: Sequence[Sequence[int]]
) -> BlockExecution:
    """Execute `block` in parallel mode with the given shares (each a chain of transaction
    indices in block order; together every index once), all speculated here one after the
    other, then merged: what the workers would do with that plan, without processes. For tests
    and for studying a share plan. Blocks before Byzantium run serially; raises ValueError if
    the shares do not cover the block's transactions exactly once.
    """
    vm_class = chain.rules.vm_class_for_header(block.header)
    count = len(block.transactions)
    if sorted(index for share in shares for index in share) != list(range(count)):
        raise ValueError(f"block #{block.number}: shares {shares} do not cover {count} txs once")
    if not supports_parallel(vm_class):
        return BlockExecution(execute_block_serial(chain, block), "serial", count)
    started = time.perf_counter()
    outcomes = [o for share in shares for o in speculate_block(chain, block, share)]
    execution = _merge(chain, block, vm_class, sorted(outcomes, key=lambda o: o.index), started)
    execution.largest_share = max(len(share) for share in shares)
    return execution


def execute_block_batched(
    chain: KhipuChain, block: BlockAPI, storage_roots: StorageRoots | None = None
) -> BlockExecution:
    """Execute `block` in order in this process on the merging VM, with no speculation: every
    transaction runs as in py-evm, but the state root is batched and the block work is the
    merge's (no deep block copies, receipts kept encoded). For blocks whose transactions mostly
    conflict. Same results as serial; any disagreement with the header re-runs it serially.
    """
    vm_class = chain.rules.vm_class_for_header(block.header)
    if not supports_parallel(vm_class):
        return BlockExecution(execute_block_serial(chain, block), "serial", len(block.transactions))
    started = time.perf_counter()
    return _merge(chain, block, vm_class, (), started, "batched", storage_roots)


def _merge(
    chain: KhipuChain,
    block: BlockAPI,
    vm_class: type[Any],
    speculation: Sequence[TxOutcome],
    started: float,
    mode: str = "parallel",
    storage_roots: StorageRoots | None = None,
) -> BlockExecution:
    """Import `block` on the merging VM with `speculation` (sorted by index) and check the
    result against the header; on a disagreement or a merge error, the serial result."""
    count = len(block.transactions)
    speculated = time.perf_counter()
    vm = _new_vm(chain, parallel_vm_class(vm_class), block)
    vm.speculation = speculation
    vm.storage_roots = storage_roots
    try:
        imported = as_block_class(vm.import_block(block).block, vm_class.get_block_class())
    except ValidationError as exc:
        log.warning("block #%d: %s merge raised %s; re-running serially",
                    block.number, mode, exc)  # fmt: skip
        return BlockExecution(execute_block_serial(chain, block), "serial-fallback", count)
    for name in CHECKED_FIELDS:
        if getattr(imported.header, name, None) != getattr(block.header, name, None):
            log.warning("block #%d: %s %s differs from the header; re-running serially",
                        block.number, mode, name)  # fmt: skip
            serial = execute_block_serial(chain, block)
            return BlockExecution(serial, "serial-fallback", count, vm.reexecuted)
    merged = time.perf_counter()
    reexecuted = vm.reexecuted if speculation else 0
    roots = 0.0 if storage_roots is None else storage_roots.seconds
    return BlockExecution(
        imported,
        mode,
        count,
        reexecuted,
        speculated - started,
        merged - speculated,
        roots,
        vm.reexecuted_indices if speculation else (),
    )


def _speculate_with(
    chain: KhipuChain,
    pool: WorkerPool[SpeculationTask, list[TxOutcome]],
    block: BlockAPI,
    encoded: bytes,
    shares: int,
    speculate_here: bool,
) -> list[list[TxOutcome]]:
    """Every transaction's outcome, in `shares` runs on the pool; with `speculate_here` (and a
    pool that will not fork meanwhile, see _forks_nothing), one more run in this process while
    the pool works (it would only wait otherwise)."""
    speculate_here = speculate_here and _forks_nothing(pool)
    runs = speculation_shares(block.transactions, shares + (1 if speculate_here else 0))
    # This process takes the share of least gas (its thread also waits on the pool).
    lightest = min(range(len(runs)), key=lambda i: sum(block.transactions[t].gas for t in runs[i]))
    local = runs.pop(lightest) if speculate_here and len(runs) > 1 else None
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


def _forks_nothing(pool: Any) -> bool:
    """True if `pool.map` will not fork a worker: all its workers are up and none is recycled.

    This process speculates its share in this thread while another thread waits in
    `pool.map`; a fork then would copy into the child whatever lock this thread holds (an
    import lock, a store's lock) and the child would hang on it. A worker that dies mid-map is
    still replaced by a fork: that rare case keeps the hazard.
    """
    limits = getattr(pool, "limits", None)
    worker_pids = getattr(pool, "worker_pids", None)
    if limits is None or worker_pids is None or limits.max_tasks is not None:
        return False
    return bool(len(worker_pids()) >= limits.workers)


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
