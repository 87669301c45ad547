"""eth_simulateV1: calls in a sequence of simulated blocks on top of a stored block, as geth runs
them (internal/ethapi/simulate.go): numbers and timestamps filled in, optional validation, block
and state overrides, ETH transfers as logs on request, and the blocks assembled with real roots.

Everything runs on one throwaway py-evm state; nothing is written to the database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from hashlib import sha256
from typing import Any

from eth.abc import BlockHeaderAPI, ComputationAPI
from eth.constants import CREATE_CONTRACT_ADDRESS
from eth.db.trie import make_trie_root_and_nodes
from eth.vm.chain_context import ChainContext
from eth.vm.execution_context import ExecutionContext
from eth.vm.spoof import SpoofTransaction
from eth_typing import Address, Hash32

from khipu.rpc.call_execution import (
    CallRequest,
    apply_block_overrides,
    apply_state_overrides,
    decode_call,
    decode_state_overrides,
)
from khipu.rpc.context import RpcContext
from khipu.rpc.errors import InvalidParams, RpcError
from khipu.rpc.eth_call import revert_reason, vm_error_message
from khipu.rpc.evm_hooks import ExecutionCancelled, ExecutionTimeout, deadline_hook, install_hook
from khipu.rpc.formatting import (
    Json,
    data,
    format_block,
    format_log,
    format_transaction,
    header_field,
    quantity,
)
from khipu.rpc.params import HexError, Params
from khipu.rpc.registry import rpc_method
from khipu.rpc.simulate_transfers import TRANSFER_LOG_ADDRESS, TransferLogger, transfer_topics

MAX_SIMULATE_BLOCKS = 256
MAX_NONCE = 2**64 - 1
TIMESTAMP_INCREMENT = 12
EMPTY_WITHDRAWALS_ROOT = bytes.fromhex(
    "56e81f171bcc55a6ff8345e692c0f86e5b48e01b996cadc001622fb5e363b421"
)
ERR_NONCE_TOO_LOW = -38010
ERR_NONCE_TOO_HIGH = -38011
ERR_FEE_CAP_TOO_LOW = -38012
ERR_INTRINSIC_GAS = -38013
ERR_INSUFFICIENT_FUNDS = -38014
ERR_BLOCK_GAS_LIMIT = -38015
ERR_BLOCK_NUMBER_ORDER = -38020
ERR_TIMESTAMP_ORDER = -38021
ERR_TOO_MANY_BLOCKS = -38026
ERR_REVERTED = 3
ERR_VM = -32015


@dataclass
class SimulatedBlock:
    """One entry of blockStateCalls once numbers and timestamps are filled in."""

    number: int
    timestamp: int
    overrides: dict[str, Any] = field(default_factory=dict)
    state_overrides: dict[bytes, dict[str, Any]] = field(default_factory=dict)
    calls: list[CallRequest] = field(default_factory=list)


def _decode_blocks(value: Any) -> tuple[list[dict[str, Any]], bool, bool, bool]:
    if not isinstance(value, dict):
        raise HexError("json: cannot unmarshal non-object into Go value of type ethapi.simOpts")
    blocks = value.get("blockStateCalls") or []
    if not isinstance(blocks, list):
        raise HexError("blockStateCalls must be an array")
    return (
        blocks,
        bool(value.get("traceTransfers", False)),
        bool(value.get("validation", False)),
        bool(value.get("returnFullTransactions", False)),
    )


def sanitize_chain(base: BlockHeaderAPI, raw_blocks: list[dict[str, Any]]) -> list[SimulatedBlock]:
    """geth's sanitizeChain: numbers in order, gaps filled with empty blocks, timestamps +12."""
    blocks: list[SimulatedBlock] = []
    previous_number: int = base.block_number
    previous_time = base.timestamp
    for raw in raw_blocks:
        overrides = dict(raw.get("blockOverrides") or {})
        number = _quantity(overrides.get("number"), previous_number + 1)
        if number <= previous_number:
            raise RpcError(
                ERR_BLOCK_NUMBER_ORDER,
                f"block numbers must be in order: {number} <= {previous_number}",
            )
        if number - base.block_number > MAX_SIMULATE_BLOCKS:
            raise RpcError(ERR_TOO_MANY_BLOCKS, "too many blocks")
        for gap_number in range(previous_number + 1, number):
            previous_time += TIMESTAMP_INCREMENT
            blocks.append(SimulatedBlock(gap_number, previous_time))
        previous_number = int(number)
        if overrides.get("time") is None:
            timestamp = previous_time + TIMESTAMP_INCREMENT
        else:
            timestamp = _quantity(overrides["time"], 0)
            if timestamp <= previous_time:
                raise RpcError(
                    ERR_TIMESTAMP_ORDER,
                    f"block timestamps must be in order: {timestamp} <= {previous_time}",
                )
        previous_time = timestamp
        overrides.pop("number", None)
        overrides.pop("time", None)
        try:
            state_overrides = decode_state_overrides(raw.get("stateOverrides"))
            calls = [decode_call(call) for call in raw.get("calls") or []]
        except HexError as exc:
            raise InvalidParams(f"invalid argument 0: {exc}") from None
        blocks.append(SimulatedBlock(number, timestamp, overrides, state_overrides, calls))
    return blocks


def _quantity(value: Any, default: int) -> int:
    from khipu.rpc.params import decode_quantity

    if value is None:
        return default
    try:
        return decode_quantity(value)
    except HexError as exc:
        raise InvalidParams(f"invalid argument 0: {exc}") from None


class Simulation:
    """Runs the simulated blocks one after another on a single state."""

    def __init__(self, ctx: RpcContext, base: BlockHeaderAPI, validate: bool, trace: bool) -> None:
        self.ctx = ctx
        self.view = ctx.view
        self.base = base
        self.validate = validate
        self.trace = trace
        self.state: Any = None
        self.hashes: list[bytes] = []  # simulated block hashes, oldest first
        self.gas_pool = ctx.config.gas_cap  # shared by every call of the simulation
        self.logs: list[tuple[Any, ...]] = []  # the logs of the call just run
        self.log_index = 0  # logs are numbered across the block

    def run(self, blocks: list[SimulatedBlock]) -> list[tuple[Any, list[Json], list[Any]]]:
        results = []
        parent = self.base
        for block in blocks:
            assembled, calls, txs = self._block(block, parent)
            results.append((assembled, calls, txs))
            parent = assembled.header
            self.hashes.append(parent.hash)
        return results

    def _header(self, block: SimulatedBlock, parent: BlockHeaderAPI) -> BlockHeaderAPI:
        rules = self.view.rules
        changes: dict[str, Any] = {
            "block_number": block.number,
            "timestamp": block.timestamp,
            "parent_hash": parent.hash,
            "gas_used": 0,
            "mix_hash": b"\x00" * 32,
            "extra_data": b"",
        }
        changes["gas_limit"] = parent.gas_limit
        changes["coinbase"] = parent.coinbase
        changes["difficulty"] = parent.difficulty
        header = self.base.copy(**changes)
        header = apply_block_overrides(
            header, {k: v for k, v in block.overrides.items() if k in _HEADER_OVERRIDES}
        )
        fork = rules.fork_name(block.number, block.timestamp, 0)
        if (
            header_field(header, "base_fee_per_gas") is not None
            and "baseFeePerGas" not in block.overrides
        ):
            from khipu.rpc.eth_fees import next_base_fee

            fee = next_base_fee(parent) if self.validate else 0
            header = header.copy(base_fee_per_gas=fee or 0)
        if header_field(header, "excess_blob_gas") is not None:
            header = header.copy(excess_blob_gas=self._excess_blob_gas(parent, fork))
        if header_field(header, "parent_beacon_block_root") is not None:
            root = block.overrides.get("beaconRoot")
            header = header.copy(
                parent_beacon_block_root=bytes.fromhex(root[2:]) if root else b"\x00" * 32
            )
        return header

    def _excess_blob_gas(self, parent: BlockHeaderAPI, fork: str) -> int:
        excess = header_field(parent, "excess_blob_gas")
        used = header_field(parent, "blob_gas_used")
        if excess is None or used is None:
            return 0
        schedule = self.view.rules.blob_schedule(fork)
        target = 0 if schedule is None else schedule.target_blobs_per_block * 2**17
        return max(0, int(excess) + int(used) - target)

    def _prev_hashes(self) -> list[bytes]:
        hashes = list(reversed(self.hashes))
        header: BlockHeaderAPI | None = self.base
        while header is not None and len(hashes) < 256:
            hashes.append(header.hash)
            header = self.view.header_by_hash(header.parent_hash) if header.block_number else None
        return hashes

    def _block(
        self, block: SimulatedBlock, parent: BlockHeaderAPI
    ) -> tuple[Any, list[Json], list[Any]]:
        header = self._header(block, parent)
        vm_class = self.view.vm_class(header)
        vm: Any = vm_class(
            header=header.copy(state_root=self.base.state_root),
            chaindb=self.view.chaindb,
            chain_context=ChainContext(self.view.chain_id),
            consensus_context=self.view.chain.consensus_context,
        )
        context = ExecutionContext(
            coinbase=header.coinbase,
            timestamp=header.timestamp,
            block_number=header.block_number,
            difficulty=header.difficulty,
            mix_hash=header.mix_hash,
            gas_limit=header.gas_limit,
            prev_hashes=[Hash32(h) for h in self._prev_hashes()],
            chain_id=self.view.chain_id,
            base_fee_per_gas=header_field(header, "base_fee_per_gas"),
            excess_blob_gas=header_field(header, "excess_blob_gas"),
        )
        if self.state is None:
            self.state = vm.state
            self.computation_class = self.state.computation_class
        self.state.execution_context = context
        vm._state = self.state
        state = self.state
        # Precompile moves last for one block: every block starts from the fork's set.
        state.computation_class = self.computation_class
        apply_state_overrides(state, block.state_overrides)
        block_class = vm.get_block_class()
        empty = block_class(header, transactions=[], uncles=[], withdrawals=[])
        vm.block_preprocessing(empty)

        transactions: list[Any] = []
        senders: list[Any] = []  # the same transactions, answering `sender`
        receipts: list[Any] = []
        calls: list[Json] = []
        cumulative = 0
        self.log_index = 0
        for index, request in enumerate(block.calls):
            tx, spoofed = self._transaction(vm, header, request, cumulative)
            computation = self._execute(vm, spoofed, request)
            gas_used = vm.finalize_gas_used(spoofed, computation)
            peak = max(spoofed.gas - computation.get_gas_remaining(), computation.data_floor_gas)
            receipt = vm.make_receipt(header.copy(gas_used=cumulative), spoofed, computation, state)
            cumulative += gas_used
            self.gas_pool = max(0, self.gas_pool - gas_used)
            transactions.append(tx)
            senders.append(spoofed)
            receipts.append(receipt)
            calls.append(self._call_result(computation, gas_used, peak, header, tx.hash, index))

        root_block = block_class(header, transactions=transactions, uncles=[], withdrawals=[])
        requests_hash = self._requests_hash(vm, root_block, receipts)
        tx_root, _ = make_trie_root_and_nodes(tuple(t for t in transactions))
        receipt_root, _ = make_trie_root_and_nodes(tuple(receipts))
        bloom = 0
        for receipt in receipts:
            bloom |= receipt.bloom
        final: dict[str, Any] = {
            "state_root": state.make_state_root(),
            "gas_used": cumulative,
            "transaction_root": tx_root,
            "receipt_root": receipt_root,
            "bloom": bloom,
        }
        if header_field(header, "blob_gas_used") is not None:
            final["blob_gas_used"] = 0
        if header_field(header, "withdrawals_root") is not None:
            final["withdrawals_root"] = EMPTY_WITHDRAWALS_ROOT
        if requests_hash is not None:
            final["requests_hash"] = requests_hash
        final_header = header.copy(**final)
        assembled = block_class(final_header, transactions=transactions, uncles=[], withdrawals=[])
        for call in calls:
            for log in call["logs"]:
                log["blockHash"] = data(final_header.hash)
        return assembled, calls, senders

    def _requests_hash(self, vm: Any, block: Any, receipts: list[Any]) -> bytes | None:
        if header_field(block.header, "requests_hash") is None:
            return None
        deposit = self.view.rules.config.deposit_contract_address
        deposits = b""
        for receipt in receipts:
            for log in receipt.logs:
                if (
                    deposit
                    and log.address == deposit
                    and log.topics
                    and log.topics[0] == _DEPOSIT_TOPIC
                ):
                    payload = log.data
                    deposits += payload[192:240] + payload[288:320] + payload[352:360]
                    deposits += payload[416:512] + payload[544:552]
        requests = [b"\x00" + deposits]
        block.block_requests.clear()
        block.block_requests.extend(requests)
        vm.process_withdrawal_request_data(block)
        vm.process_consolidation_request_data(block)
        digest = sha256()
        for request in block.block_requests:
            if len(request) > 1:
                digest.update(sha256(request).digest())
        return digest.digest()

    def _transaction(
        self, vm: Any, header: BlockHeaderAPI, request: CallRequest, cumulative: int
    ) -> tuple[Any, Any]:
        state = self.state
        sender = Address(request.sender)
        nonce = request.nonce if request.nonce is not None else state.get_nonce(sender)
        gas = request.gas if request.gas is not None else header.gas_limit - cumulative
        if cumulative + gas > header.gas_limit:
            raise RpcError(
                ERR_BLOCK_GAS_LIMIT, f"block gas limit reached: {cumulative} >= {header.gas_limit}"
            )
        if self.gas_pool and gas > self.gas_pool:
            gas = self.gas_pool  # geth caps every call by what is left of --rpc.gascap
        to = Address(request.to) if request.to is not None else CREATE_CONTRACT_ADDRESS
        max_fee = request.max_fee_per_gas or 0
        tip = request.max_priority_fee_per_gas or 0
        access_list = [(Address(a), tuple(s)) for a, s in request.access_list or []]
        tx = vm.get_transaction_builder().new_dynamic_fee_transaction(
            self.view.chain_id, nonce, tip, max_fee, gas, to, request.value, request.data,
            access_list, y_parity=0, r=0, s=0,
        )  # fmt: skip
        # py-evm builds a London-typed object whatever the fork; decode it as this fork's.
        tx = vm.get_transaction_builder().decode(tx.encode())
        if request.gas_price is not None:
            price = request.gas_price
            spoofed = SpoofTransaction(
                tx, sender=sender, max_fee_per_gas=price, max_priority_fee_per_gas=price
            )
        else:
            spoofed = SpoofTransaction(tx, sender=sender)
        return tx, spoofed

    def _execute(self, vm: Any, tx: Any, request: CallRequest) -> ComputationAPI:
        state = self.state
        sender = Address(request.sender)
        base_fee = state.execution_context.base_fee_per_gas or 0
        if self.validate and state.get_nonce(sender) == MAX_NONCE:
            raise RpcError(
                -32603, f"nonce has max value: address 0x{sender.hex()}, nonce: {MAX_NONCE}"
            )
        if self.validate:
            current = state.get_nonce(sender)
            if tx.nonce < current:
                raise RpcError(
                    ERR_NONCE_TOO_LOW,
                    f"nonce too low: address 0x{sender.hex()}, tx: {tx.nonce} state: {current}",
                )
            if tx.nonce > current:
                raise RpcError(
                    ERR_NONCE_TOO_HIGH,
                    f"nonce too high: address 0x{sender.hex()}, tx: {tx.nonce} state: {current}",
                )
            if tx.max_fee_per_gas < base_fee:
                raise RpcError(
                    ERR_FEE_CAP_TOO_LOW,
                    f"max fee per gas less than block base fee: address 0x{sender.hex()}, "
                    f"maxFeePerGas: {tx.max_fee_per_gas}, baseFee: {base_fee}",
                )
        balance = state.get_balance(sender)
        want = tx.gas * tx.max_fee_per_gas + tx.value
        if balance < want:
            raise RpcError(
                ERR_INSUFFICIENT_FUNDS,
                f"insufficient funds for gas * price + value: address 0x{sender.hex()} "
                f"have {balance} want {want}",
            )
        if tx.gas < tx.intrinsic_gas:
            raise RpcError(
                ERR_INTRINSIC_GAS, f"intrinsic gas too low: have {tx.gas}, want {tx.intrinsic_gas}"
            )
        state.lock_changes()
        hook = deadline_hook(self.ctx.config.evm_timeout, self.ctx.stopping)
        plain = state.computation_class
        transfers = TransferLogger() if self.trace else None
        if transfers is not None:
            from khipu.rpc.evm_hooks import chain_hooks

            install_hook(state, chain_hooks(hook, transfers))
        else:
            install_hook(state, hook)
        executor: Any = state.get_transaction_executor()
        nonce = state.get_nonce(sender)
        if nonce == MAX_NONCE:  # geth's uint64 wraps to 0; py-evm refuses to pass the maximum
            state.set_nonce(sender, MAX_NONCE - 1)
        try:
            message = executor.build_evm_message(tx)
            if nonce == MAX_NONCE:
                state.set_nonce(sender, 0)
            computation = executor.build_computation(message, tx)
            free = (
                not self.validate and tx.max_fee_per_gas == 0 and tx.max_priority_fee_per_gas == 0
            )
            if free and base_fee:
                # geth skips the fee payment of a zero-fee call under NoBaseFee; py-evm would
                # charge the coinbase a negative tip, so finalize as if the base fee were 0.
                context = state.execution_context
                state.execution_context = _with_base_fee(context, 0)
                try:
                    computation = executor.finalize_computation(tx, computation)
                finally:
                    state.execution_context = context
            else:
                computation = executor.finalize_computation(tx, computation)
        except (ExecutionTimeout, ExecutionCancelled) as exc:
            raise RpcError(-32016, str(exc)) from None
        finally:
            state.computation_class = plain
        if hasattr(state, "clear_transient_storage"):
            state.clear_transient_storage()
        self.logs = []
        if not computation.is_success and transfers is not None and tx.value and tx.to:
            # geth's tracer numbered the transfer log before the call failed and dropped it.
            self.log_index += 1
        if computation.is_success:
            top = None
            if transfers is not None and tx.value and tx.to:
                top = (
                    TRANSFER_LOG_ADDRESS,
                    transfer_topics(sender, bytes(tx.to)),
                    tx.value.to_bytes(32, "big"),
                )
            self.logs = (
                transfers.logs(computation, top) if transfers is not None
                else list(computation.get_log_entries())
            )  # fmt: skip
        return computation  # type: ignore[no-any-return]

    def _call_result(
        self, computation: ComputationAPI, gas_used: int, peak: int, header: BlockHeaderAPI,
        tx_hash: bytes, index: int,
    ) -> Json:  # fmt: skip
        result: Json = {
            "returnData": data(bytes(computation.output)) if computation.is_success else "0x",
            "logs": [],
            "gasUsed": quantity(gas_used),
            "maxUsedGas": quantity(max(peak, gas_used)),
            "status": "0x1" if computation.is_success else "0x0",
        }
        if computation.is_success:
            for address, topics, payload in self.logs:
                log = _Log(address, topics, payload)
                result["logs"].append(format_log(log, header, tx_hash, index, self.log_index))  # type: ignore[arg-type]
                self.log_index += 1
        else:
            output = bytes(computation.output)
            from eth.exceptions import Revert

            if isinstance(computation.error, Revert):
                reason = revert_reason(output)
                result["error"] = {
                    "message": f"execution reverted: {reason}" if reason else "execution reverted",
                    "code": ERR_REVERTED,
                    "data": data(output),
                }
            else:
                result["error"] = {"message": vm_error_message(computation), "code": ERR_VM}
        return result


def _with_base_fee(context: Any, base_fee: int) -> ExecutionContext:
    return ExecutionContext(
        coinbase=context.coinbase,
        timestamp=context.timestamp,
        block_number=context.block_number,
        difficulty=context.difficulty,
        mix_hash=context.mix_hash,
        gas_limit=context.gas_limit,
        prev_hashes=context.prev_hashes,
        chain_id=context.chain_id,
        base_fee_per_gas=base_fee,
        excess_blob_gas=context._excess_blob_gas,
    )


@dataclass
class _Log:
    address: bytes
    topics: tuple[int, ...]
    data: bytes


_HEADER_OVERRIDES = {"gasLimit", "feeRecipient", "prevRandao", "baseFeePerGas", "difficulty"}
_DEPOSIT_TOPIC = int.from_bytes(
    bytes.fromhex("649bbc62d0e31342afea4e5cd82d4049e7e1ee912fc0889aa790803be39038c5"), "big"
)


@rpc_method("eth_simulateV1")
def simulate(ctx: RpcContext, params: Params) -> list[Json]:
    raw_blocks, trace, validate, full = params.decode(0, _decode_blocks)
    base = ctx.view.require_header(params.block(1))
    blocks = sanitize_chain(base, raw_blocks)
    simulation = Simulation(ctx, base, validate, trace)
    output = []
    for assembled, calls, transactions in simulation.run(blocks):
        formatted = format_block(assembled, False)
        if full:
            formatted["transactions"] = [
                format_transaction(tx, assembled.header, index)
                for index, tx in enumerate(transactions)
            ]
        formatted["calls"] = calls
        output.append(formatted)
    return output
