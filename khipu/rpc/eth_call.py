"""eth_call, eth_estimateGas and eth_createAccessList at any block, with state overrides."""

from __future__ import annotations

from typing import Any

from eth._utils.address import generate_contract_address
from eth.abc import ComputationAPI
from eth_typing import Address

from khipu.rpc.call_execution import (
    CallEnvironment,
    CallExecutor,
    CallOutcome,
    CallRequest,
    apply_block_overrides,
    decode_call,
    decode_state_overrides,
)
from khipu.rpc.context import RpcContext
from khipu.rpc.errors import ExecutionReverted, RpcError, ServerError
from khipu.rpc.evm_hooks import ExecutionCancelled, ExecutionTimeout
from khipu.rpc.formatting import Json, data, format_access_list, quantity
from khipu.rpc.params import Params
from khipu.rpc.registry import rpc_method

TX_GAS = 21000
CALL_STIPEND = 2300
ESTIMATE_ERROR_RATIO = 0.015

_PANIC_REASONS = {
    0x00: "generic panic",
    0x01: "assert(false)",
    0x11: "arithmetic underflow or overflow",
    0x12: "division or modulo by zero",
    0x21: "enum overflow",
    0x22: "invalid encoded storage byte array accessed",
    0x31: "out-of-bounds array access; popping on an empty array",
    0x32: "out-of-bounds access of an array or bytesN",
    0x41: "out of memory",
    0x51: "uninitialized function",
}


def revert_reason(output: bytes) -> str | None:
    """The Solidity reason in revert data: Error(string) or Panic(uint256), as geth words it."""
    if len(output) >= 4 + 32 * 2 and output[:4] == bytes.fromhex("08c379a0"):
        try:
            offset = int.from_bytes(output[4:36], "big")
            length = int.from_bytes(output[4 + offset : 36 + offset], "big")
            start = 36 + offset
            if start + length <= len(output):
                return output[start : start + length].decode("utf-8", errors="replace")
        except (ValueError, OverflowError):
            return None
    if len(output) == 4 + 32 and output[:4] == bytes.fromhex("4e487b71"):
        code = int.from_bytes(output[4:], "big")
        return _PANIC_REASONS.get(code, f"unknown panic code: {code:#x}")
    return None


def vm_error_message(computation: ComputationAPI) -> str:
    """geth's wording of an EVM failure other than a revert."""
    error = computation.error
    name = type(error).__name__
    known = {
        "OutOfGas": "out of gas",
        "InsufficientStack": "stack underflow",
        "FullStack": "stack limit reached 1024 (1023)",
        "InvalidJumpDestination": "invalid jump destination",
        "InvalidInstruction": "invalid opcode",
        "StackDepthLimit": "max call depth exceeded",
        "ContractCreationCollision": "contract address collision",
        "WriteProtection": "write protection",
        "OutOfBoundsRead": "return data out of bounds",
        "ReservedBytesInCode": "invalid code: must not begin with 0xef",
        "InsufficientFunds": "insufficient balance for transfer",
    }
    return known.get(name, f"{name}: {error}" if str(error) else name)


def _executor(ctx: RpcContext, params: Params, block_index: int) -> CallExecutor:
    header = ctx.view.require_header(params.block(block_index))
    header = apply_block_overrides(header, params.raw(block_index + 2))
    overrides = params.decode(block_index + 1, decode_state_overrides, default={})
    return CallExecutor(
        ctx.view,
        CallEnvironment(header, overrides),
        ctx.config.gas_cap,
        ctx.config.evm_timeout,
        ctx.stopping,
    )


def _run(executor: CallExecutor, request: CallRequest, gas: int, hook: Any = None) -> CallOutcome:
    try:
        return executor.run(request, gas, hook)
    except (ExecutionTimeout, ExecutionCancelled) as exc:
        raise ServerError(str(exc)) from None


@rpc_method("eth_call")
def call(ctx: RpcContext, params: Params) -> str:
    request: CallRequest = params.decode(0, decode_call)
    executor = _executor(ctx, params, 1)
    outcome = _run(executor, request, executor.default_gas(request))
    if outcome.reverted:
        raise ExecutionReverted(revert_reason(outcome.output), outcome.output)
    if outcome.failed:
        raise ServerError(vm_error_message(outcome.computation))
    return data(outcome.output)


@rpc_method("eth_estimateGas")
def estimate_gas(ctx: RpcContext, params: Params) -> str:
    """geth's estimator: plain transfers are 21000, else a binary search within 1.5%."""
    request: CallRequest = params.decode(0, decode_call)
    executor = _executor(ctx, params, 1)
    header = executor.environment.header
    hi = request.gas if request.gas is not None and request.gas >= TX_GAS else header.gas_limit
    if ctx.config.gas_cap:
        hi = min(hi, ctx.config.gas_cap)
    price = request.gas_price or request.max_fee_per_gas or 0
    if price:
        vm = executor.fresh_vm()
        available = vm.state.get_balance(Address(request.sender)) - request.value
        if available < 0:
            raise ServerError("insufficient funds for transfer")
        hi = min(hi, available // price)
    if not request.data and request.to is not None:
        vm = executor.fresh_vm()
        if not vm.state.get_code(Address(request.to)) and hi >= TX_GAS:
            return quantity(TX_GAS)

    def failed(gas: int) -> tuple[bool, CallOutcome | None]:
        try:
            outcome = _run(executor, request, gas)
        except RpcError as exc:
            if "intrinsic gas too low" in exc.message:
                return True, None
            raise
        return outcome.failed, outcome

    is_failed, outcome = failed(hi)
    if is_failed:
        if outcome is not None and outcome.reverted:
            raise ExecutionReverted(revert_reason(outcome.output), outcome.output)
        if outcome is not None and type(outcome.computation.error).__name__ != "OutOfGas":
            raise ServerError(vm_error_message(outcome.computation))
        raise ServerError(f"gas required exceeds allowance ({hi})")
    assert outcome is not None
    lo = outcome.gas_used - 1
    optimistic = (outcome.peak_gas_used + CALL_STIPEND) * 64 // 63
    if optimistic < hi:
        if failed(optimistic)[0]:
            lo = optimistic
        else:
            hi = optimistic
    while lo + 1 < hi:
        if (hi - lo) / hi < ESTIMATE_ERROR_RATIO:
            break
        mid = (hi + lo) // 2
        if mid > lo * 2:
            mid = lo * 2
        if failed(mid)[0]:
            lo = mid
        else:
            hi = mid
    return quantity(hi)


_SLOT_OPS = (0x54, 0x55)  # SLOAD, SSTORE
_ADDRESS_OPS = (0x31, 0x3B, 0x3C, 0x3F, 0xFF)  # BALANCE, EXTCODESIZE/COPY/HASH, SELFDESTRUCT
_CALL_OPS = (0xF1, 0xF2, 0xF4, 0xFA)  # CALL, CALLCODE, DELEGATECALL, STATICCALL


class AccessListTracer:
    """geth's access list tracer: addresses and slots touched by opcodes, minus exclusions."""

    def __init__(self, exclude: set[bytes]) -> None:
        self.exclude = exclude
        self.entries: dict[bytes, set[int]] = {}

    def __call__(self, computation: ComputationAPI, opcode: int, fn: Any) -> Any:
        stack = computation._stack.values  # type: ignore[attr-defined]
        if opcode in _SLOT_OPS and stack:
            # geth records slots of every account, excluded or not; exclusions are for addresses.
            address = bytes(computation.msg.storage_address)
            self.entries.setdefault(address, set()).add(_as_int(stack[-1]))
        elif opcode in _ADDRESS_OPS and stack:
            self._touch(_as_int(stack[-1]))
        elif opcode in _CALL_OPS and len(stack) >= 2:
            self._touch(_as_int(stack[-2]))
        return None

    def _touch(self, value: int) -> None:
        address = (value % 2**160).to_bytes(20, "big")
        if address not in self.exclude:
            self.entries.setdefault(address, set())

    def access_list(self) -> list[tuple[bytes, list[int]]]:
        return [(address, sorted(self.entries[address])) for address in sorted(self.entries)]


def _as_int(value: int | bytes) -> int:
    return value if isinstance(value, int) else int.from_bytes(value, "big")


@rpc_method("eth_createAccessList")
def create_access_list(ctx: RpcContext, params: Params) -> Json:
    """Run the call until the access list it touches is stable; report it and the gas used."""
    request: CallRequest = params.decode(0, decode_call)
    executor = _executor(ctx, params, 1)
    vm = executor.fresh_vm()
    nonce = (
        request.nonce if request.nonce is not None else vm.state.get_nonce(Address(request.sender))
    )
    to = request.to or generate_contract_address(Address(request.sender), nonce)
    precompiles = set(getattr(vm.state.computation_class, "_precompiles", {}) or {})
    exclude = {request.sender, to, *(bytes(p) for p in precompiles)}
    previous = request.access_list or []
    gas = executor.default_gas(request)
    for _ in range(32):
        request.access_list = previous
        tracer = AccessListTracer(exclude)
        outcome = _run(executor, request, gas, tracer)
        current = tracer.access_list()
        if current == previous:
            break
        previous = current
    result: Json = {
        "accessList": format_access_list(current),
        "gasUsed": quantity(outcome.gas_used),
    }
    if outcome.failed:
        result["error"] = (
            "execution reverted" if outcome.reverted else vm_error_message(outcome.computation)
        )
    return result
