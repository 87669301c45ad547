"""ECIES and the RLPx auth/ack handshake against EIP-8's vectors, and both directions live."""

from __future__ import annotations

import asyncio

import pytest
from coincurve import PrivateKey

from khipu.p2p import ecies, handshake
from khipu.p2p.errors import DecryptionError, HandshakeError
from khipu.p2p.frames import FrameCodec
from khipu.p2p.keys import public_key_bytes
from tests.unit.p2p import eip8_vectors as v
from tests.unit.p2p.memory import memory_pipe

KEY_A = PrivateKey(v.STATIC_KEY_A)
KEY_B = PrivateKey(v.STATIC_KEY_B)
ID_A = public_key_bytes(KEY_A)
EPHEMERAL_ID_A = public_key_bytes(PrivateKey(v.EPHEMERAL_KEY_A))
EPHEMERAL_ID_B = public_key_bytes(PrivateKey(v.EPHEMERAL_KEY_B))


def test_ecies_round_trip_and_tamper() -> None:
    message = ecies.encrypt(public_key_bytes(KEY_B), b"hello rlpx", shared_mac_data=b"\x01\x02")
    assert ecies.decrypt(KEY_B, message, shared_mac_data=b"\x01\x02") == b"hello rlpx"
    with pytest.raises(DecryptionError):
        ecies.decrypt(KEY_B, message, shared_mac_data=b"\x01\x03")
    with pytest.raises(DecryptionError):
        ecies.decrypt(KEY_A, message, shared_mac_data=b"\x01\x02")
    tampered = message[:-40] + bytes([message[-40] ^ 1]) + message[-39:]
    with pytest.raises(DecryptionError):
        ecies.decrypt(KEY_B, tampered, shared_mac_data=b"\x01\x02")


@pytest.mark.parametrize(
    ("auth", "version", "eip8"),
    [(v.AUTH_LEGACY, 4, False), (v.AUTH_EIP8_V4, 4, True), (v.AUTH_EIP8_V56, 56, True)],
)
def test_read_auth_vectors(auth: bytes, version: int, eip8: bool) -> None:
    message = handshake.read_auth(KEY_B, auth)
    assert message.initiator_id == ID_A
    assert message.ephemeral_id == EPHEMERAL_ID_A
    assert message.nonce == v.NONCE_A
    assert (message.version, message.eip8) == (version, eip8)


@pytest.mark.parametrize(
    ("ack", "version"), [(v.ACK_LEGACY, 4), (v.ACK_EIP8_V4, 4), (v.ACK_EIP8_V57, 57)]
)
def test_read_ack_vectors(ack: bytes, version: int) -> None:
    message = handshake.read_ack(KEY_A, ack)
    assert message.ephemeral_id == EPHEMERAL_ID_B
    assert message.nonce == v.NONCE_B
    assert message.version == version


def test_recipient_secrets_match_vector() -> None:
    secrets = handshake.derive_secrets(
        initiator=False,
        remote_id=ID_A,
        ephemeral_key=PrivateKey(v.EPHEMERAL_KEY_B),
        remote_ephemeral_id=EPHEMERAL_ID_A,
        initiator_nonce=v.NONCE_A,
        recipient_nonce=v.NONCE_B,
        auth=v.AUTH_EIP8_V4,
        ack=v.ACK_EIP8_V4,
    )
    assert secrets.aes_secret == v.AES_SECRET
    assert secrets.mac_secret == v.MAC_SECRET
    codec = FrameCodec(secrets)
    codec.ingress_mac_update(b"foo")
    assert codec.ingress_mac_digest == v.INGRESS_MAC_FOO


def test_auth_for_someone_else_is_rejected() -> None:
    auth = handshake.make_auth(KEY_A, public_key_bytes(PrivateKey()), PrivateKey(), bytes(32))
    with pytest.raises(HandshakeError):
        handshake.read_auth(KEY_B, auth)


def test_made_auth_and_ack_decode() -> None:
    ephemeral, nonce = PrivateKey(), bytes(range(32))
    auth = handshake.make_auth(KEY_A, public_key_bytes(KEY_B), ephemeral, nonce)
    assert int.from_bytes(auth[:2], "big") == len(auth) - 2
    message = handshake.read_auth(KEY_B, auth)
    assert (message.initiator_id, message.nonce) == (ID_A, nonce)
    assert message.ephemeral_id == public_key_bytes(ephemeral)
    ack = handshake.make_ack(ID_A, ephemeral, nonce, eip8=False)
    assert len(ack) == handshake.LEGACY_ACK_LENGTH
    assert handshake.read_ack(KEY_A, ack).nonce == nonce


async def _handshake_both_sides(legacy_auth: bool) -> tuple[FrameCodec, FrameCodec]:
    (reader_a, writer_a), (reader_b, writer_b) = memory_pipe()
    if legacy_auth:
        ephemeral, nonce = PrivateKey(), bytes(32)
        auth = handshake.make_legacy_auth(KEY_A, public_key_bytes(KEY_B), ephemeral, nonce)
        writer_a.write(auth)
        secrets_b = await handshake.respond(reader_b, writer_b, KEY_B)
        ack = await reader_a.readexactly(handshake.LEGACY_ACK_LENGTH)
        reply = handshake.read_ack(KEY_A, ack)
        secrets_a = handshake.derive_secrets(
            initiator=True,
            remote_id=public_key_bytes(KEY_B),
            ephemeral_key=ephemeral,
            remote_ephemeral_id=reply.ephemeral_id,
            initiator_nonce=nonce,
            recipient_nonce=reply.nonce,
            auth=auth,
            ack=ack,
        )
    else:
        secrets_a, secrets_b = await asyncio.gather(
            handshake.initiate(reader_a, writer_a, KEY_A, public_key_bytes(KEY_B)),
            handshake.respond(reader_b, writer_b, KEY_B),
        )
    assert secrets_b.remote_id == ID_A
    return FrameCodec(secrets_a), FrameCodec(secrets_b)


@pytest.mark.parametrize("legacy_auth", [False, True])
def test_live_handshake_gives_working_frame_codecs(legacy_auth: bool) -> None:
    codec_a, codec_b = asyncio.run(_handshake_both_sides(legacy_auth))
    for payload in (b"\x80", b"x" * 1000, b"y" * 17):
        frame = codec_a.encode(payload)
        size = codec_b.decode_header(frame[:32])
        assert codec_b.decode_body(frame[32:], size) == payload
        back = codec_b.encode(payload[::-1])
        size = codec_a.decode_header(back[:32])
        assert codec_a.decode_body(back[32:], size) == payload[::-1]
