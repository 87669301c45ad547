"""The P256VERIFY precompile (0x100, EIP-7951): ECDSA verification over secp256r1 (P-256).

Input: 160 bytes, the message hash h, the signature r and s, the public key x and y, each 32
bytes big-endian. Output: 32 bytes holding 1 when the signature verifies, nothing otherwise; the
call itself never fails, and costs 6900 gas whatever the input.

The point arithmetic is pycryptodome's (C code, already a dependency); the checks around it are
written out here as EIP-7951 lists them, as a library's own ECDSA verify may differ on edge
cases (a hash at or over the group order, r' reduced modulo n).
"""

from __future__ import annotations

from Crypto.PublicKey.ECC import EccPoint
from eth.abc import ComputationAPI

from .constants import P256VERIFY_GAS

P256_FIELD_PRIME = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF
P256_GROUP_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
P256_A = P256_FIELD_PRIME - 3
P256_B = 0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B
P256_GENERATOR_X = 0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296
P256_GENERATOR_Y = 0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5

P256VERIFY_INPUT_LENGTH = 160
VALID_SIGNATURE_OUTPUT = (1).to_bytes(32, "big")


def is_on_p256_curve(x: int, y: int) -> bool:
    """True when (x, y) satisfies y^2 = x^3 + ax + b over the P-256 field."""
    return (y * y - (x * x * x + P256_A * x + P256_B)) % P256_FIELD_PRIME == 0


def verify_p256_signature(message_hash: int, r: int, s: int, x: int, y: int) -> bool:
    """ECDSA verification of (r, s) over `message_hash` by the public key (x, y), per EIP-7951.

    Returns False, never raises, for anything that is not a valid signature: r or s outside
    (0, n), a coordinate outside [0, p), the point at infinity or a point off the curve, a
    computed R' at infinity, or R'.x mod n different from r.
    """
    n = P256_GROUP_ORDER
    if not (0 < r < n and 0 < s < n):
        return False
    if not (0 <= x < P256_FIELD_PRIME and 0 <= y < P256_FIELD_PRIME):
        return False
    # (0, 0) is how pycryptodome spells the point at infinity: it must be refused here
    if (x, y) == (0, 0) or not is_on_p256_curve(x, y):
        return False

    s_inverse = pow(s, -1, n)
    generator = EccPoint(P256_GENERATOR_X, P256_GENERATOR_Y, "p256")
    public_key = EccPoint(x, y, "p256")
    # The hash is used whole, reduced modulo n (a 32-byte hash is never truncated on P-256).
    u1 = message_hash * s_inverse % n
    u2 = r * s_inverse % n
    recovered = generator * u1 + public_key * u2
    if recovered.is_point_at_infinity():
        return False
    return int(recovered.x) % n == r


def p256verify(computation: ComputationAPI) -> ComputationAPI:
    """Charge 6900 gas, then output 1 (as 32 bytes) for a valid signature and nothing otherwise."""
    computation.consume_gas(P256VERIFY_GAS, reason="P256VERIFY precompile")
    data = computation.msg.data_as_bytes
    if len(data) != P256VERIFY_INPUT_LENGTH:
        computation.output = b""
        return computation
    message_hash, r, s, x, y = (
        int.from_bytes(data[offset : offset + 32], "big") for offset in range(0, 160, 32)
    )
    valid = verify_p256_signature(message_hash, r, s, x, y)
    computation.output = VALID_SIGNATURE_OUTPUT if valid else b""
    return computation
