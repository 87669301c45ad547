"""EIP-7951 P256VERIFY at 0x100: published vectors, the EIP's input checks, gas, and the EVM path.

Vectors: geth's core/vm/testdata/precompiles/p256Verify.json and the EIP's
assets/eip-7951/test-vectors.json (Wycheproof ecdsa_secp256r1_sha256_p1363 cases).
"""

from __future__ import annotations

import pytest
from Crypto.PublicKey.ECC import EccPoint
from eth.vm.forks.prague import PragueVM
from osaka_fixtures import call_precompile, call_precompile_code, run_code

from khipu.chain.forks import OsakaVM
from khipu.chain.forks.osaka.p256verify import (
    P256_FIELD_PRIME,
    P256_GENERATOR_X,
    P256_GENERATOR_Y,
    P256_GROUP_ORDER,
    verify_p256_signature,
)

P256VERIFY = 0x100
VALID = (1).to_bytes(32, "big")
N = P256_GROUP_ORDER

GETH_VALID = (
    "4cee90eb86eaa050036147a12d49004b6b9c72bd725d39d4785011fe190f0b4d"
    "a73bd4903f0ce3b639bbbf6e8e80d16931ff4bcf5993d58468e8fb19086e8cac"
    "36dbcd03009df8c59286b162af3bd7fcc0450c9aa81be5d10d312af6c66b1d60"
    "4aebd3099c618202fcfe16ae7770b0c49ab5eadf74b754204a3bb6060e44eff3"
    "7618b065f9832de4ca6ca971a7a1adc826d0f7c00181a5fb2ddf79ae00b4e10e"
)
WYCHEPROOF_HASH = "bb5a52f42f9c9261ed4361f59422a1e30036e7c32b270c8807a419feca605023"
WYCHEPROOF_KEY = (
    "2927b10512bae3eddcfe467828128bad2903269919f7086069c8c4df6c732838"
    "c7787964eaac00e5921fb1498a60f4606766b3d9685001558d1a974e7341513e"
)
# Wycheproof #1: "signature malleability" (valid)
WYCHEPROOF_1 = (
    WYCHEPROOF_HASH
    + "2ba3a8be6b94d5ec80a6d9d1190a436effe50d85a1eee859b8cc6af9bd5c2e18"
    + "4cd60b855d442f5b3c7b11eb6c4e0ae7525fe710fab9aa7c77a67f79e6fadd76"
    + WYCHEPROOF_KEY
)
# Wycheproof #3: "Modified r or s, e.g. by adding or subtracting the order of the group"
WYCHEPROOF_3 = (
    WYCHEPROOF_HASH
    + "d45c5740946b2a147f59262ee6f5bc90bd01ed280528b62b3aed5fc93f06f739"
    + "b329f479a2bbd0a5c384ee1493b1f5186a87139cac5df4087c134b49156847db"
    + WYCHEPROOF_KEY
)
# Wycheproof #113: "k*G has a large x-coordinate" (valid: R'.x is over n, r is R'.x - n)
WYCHEPROOF_113 = (
    WYCHEPROOF_HASH
    + "000000000000000000000000000000004319055358e8617b0c46353d039cdaab"
    + "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc63254e"
    + "0ad99500288d466940031d72a9f5445a4d43784640855bf0a69874d2de5fe103"
    + "c5011e6ef2c42dcd50d5d3d29f99ae6eba2c80c9244f4c5422f0979ff0c3ba5e"
)


def special_r_s(r: int, s: int) -> str:
    return WYCHEPROOF_HASH + f"{r:064x}{s:064x}" + WYCHEPROOF_KEY


@pytest.mark.parametrize(
    ("name", "input_hex", "expected"),
    [
        ("geth CallP256Verify", GETH_VALID, VALID),
        ("wycheproof #1", WYCHEPROOF_1, VALID),
        ("wycheproof #113", WYCHEPROOF_113, VALID),
        ("wycheproof #3", WYCHEPROOF_3, b""),
        # Wycheproof "special case values for r and s" (#9, #10, #11, #16, #18, #25)
        ("r=0 s=0", special_r_s(0, 0), b""),
        ("r=0 s=1", special_r_s(0, 1), b""),
        ("r=0 s=n", special_r_s(0, N), b""),
        ("r=1 s=0", special_r_s(1, 0), b""),
        ("r=1 s=n", special_r_s(1, N), b""),
        ("r=n s=n", special_r_s(N, N), b""),
    ],
)
def test_published_vectors(name: str, input_hex: str, expected: bytes) -> None:
    computation = call_precompile(OsakaVM, P256VERIFY, bytes.fromhex(input_hex))
    assert computation.is_success, name
    assert computation.output == expected, name
    assert computation.get_gas_used() == 6900


# Signatures made here, to reach the checks the published vectors do not single out.
PRIVATE_KEY = 0x5EED
NONCE = 0xC0FFEE
GENERATOR = EccPoint(P256_GENERATOR_X, P256_GENERATOR_Y, "p256")
PUBLIC_KEY = GENERATOR * PRIVATE_KEY


def sign(message_hash: int) -> tuple[int, int]:
    r = int((GENERATOR * NONCE).x) % N
    s = pow(NONCE, -1, N) * (message_hash + r * PRIVATE_KEY) % N
    return r, s


def test_a_signature_made_here_verifies_and_a_changed_hash_does_not() -> None:
    r, s = sign(12345)
    x, y = int(PUBLIC_KEY.x), int(PUBLIC_KEY.y)
    assert verify_p256_signature(12345, r, s, x, y)
    assert not verify_p256_signature(12346, r, s, x, y)
    assert not verify_p256_signature(12345, r, N - s + 1, x, y)


def test_a_hash_at_or_over_the_group_order_is_reduced_modulo_n() -> None:
    r, s = sign(7)
    x, y = int(PUBLIC_KEY.x), int(PUBLIC_KEY.y)
    assert verify_p256_signature(7 + N, r, s, x, y)


def test_public_key_checks() -> None:
    r, s = sign(99)
    x, y = int(PUBLIC_KEY.x), int(PUBLIC_KEY.y)
    assert not verify_p256_signature(99, r, s, x, (y + 1) % P256_FIELD_PRIME)  # off the curve
    assert not verify_p256_signature(99, r, s, 0, 0)  # the point at infinity
    assert not verify_p256_signature(99, r, s, x + P256_FIELD_PRIME, y)  # x not reduced
    assert not verify_p256_signature(99, r, s, x, y + P256_FIELD_PRIME)  # y not reduced


def test_a_computed_point_at_infinity_is_refused() -> None:
    message_hash, r, s = 5, 11, 13
    # Q = -(h / r) G makes h/s G + r/s Q the point at infinity
    public_key = GENERATOR * ((-message_hash * pow(r, -1, N)) % N)
    assert not verify_p256_signature(message_hash, r, s, int(public_key.x), int(public_key.y))


@pytest.mark.parametrize("length", [0, 159, 161, 192])
def test_inputs_not_160_bytes_long_give_no_output_but_cost_the_gas(length: int) -> None:
    data = bytes.fromhex(GETH_VALID).ljust(length, b"\x00")[:length]
    computation = call_precompile(OsakaVM, P256VERIFY, data)
    assert computation.is_success
    assert computation.output == b""
    assert computation.get_gas_used() == 6900


def test_too_little_gas_fails_the_call() -> None:
    computation = call_precompile(OsakaVM, P256VERIFY, bytes.fromhex(GETH_VALID), gas=6899)
    assert not computation.is_success


def test_contract_calls_reach_the_precompile_from_osaka_on() -> None:
    data = bytes.fromhex(GETH_VALID)
    code = call_precompile_code(P256VERIFY, len(data), 32)
    osaka = run_code(OsakaVM, code, data=data)
    assert osaka.is_success
    assert osaka.output == VALID
    # in Prague 0x100 is an empty account: the call succeeds and returns nothing
    prague = run_code(PragueVM, code, data=data)
    assert prague.is_success
    assert prague.output == b""
