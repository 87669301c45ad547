"""The p2p base protocol: Hello, capability negotiation, Ping/Pong, Disconnect, snappy."""

from __future__ import annotations

import asyncio

import pytest

from khipu.p2p import session as p2p
from khipu.p2p import wire
from khipu.p2p.errors import DisconnectReason, IncompatiblePeer, PeerDisconnected
from khipu.p2p.session import Capability, Hello, negotiate
from tests.unit.p2p import eip8_vectors as v
from tests.unit.p2p.pairs import session_pair

ETH68, ETH67, SNAP1 = Capability("eth", 68), Capability("eth", 67), Capability("snap", 1)


def test_hello_vector_with_extra_elements_decodes() -> None:
    hello = Hello.decode(v.HELLO_V22)
    assert hello.version == 0x37  # EIP-8 calls it "version 22"; the bytes say 0x37
    assert hello.client_id == "kneth/v0.91/plan9"
    assert hello.capabilities == (Capability("eth", 61), Capability("mork", 22))
    assert hello.listen_port == 9999
    assert len(hello.node_id) == 64


def test_hello_round_trip() -> None:
    hello = Hello(5, "khipu/test", (ETH68, SNAP1), 30303, bytes(range(64)))
    assert Hello.decode(hello.encode()) == hello


def test_negotiate_picks_highest_shared_versions_in_name_order() -> None:
    ours = {ETH68: 17, ETH67: 17, SNAP1: 8, Capability("les", 4): 20}
    shared = negotiate(ours, (Capability("snap", 1), ETH67, ETH68, Capability("eth", 69)))
    assert [(c.name, c.version, c.offset, c.length) for c in shared] == [
        ("eth", 68, 16, 17),
        ("snap", 1, 33, 8),
    ]
    assert negotiate(ours, (Capability("bzz", 1),)) == []


def test_session_exchange_ping_and_disconnect() -> None:
    async def scenario() -> None:
        a, b = await session_pair({ETH68: 17, SNAP1: 8}, {ETH68: 17})
        assert a.remote_hello.client_id == "b" and b.remote_hello.client_id == "a"
        assert a.connection.compression and b.connection.compression
        assert [c.name for c in a.shared] == ["eth"]
        big = b"\x11" * 100_000
        await a.ping()  # answered inside b.receive with a Pong
        await a.send("eth", 3, wire.encode([big]))
        assert await b.receive() == ("eth", 3, wire.encode([big]))
        await b.send("eth", 4, b"\xc0")
        assert await a.receive() == ("eth", 4, b"\xc0")  # the Pong was consumed on the way
        await b.disconnect(DisconnectReason.TOO_MANY_PEERS)
        with pytest.raises(PeerDisconnected) as caught:
            await a.receive()
        assert caught.value.reason is DisconnectReason.TOO_MANY_PEERS

    asyncio.run(scenario())


def test_no_shared_capability_is_useless_peer() -> None:
    async def scenario() -> None:
        with pytest.raises((IncompatiblePeer, PeerDisconnected)) as caught:
            await session_pair({ETH68: 17}, {SNAP1: 8})
        assert caught.value.reason in (DisconnectReason.USELESS_PEER,)

    asyncio.run(scenario())


@pytest.mark.parametrize("payload", [b"", b"\x01", b"\xc1\x04", b"\x04", b"\xc0"])
def test_disconnect_reason_forms(payload: bytes) -> None:
    expected = {b"": None, b"\x01": 1, b"\xc1\x04": 4, b"\x04": 4, b"\xc0": None}[payload]
    reason = p2p.decode_disconnect(payload)
    assert reason == expected


def test_silent_peer_is_pinged_then_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(p2p, "PING_INTERVAL", 0.05)
    monkeypatch.setattr(p2p, "PONG_TIMEOUT", 0.05)

    async def scenario() -> None:
        a, b = await session_pair({ETH68: 17}, {ETH68: 17})
        # b never reads, so it never answers a's ping
        with pytest.raises(p2p.PeerMisbehaved) as caught:
            await a.receive()
        assert caught.value.reason is DisconnectReason.PING_TIMEOUT
        message_id, _ = await b.connection.receive(1)
        assert message_id == p2p.PING

    asyncio.run(scenario())


def test_ping_is_answered_while_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(p2p, "PING_INTERVAL", 0.05)
    monkeypatch.setattr(p2p, "PONG_TIMEOUT", 0.1)

    async def scenario() -> None:
        a, b = await session_pair({ETH68: 17}, {ETH68: 17})
        b_reader = asyncio.create_task(b.receive())  # b answers pings while it waits
        a_reader = asyncio.create_task(a.receive())  # a pings b each 0.05 s of silence
        await asyncio.sleep(0.5)  # several ping rounds: each needs b's Pong within 0.1 s
        assert not a_reader.done()
        await b.send("eth", 1, b"\xc0")
        assert await asyncio.wait_for(a_reader, 2) == ("eth", 1, b"\xc0")
        b_reader.cancel()

    asyncio.run(scenario())


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"\x00",
        b"\x7f",
        b"\x80",
        b"x" * 55,
        b"y" * 56,
        b"z" * 70000,
        0,
        1,
        127,
        128,
        2**64,
        [],
        [b"", [0, [b"abc"]]],
        [b"q" * 60] * 3,
        "text",
    ],
)
def test_wire_encode_matches_pyrlp(value: object) -> None:
    import rlp

    assert wire.encode(value) == rlp.encode(value)


@pytest.mark.parametrize(("raw", "reason"), [(b"\x10", 0x10), (b"\xc1\x04", 0x04)])
def test_uncompressed_disconnect_is_understood(raw: bytes, reason: int) -> None:
    """EthereumJS sends Disconnect without snappy even after p2p v5 is agreed."""

    async def scenario() -> None:
        a, b = await session_pair({ETH68: 17}, {ETH68: 17})
        b.connection.compression = False
        await b.connection.send(p2p.DISCONNECT, raw)
        with pytest.raises(PeerDisconnected) as caught:
            await a.receive()
        assert caught.value.reason == reason

    asyncio.run(scenario())
