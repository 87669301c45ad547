"""EIP-7939 CLZ, checked with the EIP's test cases run as bytecode on OsakaVM."""

from __future__ import annotations

import pytest
from eth.vm.forks.prague import PragueVM
from osaka_fixtures import run_code

from khipu.chain.forks import OsakaVM

CLZ = b"\x1e"
# MSTORE the top of the stack at 0, RETURN those 32 bytes
RETURN_TOP = bytes.fromhex("5f5260205ff3")


def push32(value: int) -> bytes:
    return b"\x7f" + value.to_bytes(32, "big")


@pytest.mark.parametrize(
    ("value", "leading_zeros"),
    [
        # EIP-7939 "Test Cases"
        (0x0, 256),
        (0x8000000000000000000000000000000000000000000000000000000000000000, 0),
        (2**256 - 1, 0),
        (0x4000000000000000000000000000000000000000000000000000000000000000, 1),
        (0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF, 1),
        (0x1, 255),
        # more: an 11-bit value, a bit just past the low half
        (0x6FF, 245),
        (1 << 128, 127),
    ],
)
def test_clz_matches_eip_7939_cases(value: int, leading_zeros: int) -> None:
    computation = run_code(OsakaVM, push32(value) + CLZ + RETURN_TOP)
    assert computation.is_success
    assert int.from_bytes(computation.output, "big") == leading_zeros


def test_clz_costs_five_gas() -> None:
    # PUSH32 (3) + CLZ + POP (2)
    computation = run_code(OsakaVM, push32(1) + CLZ + b"\x50")
    assert computation.is_success
    assert computation.get_gas_used() == 3 + 5 + 2


def test_clz_on_empty_stack_fails() -> None:
    assert not run_code(OsakaVM, CLZ).is_success


def test_clz_is_an_invalid_opcode_before_osaka() -> None:
    computation = run_code(PragueVM, push32(1) + CLZ + RETURN_TOP)
    assert not computation.is_success
