"""The token and pool contracts, executed by py-evm's Prague VM against genesis state."""

from __future__ import annotations

from typing import Any

import pytest
from eth.abc import ComputationAPI, VirtualMachineAPI
from eth.vm.chain_context import ChainContext
from eth_typing import Address

from khipu.devnet import contracts
from khipu.devnet.builder import DevChainBuilder
from khipu.devnet.genesis import dev_account, dev_genesis_json

TOKEN = Address(b"\x70" * 20)
POOL = Address(b"\x71" * 20)
ALICE = dev_account(0).address
BOB = dev_account(1).address


def _alloc(code: bytes, storage: dict[int, int]) -> dict[str, Any]:
    return {
        "balance": "0x0",
        "code": "0x" + code.hex(),
        "storage": {
            "0x" + k.to_bytes(32, "big").hex(): "0x" + v.to_bytes(32, "big").hex()
            for k, v in storage.items()
        },
    }


@pytest.fixture(scope="module")
def vm() -> VirtualMachineAPI:
    alloc = {
        "0x" + TOKEN.hex(): _alloc(contracts.token_code(), contracts.token_storage({ALICE: 1000})),
        "0x" + POOL.hex(): _alloc(contracts.pool_code(), contracts.pool_storage(10**6, 4 * 10**6)),
    }
    builder = DevChainBuilder(dev_genesis_json(account_count=2, extra_alloc=alloc))
    template = builder.next_header()
    vm_class = builder.rules.vm_class_for_header(template)
    return vm_class(
        header=template,
        chaindb=builder.chain.chaindb,
        chain_context=ChainContext(builder.chain_id),
        consensus_context=builder.chain.consensus_context,
    )


def call(vm: VirtualMachineAPI, sender: bytes, to: bytes, data: bytes) -> ComputationAPI:
    code = vm.state.get_code(Address(to))
    return vm.execute_bytecode(
        Address(sender), 1, 1_000_000, Address(to), Address(sender), 0, data, code
    )


def word(value: int) -> bytes:
    return value.to_bytes(32, "big")


def test_token_transfer_moves_balance_and_logs(vm: VirtualMachineAPI) -> None:
    computation = call(vm, ALICE, TOKEN, contracts.transfer_call(BOB, 300))
    assert computation.is_success
    assert computation.output == word(1)
    assert vm.state.get_storage(TOKEN, contracts.balance_slot(ALICE)) == 700
    assert vm.state.get_storage(TOKEN, contracts.balance_slot(BOB)) == 300
    [(address, topics, data)] = computation.get_log_entries()
    assert address == TOKEN
    assert list(topics) == [
        int.from_bytes(contracts.TRANSFER_EVENT, "big"),
        int.from_bytes(ALICE, "big"),
        int.from_bytes(BOB, "big"),
    ]
    assert data == word(300)
    assert call(vm, BOB, TOKEN, contracts.balance_of_call(BOB)).output == word(300)
    total = call(vm, BOB, TOKEN, contracts.TOTAL_SUPPLY.to_bytes(4, "big"))
    assert total.output == word(1000)


def test_token_transfer_beyond_balance_reverts(vm: VirtualMachineAPI) -> None:
    before = vm.state.get_storage(TOKEN, contracts.balance_slot(BOB))
    computation = call(vm, BOB, TOKEN, contracts.transfer_call(ALICE, before + 1))
    assert computation.is_error
    assert computation.get_log_entries() == ()
    assert vm.state.get_storage(TOKEN, contracts.balance_slot(BOB)) == before


def test_token_unknown_function_reverts(vm: VirtualMachineAPI) -> None:
    assert call(vm, ALICE, TOKEN, bytes.fromhex("deadbeef")).is_error


@pytest.mark.parametrize("direction", [0, 1])
def test_swap_follows_the_constant_product(vm: VirtualMachineAPI, direction: int) -> None:
    reserves = [vm.state.get_storage(POOL, slot) for slot in contracts.RESERVE_SLOTS]
    amount_in = 12_345
    expected = contracts.swap_output(reserves[direction], reserves[1 - direction], amount_in)
    computation = call(vm, ALICE, POOL, contracts.swap_call(amount_in, direction))
    assert computation.is_success
    assert computation.output == word(expected)
    after = [vm.state.get_storage(POOL, slot) for slot in contracts.RESERVE_SLOTS]
    assert after[direction] == reserves[direction] + amount_in
    assert after[1 - direction] == reserves[1 - direction] - expected
    assert after[0] * after[1] >= reserves[0] * reserves[1]
    [(address, topics, data)] = computation.get_log_entries()
    assert address == POOL
    assert topics[0] == int.from_bytes(contracts.SWAP_EVENT, "big")
    assert topics[2] == direction
    assert data == word(amount_in) + word(expected)
    got = call(vm, ALICE, POOL, contracts.GET_RESERVES.to_bytes(4, "big")).output
    assert got == word(after[0]) + word(after[1])


def test_swap_of_nothing_reverts(vm: VirtualMachineAPI) -> None:
    reserves = [vm.state.get_storage(POOL, slot) for slot in contracts.RESERVE_SLOTS]
    assert call(vm, ALICE, POOL, contracts.swap_call(0, 1)).is_error
    assert [vm.state.get_storage(POOL, slot) for slot in contracts.RESERVE_SLOTS] == reserves


def test_deployment_returns_the_token_and_credits_the_deployer(vm: VirtualMachineAPI) -> None:
    created = Address(b"\x72" * 20)
    initcode = contracts.token_deployment(5000)
    computation = vm.execute_bytecode(
        Address(BOB), 1, 1_000_000, created, Address(BOB), 0, b"", initcode
    )
    assert computation.is_success
    assert computation.output == contracts.token_code()
    assert vm.state.get_storage(created, contracts.balance_slot(BOB)) == 5000
    assert vm.state.get_storage(created, contracts.TOTAL_SUPPLY_SLOT) == 5000
