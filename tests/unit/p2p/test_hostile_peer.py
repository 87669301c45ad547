"""A hostile peer must be disconnected with the right reason and never crash us.

The attacker runs a real handshake and Hello by hand, then sends crafted frames; our side is an
EthPeer serving the test chain, whose `run()` must return the error after sending Disconnect.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import cramjam
import pytest
from coincurve import PrivateKey

from khipu.p2p import handshake, wire
from khipu.p2p import session as p2p
from khipu.p2p.errors import DisconnectReason, HandshakeError, P2PError, PeerMisbehaved
from khipu.p2p.eth import messages as eth
from khipu.p2p.eth.peer import EthPeer, LocalChain
from khipu.p2p.frames import FrameCodec
from khipu.p2p.keys import public_key_bytes
from khipu.p2p.transport import FramedConnection
from tests.unit.p2p.chainfile import MemoryChain
from tests.unit.p2p.memory import MemoryWriter, memory_pipe

ETH_OFFSET = 0x10
Attack = Callable[[FramedConnection, MemoryWriter, FrameCodec], Awaitable[None]]


async def run_attack(chain: MemoryChain, attack: Attack) -> tuple[P2PError, int | None]:
    """Connect an attacker to an EthPeer serving `chain`; return how our side ended and the
    reason in the Disconnect the attacker received (None if it got none)."""
    our_key, attacker_key = PrivateKey(), PrivateKey()
    (reader_a, writer_a), (reader_b, writer_b) = memory_pipe()
    caps = {eth.ETH68: eth.MESSAGE_COUNT}

    async def attacker() -> int | None:
        secrets = await handshake.initiate(
            reader_a, writer_a, attacker_key, public_key_bytes(our_key)
        )
        connection = FramedConnection(reader_a, writer_a, FrameCodec(secrets))
        hello = p2p.Hello(5, "evil", (eth.ETH68,), 0, public_key_bytes(attacker_key))
        await connection.send(p2p.HELLO, hello.encode())
        await connection.receive(5)  # our Hello
        connection.compression = True
        await connection.receive(5)  # our Status
        local = LocalChain.from_reader(chain)
        await connection.send(ETH_OFFSET + eth.STATUS, local.status().encode())
        await attack(connection, writer_a, FrameCodec(secrets))
        while True:
            try:
                message_id, payload = await connection.receive(5)
            except P2PError:
                return None
            if message_id == p2p.DISCONNECT:
                reason = p2p.decode_disconnect(payload)
                return None if reason is None else int(reason)

    async def defender() -> P2PError:
        session = await p2p.accept(reader_b, writer_b, our_key, caps)
        peer = EthPeer(session, LocalChain.from_reader(chain), chain)
        await peer.exchange_status()
        return await peer.run()

    ended, reason = await asyncio.wait_for(asyncio.gather(defender(), attacker()), 10)
    return ended, reason


async def malformed_rlp(connection: FramedConnection, *_: object) -> None:
    await connection.send(ETH_OFFSET + eth.GET_BLOCK_HEADERS, b"\xf8\xff\x01")


async def wrong_shape(connection: FramedConnection, *_: object) -> None:
    await connection.send(ETH_OFFSET + eth.GET_BLOCK_BODIES, wire.encode([1, [b"abc"]]))


async def unknown_message_id(connection: FramedConnection, *_: object) -> None:
    await connection.send(0x7F, wire.encode([]))


async def second_status(connection: FramedConnection, *_: object) -> None:
    await connection.send(ETH_OFFSET + eth.STATUS, wire.encode([]))


async def snappy_bomb(connection: FramedConnection, *_: object) -> None:
    connection.compression = False  # we compress by hand: a preamble claiming 100 MiB
    await connection.send(ETH_OFFSET + eth.TRANSACTIONS, b"\x80\x80\x80\x32" + b"\0" * 10)


async def bad_snappy(connection: FramedConnection, *_: object) -> None:
    connection.compression = False
    await connection.send(ETH_OFFSET + eth.TRANSACTIONS, b"\x05\xff\xff\xff\xff")


async def oversized_message(connection: FramedConnection, *_: object) -> None:
    connection.compression = False
    big = bytes(cramjam.snappy.compress_raw(wire.encode([b"\0" * (11 * 1024 * 1024)])))
    await connection.send(ETH_OFFSET + eth.TRANSACTIONS, big)


async def oversized_frame(connection: FramedConnection, writer: MemoryWriter, _: object) -> None:
    # A header declaring a 15 MiB frame, with a valid MAC: refused before the body is read.
    codec = connection._codec
    frame = codec.encode(b"\x80" + b"\0" * (15 * 1024 * 1024))
    writer.write(frame[:32])


async def bad_mac(connection: FramedConnection, writer: MemoryWriter, _: object) -> None:
    frame = bytearray(connection._codec.encode(b"\x80\xc0"))
    frame[-1] ^= 0x01
    writer.write(bytes(frame))


@pytest.mark.parametrize(
    "attack",
    [
        malformed_rlp,
        wrong_shape,
        unknown_message_id,
        second_status,
        snappy_bomb,
        bad_snappy,
        oversized_message,
        oversized_frame,
        bad_mac,
    ],
)
def test_hostile_peer_is_disconnected_for_breach(prague_chain: MemoryChain, attack: Attack) -> None:
    ended, reason = asyncio.run(run_attack(prague_chain, attack))
    assert isinstance(ended, PeerMisbehaved)
    assert ended.reason is DisconnectReason.BREACH_OF_PROTOCOL
    assert reason == DisconnectReason.BREACH_OF_PROTOCOL


def test_garbage_instead_of_auth_is_a_handshake_error() -> None:
    async def scenario() -> None:
        (_, writer_a), (reader_b, writer_b) = memory_pipe()
        writer_a.write(b"\x01\x00" + b"\x42" * 256)
        with pytest.raises(HandshakeError):
            await p2p.accept(reader_b, writer_b, PrivateKey(), {eth.ETH68: 17})
        assert writer_b.is_closing()

    asyncio.run(scenario())


def test_hangup_during_handshake_is_a_disconnect() -> None:
    async def scenario() -> None:
        (_, writer_a), (reader_b, writer_b) = memory_pipe()
        writer_a.write(b"\x01\x00\x04")
        writer_a.close()
        with pytest.raises(P2PError):
            await p2p.accept(reader_b, writer_b, PrivateKey(), {eth.ETH68: 17})

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("make_hello", "reason"),
    [
        (lambda node_id: b"\xc3\x05\x80\xc0", DisconnectReason.BREACH_OF_PROTOCOL),
        (lambda node_id: b"\xff\xff", DisconnectReason.BREACH_OF_PROTOCOL),
        (
            lambda node_id: p2p.Hello(5, "x", (eth.ETH68,), 0, b"\x01" * 64).encode(),
            DisconnectReason.UNEXPECTED_IDENTITY,
        ),
        (
            lambda node_id: p2p.Hello(5, "x", (p2p.Capability("les", 4),), 0, node_id).encode(),
            DisconnectReason.USELESS_PEER,
        ),
        (
            lambda node_id: p2p.Hello(3, "x", (eth.ETH68,), 0, node_id).encode(),
            DisconnectReason.INCOMPATIBLE_P2P_VERSION,
        ),
    ],
)
def test_bad_hello_is_refused_with_its_reason(
    make_hello: Callable[[bytes], bytes], reason: DisconnectReason
) -> None:
    async def scenario() -> tuple[P2PError, int | None]:
        our_key, attacker_key = PrivateKey(), PrivateKey()
        (reader_a, writer_a), (reader_b, writer_b) = memory_pipe()

        async def attacker() -> int | None:
            secrets = await handshake.initiate(
                reader_a, writer_a, attacker_key, public_key_bytes(our_key)
            )
            connection = FramedConnection(reader_a, writer_a, FrameCodec(secrets))
            await connection.send(p2p.HELLO, make_hello(public_key_bytes(attacker_key)))
            await connection.receive(5)  # our Hello
            # after a valid Hello of version 5 everything is compressed, our Disconnect too
            connection.compression = reason not in (
                DisconnectReason.BREACH_OF_PROTOCOL,
                DisconnectReason.INCOMPATIBLE_P2P_VERSION,
            )
            message_id, payload = await connection.receive(5)
            assert message_id == p2p.DISCONNECT
            return p2p.decode_disconnect(payload)

        async def defender() -> P2PError:
            try:
                await p2p.accept(reader_b, writer_b, our_key, {eth.ETH68: eth.MESSAGE_COUNT})
            except P2PError as exc:
                return exc
            raise AssertionError("a bad Hello was accepted")

        return await asyncio.wait_for(asyncio.gather(defender(), attacker()), 10)

    error, sent = asyncio.run(scenario())
    assert sent == reason
    assert getattr(error, "reason", None) == reason
