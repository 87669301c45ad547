"""Running a call against the state at a block, as geth's eth_call does: no signature, no nonce
check, gas price 0 unless given, state and block overrides applied to a throwaway state.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from eth.abc import BlockHeaderAPI, ComputationAPI, StateAPI, VirtualMachineAPI
from eth.constants import CREATE_CONTRACT_ADDRESS
from eth.exceptions import Revert
from eth.vm.spoof import SpoofTransaction
from eth_typing import Address

from khipu.rpc.chain_view import ChainView
from khipu.rpc.errors import InvalidParams, ServerError
from khipu.rpc.evm_hooks import OpcodeHook, chain_hooks, deadline_hook, install_hook
from khipu.rpc.formatting import header_field
from khipu.rpc.params import HexError, decode_address, decode_data, decode_hash, decode_quantity

_DUMMY_SIGNATURE = {"r": 1, "s": 1}


@dataclass
class CallRequest:
    """geth's TransactionArgs, decoded."""

    sender: bytes = b"\x00" * 20
    to: bytes | None = None
    gas: int | None = None
    gas_price: int | None = None
    max_fee_per_gas: int | None = None
    max_priority_fee_per_gas: int | None = None
    value: int = 0
    data: bytes = b""
    nonce: int | None = None
    access_list: list[tuple[bytes, list[int]]] | None = None

    @property
    def uses_fee_market(self) -> bool:
        return self.max_fee_per_gas is not None or self.max_priority_fee_per_gas is not None


def decode_call(value: Any) -> CallRequest:
    """A call object (from, to, gas, gasPrice, maxFeePerGas, value, input/data, ...).

    Raises HexError or InvalidParams for malformed fields.
    """
    if not isinstance(value, dict):
        raise HexError(
            "json: cannot unmarshal non-object into Go value of type ethapi.TransactionArgs"
        )
    request = CallRequest()
    if value.get("from") is not None:
        request.sender = decode_address(value["from"])
    if value.get("to") is not None:
        request.to = decode_address(value["to"])
    for json_name, name in (
        ("gas", "gas"),
        ("gasPrice", "gas_price"),
        ("maxFeePerGas", "max_fee_per_gas"),
        ("maxPriorityFeePerGas", "max_priority_fee_per_gas"),
        ("value", "value"),
        ("nonce", "nonce"),
    ):
        if value.get(json_name) is not None:
            bits = 64 if json_name in ("gas", "nonce") else 256
            setattr(request, name, decode_quantity(value[json_name], bits))
    given_input = value.get("input")
    given_data = value.get("data")
    if given_input is not None and given_data is not None and given_input != given_data:
        raise InvalidParams(
            'both "data" and "input" are set and not equal. Please use "input" to pass '
            "transaction call data"
        )
    payload = given_input if given_input is not None else given_data
    if payload is not None:
        request.data = decode_data(payload)
    if request.gas_price is not None and request.uses_fee_market:
        raise InvalidParams("both gasPrice and (maxFeePerGas or maxPriorityFeePerGas) specified")
    if value.get("accessList") is not None:
        request.access_list = [
            (
                decode_address(entry["address"]),
                [int.from_bytes(decode_hash(k), "big") for k in entry.get("storageKeys") or []],
            )
            for entry in value["accessList"]
        ]
    return request


@dataclass
class CallOutcome:
    """What a call did: its computation, the gas it used (after refunds) and before refunds."""

    computation: ComputationAPI
    gas_used: int
    peak_gas_used: int
    gas_limit: int

    @property
    def output(self) -> bytes:
        return bytes(self.computation.output)

    @property
    def reverted(self) -> bool:
        return self.computation.is_error and isinstance(self.computation.error, Revert)

    @property
    def failed(self) -> bool:
        return self.computation.is_error


@dataclass
class CallEnvironment:
    """The block a call runs in (after block overrides) and its state overrides."""

    header: BlockHeaderAPI
    state_overrides: dict[bytes, dict[str, Any]] = field(default_factory=dict)


_BLOCK_OVERRIDE_FIELDS = {
    "number": "block_number",
    "time": "timestamp",
    "gasLimit": "gas_limit",
    "feeRecipient": "coinbase",
    "prevRandao": "mix_hash",
    "baseFeePerGas": "base_fee_per_gas",
    "difficulty": "difficulty",
}


def apply_block_overrides(header: BlockHeaderAPI, overrides: Any) -> BlockHeaderAPI:
    """The header with geth's BlockOverrides applied (number, time, gasLimit, ...)."""
    if overrides is None:
        return header
    if not isinstance(overrides, dict):
        raise InvalidParams("block overrides must be an object")
    changes: dict[str, Any] = {}
    for json_name, value in overrides.items():
        name = _BLOCK_OVERRIDE_FIELDS.get(json_name)
        if name is None:
            raise InvalidParams(f"block override {json_name!r} is not supported")
        if json_name == "feeRecipient":
            changes[name] = decode_address(value)
        elif json_name == "prevRandao":
            changes[name] = decode_hash(value)
        else:
            changes[name] = decode_quantity(value, 256 if json_name == "baseFeePerGas" else 64)
    return header.copy(**changes)


def decode_state_overrides(value: Any) -> dict[bytes, dict[str, Any]]:
    """geth's StateOverride: per address balance, nonce, code, state or stateDiff."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise HexError(
            "json: cannot unmarshal non-object into Go value of type ethapi.StateOverride"
        )
    overrides: dict[bytes, dict[str, Any]] = {}
    for address_text, account in value.items():
        address = decode_address(address_text)
        if not isinstance(account, dict):
            raise HexError(f"override of {address_text} must be an object")
        decoded: dict[str, Any] = {}
        if account.get("state") is not None and account.get("stateDiff") is not None:
            raise InvalidParams(f"account {address_text} has both 'state' and 'stateDiff'")
        if account.get("movePrecompileToAddress") is not None:
            decoded["move_to"] = decode_address(account["movePrecompileToAddress"])
        if account.get("balance") is not None:
            decoded["balance"] = decode_quantity(account["balance"])
        if account.get("nonce") is not None:
            decoded["nonce"] = decode_quantity(account["nonce"], 64)
        if account.get("code") is not None:
            decoded["code"] = decode_data(account["code"])
        for key in ("state", "stateDiff"):
            if account.get(key) is not None:
                decoded[key] = {
                    int.from_bytes(decode_hash(k), "big"): int.from_bytes(decode_hash(v), "big")
                    for k, v in account[key].items()
                }
        overrides[address] = decoded
    return overrides


def apply_state_overrides(state: StateAPI, overrides: dict[bytes, dict[str, Any]]) -> None:
    """Apply geth's StateOverride to `state`, precompile moves included.

    Overriding a precompile's address removes the precompile there (so its code can be
    replaced); `movePrecompileToAddress` puts it at another address. Raises ServerError with
    geth's messages for a move of a non-precompile or onto an overridden address.
    """
    precompiles = dict(state.computation_class.get_precompiles())
    moved_to: set[bytes] = set()
    changed = False
    for raw_address, account in overrides.items():
        if raw_address in moved_to:
            raise ServerError(
                f"account 0x{raw_address.hex()} has already been overridden by a precompile"
            )
        precompile = precompiles.get(Address(raw_address))
        if "move_to" in account:
            if precompile is None:
                raise ServerError(f"account 0x{raw_address.hex()} is not a precompile")
            if account["move_to"] in overrides:
                raise ServerError(f"account 0x{account['move_to'].hex()} is already overridden")
            precompiles[Address(account["move_to"])] = precompile
            moved_to.add(account["move_to"])
            changed = True
        if precompile is not None:
            del precompiles[Address(raw_address)]
            changed = True
    if changed:
        base = state.computation_class
        original = base.get_precompiles()
        # Execution follows the moved set; warm addresses (EIP-2929) stay the fork's own
        # precompiles, as geth's access list does.
        state.computation_class = type(  # type: ignore[misc]
            f"Overridden{base.__name__}",
            (base,),
            {"_precompiles": precompiles, "get_precompiles": classmethod(lambda cls: original)},
        )
    for raw_address, account in overrides.items():
        address = Address(raw_address)
        if "balance" in account:
            state.set_balance(address, account["balance"])
        if "nonce" in account:
            state.set_nonce(address, account["nonce"])
        if "code" in account:
            state.set_code(address, account["code"])
        if "state" in account:
            state.delete_storage(address)
        for slot, value in {**account.get("state", {}), **account.get("stateDiff", {})}.items():
            state.set_storage(address, slot, value)


class CallExecutor:
    """Runs calls on the post-state of a block; each run gets a fresh state."""

    def __init__(
        self,
        view: ChainView,
        environment: CallEnvironment,
        gas_cap: int,
        timeout: float,
        cancelled: threading.Event | None = None,
    ) -> None:
        self.view = view
        self.environment = environment
        self.gas_cap = gas_cap
        self.timeout = timeout
        self.cancelled = cancelled

    def fresh_vm(self) -> VirtualMachineAPI:
        vm = self.view.vm_at(self.environment.header)
        apply_state_overrides(vm.state, self.environment.state_overrides)
        return vm

    def default_gas(self, request: CallRequest) -> int:
        gas = self.gas_cap if request.gas is None else request.gas
        return min(gas, self.gas_cap) if self.gas_cap else gas

    def run(
        self, request: CallRequest, gas: int, extra_hook: OpcodeHook | None = None
    ) -> CallOutcome:
        """Execute `request` with `gas`. Raises ServerError for what geth refuses before running
        (intrinsic gas too low, insufficient funds) and ExecutionTimeout past the deadline."""
        vm = self.fresh_vm()
        state = vm.state
        hook = deadline_hook(self.timeout, self.cancelled)
        install_hook(state, hook if extra_hook is None else chain_hooks(hook, extra_hook))
        tx = self._transaction(vm, request, gas)
        if gas < tx.intrinsic_gas:
            raise ServerError(f"intrinsic gas too low: have {gas}, want {tx.intrinsic_gas}")
        price = state.get_gas_price(tx)
        balance = state.get_balance(Address(request.sender))
        cost = price * gas + request.value
        if cost > balance:
            raise ServerError(
                "insufficient funds for gas * price + value: "
                f"address 0x{request.sender.hex()} have {balance} want {cost}"
            )
        executor: Any = state.get_transaction_executor()
        message = executor.build_evm_message(tx)
        computation = executor.build_computation(message, tx)
        peak = gas - computation.get_gas_remaining()
        refund = executor.calculate_gas_refund(computation, peak)
        floor_extra = (
            executor.calc_data_floor_gas(tx, peak, refund)
            if hasattr(executor, "calc_data_floor_gas")
            else 0
        )
        return CallOutcome(computation, peak - refund + floor_extra, peak + floor_extra, gas)

    def _transaction(self, vm: VirtualMachineAPI, request: CallRequest, gas: int) -> Any:
        builder: Any = vm.get_transaction_builder()
        state = vm.state
        nonce = (
            request.nonce if request.nonce is not None else state.get_nonce(Address(request.sender))
        )
        to = Address(request.to) if request.to is not None else CREATE_CONTRACT_ADDRESS
        has_base_fee = header_field(self.environment.header, "base_fee_per_gas") is not None
        access_list = [(Address(a), tuple(s)) for a, s in request.access_list or []]
        chain_id = self.view.chain_id
        if has_base_fee and request.gas_price is None:
            max_fee = request.max_fee_per_gas or 0
            tip = request.max_priority_fee_per_gas
            if tip is None:
                tip = 0 if max_fee == 0 else max_fee
            tx = builder.new_dynamic_fee_transaction(
                chain_id,
                nonce,
                min(tip, max_fee) if max_fee else tip,
                max_fee,
                gas,
                to,
                request.value,
                request.data,
                access_list,
                y_parity=0,
                **_DUMMY_SIGNATURE,
            )
        elif request.access_list is not None and hasattr(builder, "new_access_list_transaction"):
            tx = builder.new_access_list_transaction(
                chain_id,
                nonce,
                request.gas_price or 0,
                gas,
                to,
                request.value,
                request.data,
                access_list,
                y_parity=0,
                **_DUMMY_SIGNATURE,
            )
        else:
            tx = builder.new_transaction(
                nonce,
                request.gas_price or 0,
                gas,
                to,
                request.value,
                request.data,
                v=27,
                **_DUMMY_SIGNATURE,
            )
        # py-evm's builders return London-typed objects for later forks; re-decode as this fork's.
        tx = builder.decode(tx.encode())
        return SpoofTransaction(tx, sender=Address(request.sender))
