"""ECIES as RLPx uses it (rlpx.md, "ECIES Encryption"): secp256k1 ECDH, NIST concat KDF with
SHA-256, AES-128-CTR and an HMAC-SHA256 tag that also covers the caller's shared data."""

from __future__ import annotations

import hashlib
import hmac
import os

from coincurve import PrivateKey
from Crypto.Cipher import AES
from Crypto.Util import Counter

from khipu.p2p.errors import DecryptionError, P2PError
from khipu.p2p.keys import ecdh_secret, public_key_bytes

KEY_LENGTH = 16  # AES-128 for the cipher; the MAC key is SHA-256 of another 16 bytes
IV_LENGTH = 16
TAG_LENGTH = 32
PUBLIC_POINT_LENGTH = 65  # 0x04 || x || y
OVERHEAD = PUBLIC_POINT_LENGTH + IV_LENGTH + TAG_LENGTH  # 113 bytes added to every message


def concat_kdf(secret: bytes, length: int) -> bytes:
    """NIST SP 800-56 concatenation KDF with SHA-256 and empty other-info."""
    output = b""
    counter = 1
    while len(output) < length:
        output += hashlib.sha256(counter.to_bytes(4, "big") + secret).digest()
        counter += 1
    return output[:length]


def aes_ctr(key: bytes, iv: bytes, data: bytes) -> bytes:
    """AES-CTR of `data` with a 128-bit big-endian counter starting at `iv`."""
    counter = Counter.new(128, initial_value=int.from_bytes(iv, "big"))
    return bytes(AES.new(key, AES.MODE_CTR, counter=counter).encrypt(data))


def _derive_keys(shared: bytes) -> tuple[bytes, bytes]:
    material = concat_kdf(shared, 2 * KEY_LENGTH)
    return material[:KEY_LENGTH], hashlib.sha256(material[KEY_LENGTH:]).digest()


def encrypt(
    recipient_id: bytes,
    plaintext: bytes,
    shared_mac_data: bytes = b"",
    ephemeral_key: PrivateKey | None = None,
    iv: bytes | None = None,
) -> bytes:
    """Encrypt for the node whose 64-byte id is `recipient_id`: R || iv || ciphertext || tag.

    `ephemeral_key` and `iv` are random unless given (tests pass them for fixed vectors).
    Raises P2PError if the recipient id is not a curve point.
    """
    ephemeral = ephemeral_key or PrivateKey()
    iv = iv if iv is not None else os.urandom(IV_LENGTH)
    encryption_key, mac_key = _derive_keys(ecdh_secret(ephemeral, recipient_id))
    ciphertext = aes_ctr(encryption_key, iv, plaintext)
    tag = hmac.new(mac_key, iv + ciphertext + shared_mac_data, hashlib.sha256).digest()
    return b"\x04" + public_key_bytes(ephemeral) + iv + ciphertext + tag


def decrypt(private_key: PrivateKey, message: bytes, shared_mac_data: bytes = b"") -> bytes:
    """Decrypt a message made by `encrypt` for our key; raise DecryptionError if it fails."""
    if len(message) < OVERHEAD or message[0] != 0x04:
        raise DecryptionError(f"ECIES message too short or not prefixed 0x04 ({len(message)} B)")
    sender_point = message[1:PUBLIC_POINT_LENGTH]
    iv = message[PUBLIC_POINT_LENGTH : PUBLIC_POINT_LENGTH + IV_LENGTH]
    ciphertext = message[PUBLIC_POINT_LENGTH + IV_LENGTH : -TAG_LENGTH]
    tag = message[-TAG_LENGTH:]
    try:
        shared = ecdh_secret(private_key, sender_point)
    except P2PError as exc:
        raise DecryptionError(f"ECIES ephemeral key invalid: {exc}") from exc
    encryption_key, mac_key = _derive_keys(shared)
    expected = hmac.new(mac_key, iv + ciphertext + shared_mac_data, hashlib.sha256).digest()
    if not hmac.compare_digest(expected, tag):
        raise DecryptionError("ECIES tag mismatch: wrong key or corrupted message")
    return aes_ctr(encryption_key, iv, ciphertext)
