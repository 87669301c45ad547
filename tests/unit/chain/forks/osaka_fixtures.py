"""Helpers for the fork tests: an in-memory chain whose genesis runs a given VM, a code runner,
and the rpc-compat test data.

Imported by plain name (pytest puts this folder on sys.path; the test folders have no
__init__.py).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from eth.abc import ComputationAPI, VirtualMachineAPI
from eth.chains.base import Chain
from eth.constants import ZERO_ADDRESS
from eth.db.atomic import AtomicDB
from eth.vm.base import VM
from eth.vm.message import Message

try:
    from tests.conftest import require_testdata
except ModuleNotFoundError:  # pytest run without the checkout root on sys.path
    from conftest import require_testdata  # type: ignore[no-redef]

CONTRACT_ADDRESS = b"\x11" * 20
CHAIN_ID = 1


def vm_at_genesis(
    vm_class: type[VM],
    base_fee_per_gas: int = 10**9,
    balances: dict[bytes, int] | None = None,
    **genesis_fields: Any,
) -> VirtualMachineAPI:
    """The VM of block 1 on a fresh chain whose genesis already runs `vm_class`.

    `balances` funds accounts at genesis; `genesis_fields` set more genesis header fields.
    """
    chain_class = Chain.configure(vm_configuration=((0, vm_class),), chain_id=CHAIN_ID)
    genesis = {
        "difficulty": 0,
        "gas_limit": 30_000_000,
        "timestamp": 0,
        "base_fee_per_gas": base_fee_per_gas,
        "nonce": b"\x00" * 8,
        **genesis_fields,
    }
    state = {
        address: {"balance": balance, "nonce": 0, "code": b"", "storage": {}}
        for address, balance in (balances or {}).items()
    }
    chain = chain_class.from_genesis(AtomicDB(), genesis, state)
    return chain.get_vm()


@cache
def _shared_vm(vm_class: type[VM]) -> VirtualMachineAPI:
    return vm_at_genesis(vm_class)


def run_code(
    vm_class: type[VM], code: bytes, data: bytes = b"", gas: int = 1_000_000
) -> ComputationAPI:
    """Run `code` as a message call to CONTRACT_ADDRESS on `vm_class`, and return its result."""
    return _shared_vm(vm_class).execute_bytecode(
        origin=ZERO_ADDRESS,
        gas_price=0,
        gas=gas,
        to=CONTRACT_ADDRESS,
        sender=ZERO_ADDRESS,
        value=0,
        data=data,
        code=code,
    )


def call_precompile(
    vm_class: type[VM], address: int, data: bytes, gas: int = 10_000_000
) -> ComputationAPI:
    """Apply the precompile at `address` to `data` as a message on `vm_class`."""
    vm_state = _shared_vm(vm_class).state
    precompile_address = address.to_bytes(20, "big")
    message = Message(
        gas=gas,
        to=precompile_address,
        sender=ZERO_ADDRESS,
        value=0,
        data=data,
        code=b"",
        code_address=precompile_address,
    )
    context = vm_state.get_transaction_context_class()(gas_price=0, origin=ZERO_ADDRESS)
    return vm_state.computation_class.apply_computation(vm_state, message, context)


def call_precompile_code(address: int, input_size: int, output_size: int) -> bytes:
    """Bytecode that copies its call data to memory, STATICCALLs `address` with all its gas and
    returns the output, or reverts with nothing when the call failed."""
    call = (
        bytes.fromhex("365f5f37")  # CALLDATACOPY(0, 0, CALLDATASIZE)
        + b"\x61"
        + output_size.to_bytes(2, "big")  # retSize
        + b"\x5f"  # retOffset 0
        + b"\x61"
        + input_size.to_bytes(2, "big")  # argsSize
        + b"\x5f"  # argsOffset 0
        + b"\x61"
        + address.to_bytes(2, "big")
        + b"\x5a"  # GAS
        + b"\xfa"  # STATICCALL
    )
    success = len(call) + 3 + 3  # past PUSH1 dest JUMPI and the REVERT(0, 0)
    return (
        call
        + b"\x60"
        + bytes([success])
        + b"\x57"  # JUMPI to the success path when the call succeeded
        + bytes.fromhex("5f5ffd")  # REVERT(0, 0)
        + b"\x5b"  # JUMPDEST
        + bytes.fromhex("3d5f5f3e")  # RETURNDATACOPY(0, 0, RETURNDATASIZE)
        + bytes.fromhex("3d5ff3")  # RETURN(0, RETURNDATASIZE)
    )


def eip4844_fake_exponential(factor: int, numerator: int, denominator: int) -> int:
    """The EIP-4844 reference helper, written out again here to check ours against."""
    i = 1
    output = 0
    numerator_accumulator = factor * denominator
    while numerator_accumulator > 0:
        output += numerator_accumulator
        numerator_accumulator = (numerator_accumulator * numerator) // (denominator * i)
        i += 1
    return output // denominator


def rpc_compat_path(name: str) -> Path:
    """A file of the rpc-compat suite (chain to Osaka/BPO2), or skip the test."""
    return require_testdata("rpc-compat", name)
