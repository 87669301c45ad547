"""The RLPx auth/ack handshake (rlpx.md "Initial Handshake", EIP-8) and the session secrets.

The initiator sends auth, the recipient answers with ack, and both derive the AES and MAC
secrets of the frame codec. We send EIP-8 messages; inbound we also accept the legacy (RLPx v4)
fixed-size auth and ack, and answer a legacy auth with a legacy ack, as go-ethereum does.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass

from coincurve import PrivateKey

from khipu.p2p import ecies, wire
from khipu.p2p.abc import ByteReader, ByteWriter
from khipu.p2p.errors import DecryptionError, HandshakeError, P2PError, PeerMisbehaved
from khipu.p2p.keys import (
    ecdh_secret,
    keccak256,
    public_key_bytes,
    recover_node_id,
    sign_recoverable,
)

HANDSHAKE_VERSION = 4
NONCE_LENGTH = 32
LEGACY_AUTH_LENGTH = 194 + ecies.OVERHEAD  # 307 bytes
LEGACY_ACK_LENGTH = 97 + ecies.OVERHEAD  # 210 bytes
HANDSHAKE_TIMEOUT = 5.0  # seconds, for the whole exchange


@dataclass(frozen=True)
class AuthMessage:
    """What the recipient learns from auth; `eip8` tells which format to answer in."""

    initiator_id: bytes
    ephemeral_id: bytes
    nonce: bytes
    version: int
    eip8: bool


@dataclass(frozen=True)
class AckMessage:
    """What the initiator learns from ack."""

    ephemeral_id: bytes
    nonce: bytes
    version: int


@dataclass(frozen=True)
class SessionSecrets:
    """The secrets a frame codec starts from. The MAC states are seeds, consumed by FrameCodec."""

    remote_id: bytes
    aes_secret: bytes
    mac_secret: bytes
    egress_mac_seed: bytes
    ingress_mac_seed: bytes


def _xor(left: bytes, right: bytes) -> bytes:
    return bytes(a ^ b for a, b in zip(left, right, strict=True))


def _padding() -> bytes:
    return os.urandom(100 + os.urandom(1)[0] % 100)


def _seal_eip8(remote_id: bytes, body: list[object], padding: bytes) -> bytes:
    plaintext = wire.encode(body) + padding
    size = (len(plaintext) + ecies.OVERHEAD).to_bytes(2, "big")
    return size + ecies.encrypt(remote_id, plaintext, shared_mac_data=size)


def make_auth(
    private_key: PrivateKey,
    remote_id: bytes,
    ephemeral_key: PrivateKey,
    nonce: bytes,
    padding: bytes | None = None,
) -> bytes:
    """The EIP-8 auth message an initiator sends (size prefix included)."""
    shared = ecdh_secret(private_key, remote_id)
    signature = sign_recoverable(ephemeral_key, _xor(shared, nonce))
    body: list[object] = [signature, public_key_bytes(private_key), nonce, HANDSHAKE_VERSION]
    return _seal_eip8(remote_id, body, _padding() if padding is None else padding)


def make_legacy_auth(
    private_key: PrivateKey, remote_id: bytes, ephemeral_key: PrivateKey, nonce: bytes
) -> bytes:
    """The pre-EIP-8 auth message (307 bytes), which old peers still send."""
    shared = ecdh_secret(private_key, remote_id)
    signature = sign_recoverable(ephemeral_key, _xor(shared, nonce))
    ephemeral_id = public_key_bytes(ephemeral_key)
    plaintext = signature + keccak256(ephemeral_id) + public_key_bytes(private_key) + nonce + b"\0"
    return ecies.encrypt(remote_id, plaintext)


def make_ack(remote_id: bytes, ephemeral_key: PrivateKey, nonce: bytes, eip8: bool = True) -> bytes:
    """The ack message a recipient answers with, in EIP-8 or legacy format."""
    ephemeral_id = public_key_bytes(ephemeral_key)
    if not eip8:
        return ecies.encrypt(remote_id, ephemeral_id + nonce + b"\0")
    return _seal_eip8(remote_id, [ephemeral_id, nonce, HANDSHAKE_VERSION], _padding())


def _open_eip8(private_key: PrivateKey, message: bytes) -> list[wire.Item]:
    plaintext = ecies.decrypt(private_key, message[2:], shared_mac_data=message[:2])
    try:
        body = wire.decode(plaintext, "handshake body", strict=False)
    except PeerMisbehaved as exc:
        raise HandshakeError(str(exc)) from exc
    if not isinstance(body, list):
        raise HandshakeError("handshake body is not an RLP list")
    return body


def _as_int(item: wire.Item) -> int:
    if not isinstance(item, bytes):
        raise HandshakeError("handshake version is not an RLP string")
    return int.from_bytes(item, "big")


def _as_bytes(item: wire.Item, length: int, what: str) -> bytes:
    if not isinstance(item, bytes) or len(item) != length:
        raise HandshakeError(f"handshake {what} is not {length} bytes")
    return item


def read_auth(private_key: PrivateKey, message: bytes) -> AuthMessage:
    """Decode an auth message in either format; raise HandshakeError if it is invalid."""
    if len(message) == LEGACY_AUTH_LENGTH:
        try:
            plaintext = ecies.decrypt(private_key, message)
        except DecryptionError:
            pass  # an EIP-8 message of the same size: fall through
        else:
            signature, initiator_id = plaintext[:65], plaintext[97:161]
            nonce, version = plaintext[161:193], HANDSHAKE_VERSION
            return _auth_from_parts(private_key, signature, initiator_id, nonce, version, False)
    try:
        body = _open_eip8(private_key, message)
    except DecryptionError as exc:
        raise HandshakeError(f"cannot decrypt auth: {exc}") from exc
    if len(body) < 4:
        raise HandshakeError(f"auth has {len(body)} elements, expected at least 4")
    signature = _as_bytes(body[0], 65, "signature")
    initiator_id = _as_bytes(body[1], 64, "initiator id")
    nonce = _as_bytes(body[2], NONCE_LENGTH, "nonce")
    return _auth_from_parts(private_key, signature, initiator_id, nonce, _as_int(body[3]), True)


def _auth_from_parts(
    private_key: PrivateKey,
    signature: bytes,
    initiator_id: bytes,
    nonce: bytes,
    version: int,
    eip8: bool,
) -> AuthMessage:
    try:
        shared = ecdh_secret(private_key, initiator_id)
        ephemeral_id = recover_node_id(signature, _xor(shared, nonce))
    except P2PError as exc:
        raise HandshakeError(f"auth from {initiator_id.hex()[:16]}... is invalid: {exc}") from exc
    return AuthMessage(initiator_id, ephemeral_id, nonce, version, eip8)


def read_ack(private_key: PrivateKey, message: bytes) -> AckMessage:
    """Decode an ack message in either format; raise HandshakeError if it is invalid."""
    if len(message) == LEGACY_ACK_LENGTH:
        try:
            plaintext = ecies.decrypt(private_key, message)
        except DecryptionError:
            pass
        else:
            return AckMessage(plaintext[:64], plaintext[64:96], HANDSHAKE_VERSION)
    try:
        body = _open_eip8(private_key, message)
    except DecryptionError as exc:
        raise HandshakeError(f"cannot decrypt ack: {exc}") from exc
    if len(body) < 3:
        raise HandshakeError(f"ack has {len(body)} elements, expected at least 3")
    ephemeral_id = _as_bytes(body[0], 64, "ephemeral key")
    nonce = _as_bytes(body[1], NONCE_LENGTH, "nonce")
    return AckMessage(ephemeral_id, nonce, _as_int(body[2]))


def derive_secrets(
    *,
    initiator: bool,
    remote_id: bytes,
    ephemeral_key: PrivateKey,
    remote_ephemeral_id: bytes,
    initiator_nonce: bytes,
    recipient_nonce: bytes,
    auth: bytes,
    ack: bytes,
) -> SessionSecrets:
    """The frame secrets both sides derive from the exchanged messages (rlpx.md "Secrets")."""
    ephemeral_shared = ecdh_secret(ephemeral_key, remote_ephemeral_id)
    shared = keccak256(ephemeral_shared + keccak256(recipient_nonce + initiator_nonce))
    aes_secret = keccak256(ephemeral_shared + shared)
    mac_secret = keccak256(ephemeral_shared + aes_secret)
    initiator_mac = _xor(mac_secret, recipient_nonce) + auth
    recipient_mac = _xor(mac_secret, initiator_nonce) + ack
    egress, ingress = (
        (initiator_mac, recipient_mac) if initiator else (recipient_mac, initiator_mac)
    )
    return SessionSecrets(remote_id, aes_secret, mac_secret, egress, ingress)


async def _read_message(reader: ByteReader, private_key: PrivateKey, legacy_length: int) -> bytes:
    """Read one auth or ack, telling the formats apart the way go-ethereum does.

    A legacy message starts with the 0x04 of its ECIES point; an EIP-8 size prefix starting with
    0x04 is possible too, so a message that fails to decrypt as legacy is read on as EIP-8.
    """
    prefix = await reader.readexactly(2)
    size = int.from_bytes(prefix, "big")
    if prefix[0] != 0x04:
        return prefix + await reader.readexactly(size)
    head = prefix + await reader.readexactly(legacy_length - 2)
    try:
        ecies.decrypt(private_key, head)
    except DecryptionError:
        if size + 2 <= legacy_length:
            raise HandshakeError(
                f"handshake message of {size} B is neither legacy nor EIP-8"
            ) from None
        return head + await reader.readexactly(size + 2 - legacy_length)
    return head


async def initiate(
    reader: ByteReader,
    writer: ByteWriter,
    private_key: PrivateKey,
    remote_id: bytes,
    timeout: float = HANDSHAKE_TIMEOUT,
) -> SessionSecrets:
    """Run the initiator side: send auth, read ack, derive secrets.

    Raises HandshakeError on a bad ack or timeout, and the reader's error if the peer hangs up.
    """
    ephemeral_key, nonce = PrivateKey(), os.urandom(NONCE_LENGTH)
    auth = make_auth(private_key, remote_id, ephemeral_key, nonce)
    writer.write(auth)
    await writer.drain()
    try:
        ack = await asyncio.wait_for(_read_message(reader, private_key, LEGACY_ACK_LENGTH), timeout)
    except TimeoutError as exc:
        raise HandshakeError(f"no ack from {remote_id.hex()[:16]}... in {timeout}s") from exc
    message = read_ack(private_key, ack)
    return derive_secrets(
        initiator=True,
        remote_id=remote_id,
        ephemeral_key=ephemeral_key,
        remote_ephemeral_id=message.ephemeral_id,
        initiator_nonce=nonce,
        recipient_nonce=message.nonce,
        auth=auth,
        ack=ack,
    )


async def respond(
    reader: ByteReader,
    writer: ByteWriter,
    private_key: PrivateKey,
    timeout: float = HANDSHAKE_TIMEOUT,
) -> SessionSecrets:
    """Run the recipient side: read auth, send ack, derive secrets.

    Raises HandshakeError on a bad auth or timeout.
    """
    try:
        auth = await asyncio.wait_for(
            _read_message(reader, private_key, LEGACY_AUTH_LENGTH), timeout
        )
    except TimeoutError as exc:
        raise HandshakeError(f"no auth within {timeout}s") from exc
    message = read_auth(private_key, auth)
    ephemeral_key, nonce = PrivateKey(), os.urandom(NONCE_LENGTH)
    ack = make_ack(message.initiator_id, ephemeral_key, nonce, eip8=message.eip8)
    writer.write(ack)
    await writer.drain()
    return derive_secrets(
        initiator=False,
        remote_id=message.initiator_id,
        ephemeral_key=ephemeral_key,
        remote_ephemeral_id=message.ephemeral_id,
        initiator_nonce=message.nonce,
        recipient_nonce=nonce,
        auth=auth,
        ack=ack,
    )
