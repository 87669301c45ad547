"""The MODEXP precompile (0x05) as Osaka prices and bounds it.

EIP-7823 bounds each of the base, exponent and modulus lengths to 1024 bytes: a longer one makes
the call fail and burn its gas. EIP-7883 reprices it over EIP-2565: a minimum of 500 gas, no
division by 3, a multiplication complexity of at least 16 that doubles past 32 bytes, and 16
iterations (instead of 8) per exponent byte past the first 32.
"""

from __future__ import annotations

from eth.abc import ComputationAPI

from ..errors import ModexpInputTooLong
from .constants import MODEXP_MAX_INPUT_LENGTH, MODEXP_MIN_GAS


def _read(data: bytes, start: int, size: int) -> bytes:
    """`size` bytes of call data from `start`, zero-filled past its end, as the EVM reads it."""
    return data[start : start + size].ljust(size, b"\x00")


def multiplication_complexity(base_length: int, modulus_length: int) -> int:
    """EIP-7883: 16 up to 32 bytes, then twice the square of the 8-byte words of the longer."""
    max_length = max(base_length, modulus_length)
    if max_length <= 32:
        return 16
    words = (max_length + 7) // 8
    return 2 * words**2


def iteration_count(exponent_length: int, exponent_head: int) -> int:
    """EIP-7883: the exponent's bit length less one, plus 16 per exponent byte past 32; at least 1.

    `exponent_head` is the exponent's first min(32, length) bytes as an integer.
    """
    head_bits = max(exponent_head.bit_length() - 1, 0)
    extra_bytes = max(exponent_length - 32, 0)
    return max(16 * extra_bytes + head_bits, 1)


def modexp_gas_cost(
    base_length: int, exponent_length: int, modulus_length: int, exponent_head: int
) -> int:
    """The Osaka gas cost of a MODEXP call with these lengths and exponent head."""
    cost = multiplication_complexity(base_length, modulus_length) * iteration_count(
        exponent_length, exponent_head
    )
    return max(MODEXP_MIN_GAS, cost)


def modexp_osaka(computation: ComputationAPI) -> ComputationAPI:
    """Compute base**exponent % modulus, the result as long as the modulus (zero if it is zero).

    Raises ModexpInputTooLong (a VMError: the call fails and burns its gas) when a length is over
    1024 bytes; py-evm's OutOfGas when the gas does not cover the cost.
    """
    data = computation.msg.data_as_bytes
    base_length = int.from_bytes(_read(data, 0, 32), "big")
    exponent_length = int.from_bytes(_read(data, 32, 32), "big")
    modulus_length = int.from_bytes(_read(data, 64, 32), "big")
    for field, length in (
        ("base", base_length),
        ("exponent", exponent_length),
        ("modulus", modulus_length),
    ):
        if length > MODEXP_MAX_INPUT_LENGTH:
            raise ModexpInputTooLong(field, length, MODEXP_MAX_INPUT_LENGTH)

    exponent_start = 96 + base_length
    exponent_head = int.from_bytes(_read(data, exponent_start, min(32, exponent_length)), "big")
    computation.consume_gas(
        modexp_gas_cost(base_length, exponent_length, modulus_length, exponent_head),
        reason="MODEXP precompile",
    )

    if base_length == 0 and modulus_length == 0:
        computation.output = b""
        return computation
    base = int.from_bytes(_read(data, 96, base_length), "big")
    exponent = int.from_bytes(_read(data, exponent_start, exponent_length), "big")
    modulus_start = exponent_start + exponent_length
    modulus = int.from_bytes(_read(data, modulus_start, modulus_length), "big")
    if modulus == 0:
        computation.output = b"\x00" * modulus_length
    else:
        computation.output = pow(base, exponent, modulus).to_bytes(modulus_length, "big")
    return computation
