"""The contention contracts: addresses, layouts and calldata the differential tests rely on."""

from __future__ import annotations

from eth._utils.address import generate_safe_contract_address
from eth_typing import Address

from khipu.devnet import contention


def test_child_address_is_the_create2_address_of_the_factory() -> None:
    for salt in range(3):
        expected = generate_safe_contract_address(
            Address(contention.FACTORY), salt, contention.child_init_code()
        )
        assert contention.child_address(salt) == expected


def test_factory_carries_the_child_init_code_at_its_end() -> None:
    code = contention.factory_code()
    init = contention.child_init_code()
    assert code.endswith(init)
    # PUSH2 INIT_SIZE PUSH2 INIT_OFFSET: the offset the factory copies from is where init starts
    assert code[0] == 0x61 and int.from_bytes(code[1:3], "big") == len(init)
    assert code[3] == 0x61 and int.from_bytes(code[4:6], "big") == len(code) - len(init)


def test_child_init_code_returns_the_runtime() -> None:
    init = contention.child_init_code()
    runtime = contention.child_runtime()
    assert init.endswith(runtime)
    assert runtime[-1] == 0xFF  # SELFDESTRUCT


def test_calldata_layouts() -> None:
    target = bytes(range(20))
    assert contention.forward_call(target, 7) == target + (7).to_bytes(32, "big")
    assert contention.counter_call(3) == (3).to_bytes(32, "big")
    assert contention.counter_call(3, read_only=True)[32:] == (1).to_bytes(32, "big")
    factory = contention.factory_call(2, True, target)
    assert factory[:32] == (2).to_bytes(32, "big") and factory[32] == 1 and factory[33:] == target
    assert contention.precompile_call(4, b"ab")[:32] == (4).to_bytes(20, "big") + bytes(12)


def test_genesis_alloc_names_every_contract_with_its_code() -> None:
    alloc = contention.genesis_alloc()
    codes = contention.runtime_codes()
    assert len(set(codes)) == len(codes) == len(alloc)
    for address, code in codes.items():
        assert alloc["0x" + address.hex()]["code"] == "0x" + code.hex()
    assert alloc["0x" + contention.DESTRUCTIBLE.hex()]["balance"] == hex(10**18)
