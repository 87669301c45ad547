"""Re-executing a stored block on its parent's state, transaction by transaction, for tracers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from eth.abc import BlockAPI, BlockHeaderAPI, ComputationAPI, SignedTransactionAPI
from eth.vm.chain_context import ChainContext

from khipu.rpc.chain_view import ChainView
from khipu.rpc.errors import ServerError
from khipu.rpc.evm_hooks import OpcodeHook, install_hook


@dataclass
class ReplayedTransaction:
    index: int
    transaction: SignedTransactionAPI
    computation: ComputationAPI
    gas_used: int


def replay_block(
    view: ChainView,
    header: BlockHeaderAPI,
    hook_for: Callable[[int], OpcodeHook | None],
    stop_after: int | None = None,
) -> Iterator[ReplayedTransaction]:
    """Run the block's transactions in order on its parent state, yielding each result.

    `hook_for(index)` gives the opcode hook for a transaction (None: run untraced). Raises
    ServerError("genesis is not traceable") for block 0 and when the parent is missing.
    """
    if header.block_number == 0:
        raise ServerError("genesis is not traceable")
    parent = view.header_by_hash(header.parent_hash)
    if parent is None:
        raise ServerError(
            f"parent {header.parent_hash.hex()} of block {header.block_number} not found"
        )
    block: BlockAPI = view.block(header)
    vm_class = view.vm_class(header)
    base = vm_class.create_header_from_parent(parent, timestamp=header.timestamp)
    vm = vm_class(
        header=base.copy(gas_used=header.gas_used),
        chaindb=view.chaindb,
        chain_context=ChainContext(view.chain_id),
        consensus_context=view.chain.consensus_context,
    )
    # What VM.import_block does before its transactions, on the parent's state.
    machine: Any = vm
    context = machine.create_execution_context(
        header, machine.previous_hashes, machine.chain_context
    )
    machine._state = machine.get_state_class()(view.chaindb.db, context, parent.state_root)
    machine.block_preprocessing(block)
    state = vm.state
    plain_class = state.computation_class
    for index, tx in enumerate(block.transactions):
        hook = hook_for(index)
        if hook is not None:
            install_hook(state, hook)
        state.lock_changes()
        computation = state.apply_transaction(tx)
        state.computation_class = plain_class  # type: ignore[misc]
        gas_used = vm.finalize_gas_used(tx, computation)  # type: ignore[attr-defined]
        yield ReplayedTransaction(index, tx, computation, gas_used)
        if stop_after is not None and index >= stop_after:
            return
