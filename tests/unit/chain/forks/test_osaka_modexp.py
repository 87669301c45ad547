"""EIP-7823 (MODEXP input bounds) and EIP-7883 (MODEXP repricing).

Gas and results are checked against geth's EIP-7883 vectors (core/vm/testdata/precompiles/
modexp_eip7883.json, the nagydani cases), the calls run through the precompile on OsakaVM.
"""

from __future__ import annotations

import pytest
from eth.vm.forks.prague import PragueVM
from osaka_fixtures import call_precompile, call_precompile_code, run_code

from khipu.chain.forks import OsakaVM
from khipu.chain.forks.osaka.modexp import (
    iteration_count,
    modexp_gas_cost,
    multiplication_complexity,
)

MODEXP = 0x05
NAGYDANI_1_BASE = bytes.fromhex(
    "e09ad9675465c53a109fac66a445c91b292d2bb2c5268addb30cd82f80fcb003"
    "3ff97c80a5fc6f39193ae969c6ede6710a6b7ac27078a06d90ef1c72e5c85fb5"
)
NAGYDANI_1_MODULUS = bytes.fromhex(
    "fc9e1f6beb81516545975218075ec2af118cd8798df6e08a147c60fd6095ac2b"
    "b02c2908cf4dd7c81f11c289e4bce98f3553768f392a80ce22bf5c4f4a248c6b"
)


def modexp_input(base: bytes, exponent: bytes, modulus: bytes) -> bytes:
    lengths = b"".join(len(part).to_bytes(32, "big") for part in (base, exponent, modulus))
    return lengths + base + exponent + modulus


@pytest.mark.parametrize(
    ("name", "exponent", "expected_output", "expected_gas"),
    [
        (
            "nagydani-1-square",
            b"\x02",
            "60008f1614cc01dcfb6bfb09c625cf90b47d4468db81b5f8b7a39d42f332eab9"
            "b2da8f2d95311648a8f243f4bb13cfb3d8f7f2a3c014122ebb3ed41b02783adc",
            500,
        ),
        (
            "nagydani-1-qube",
            b"\x03",
            "4834a46ba565db27903b1c720c9d593e84e4cbd6ad2e64b31885d944f68cd801"
            "f92225a8961c952ddf2797fa4701b330c85c4b363798100b921a1a22a46a7fec",
            500,
        ),
        (
            "nagydani-1-pow0x10001",
            b"\x01\x00\x01",
            "c36d804180c35d4426b57b50c5bfcca5c01856d104564cd513b461d3c8b84091"
            "28a5573e416d0ebe38f5f736766d9dc27143e4da981dfa4d67f7dc474cbee6d2",
            2048,
        ),
    ],
)
def test_geth_eip7883_vectors(
    name: str, exponent: bytes, expected_output: str, expected_gas: int
) -> None:
    data = modexp_input(NAGYDANI_1_BASE, exponent, NAGYDANI_1_MODULUS)
    computation = run_code(
        OsakaVM, call_precompile_code(MODEXP, len(data), 64), data=data, gas=1_000_000
    )
    assert computation.is_success, name
    assert computation.output.hex() == expected_output
    direct = call_precompile(OsakaVM, MODEXP, data)
    assert direct.is_success
    assert direct.get_gas_used() == expected_gas


@pytest.mark.parametrize(
    ("base_length", "exponent", "modulus_length", "expected_gas"),
    [
        # the rest of geth's nagydani table: only lengths and the exponent set the price
        (128, b"\x02", 128, 512),
        (128, b"\x01\x00\x01", 128, 8192),
        (256, b"\x03", 256, 2048),
        (256, b"\x01\x00\x01", 256, 32768),
        (512, b"\x02", 512, 8192),
        (512, b"\x01\x00\x01", 512, 131072),
        (1024, b"\x03", 1024, 32768),
        (1024, b"\x01\x00\x01", 1024, 524288),
    ],
)
def test_gas_of_the_larger_nagydani_cases(
    base_length: int, exponent: bytes, modulus_length: int, expected_gas: int
) -> None:
    head = int.from_bytes(exponent, "big")
    assert modexp_gas_cost(base_length, len(exponent), modulus_length, head) == expected_gas


def test_pricing_formula_pieces_by_hand() -> None:
    # at most 32 bytes: a flat 16; past 32: 2 * words^2 (33 bytes = 5 words)
    assert multiplication_complexity(1, 32) == 16
    assert multiplication_complexity(33, 0) == 2 * 5**2
    # exponent of 32 bytes or less: bit length - 1, at least 1
    assert iteration_count(32, 0) == 1
    assert iteration_count(1, 1) == 1
    assert iteration_count(32, 2**255) == 255
    # longer exponent: 16 per byte past 32 (EIP-2565 had 8), plus the head's bits - 1
    assert iteration_count(40, 0) == 16 * 8
    assert iteration_count(40, 2**10) == 16 * 8 + 10
    # the floor went from 200 to 500
    assert modexp_gas_cost(1, 1, 1, 3) == 500


def test_zero_base_and_exponent_give_one_modulo_the_modulus() -> None:
    # 0 ** 0 % 7 == 1 (py-evm's pre-Osaka MODEXP answers 0 for an empty base)
    data = modexp_input(b"", b"", b"\x07")
    computation = run_code(OsakaVM, call_precompile_code(MODEXP, len(data), 1), data=data)
    assert computation.is_success
    assert computation.output == b"\x01"


def test_zero_modulus_gives_zeros_of_its_length() -> None:
    data = modexp_input(b"\x05", b"\x02", b"\x00\x00")
    computation = run_code(OsakaVM, call_precompile_code(MODEXP, len(data), 2), data=data)
    assert computation.output == b"\x00\x00"


@pytest.mark.parametrize("field", [0, 1, 2])
def test_lengths_over_1024_bytes_fail_the_call(field: int) -> None:
    lengths = [1, 1, 1]
    lengths[field] = 1025
    data = b"".join(length.to_bytes(32, "big") for length in lengths) + b"\x02" * 1027
    computation = run_code(OsakaVM, call_precompile_code(MODEXP, len(data), 32), data=data)
    assert not computation.is_success  # the STATICCALL returned 0, the code reverted


def test_lengths_of_exactly_1024_bytes_are_allowed() -> None:
    data = modexp_input(b"\x02" * 1024, b"\x01", b"\x03" * 1024)
    computation = run_code(
        OsakaVM, call_precompile_code(MODEXP, len(data), 1024), data=data, gas=2_000_000
    )
    assert computation.is_success
    assert len(computation.output) == 1024


def test_the_bound_is_new_in_osaka() -> None:
    # Prague accepts a 1025-byte modulus (and prices it by EIP-2565)
    data = modexp_input(b"\x02", b"\x01", b"\x00" * 1024 + b"\x05")
    code = call_precompile_code(MODEXP, len(data), 1025)
    assert run_code(PragueVM, code, data=data, gas=5_000_000).is_success
    assert not run_code(OsakaVM, code, data=data, gas=5_000_000).is_success
