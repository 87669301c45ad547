"""Our RLPx listener on 127.0.0.1: garbage connections are dropped, the listener keeps serving."""

from __future__ import annotations

import asyncio

from coincurve import PrivateKey

from khipu.p2p import session as p2p
from khipu.p2p.errors import DisconnectReason
from khipu.p2p.eth import messages as eth
from khipu.p2p.keys import public_key_bytes
from khipu.p2p.server import listen

CAPS = {eth.ETH68: eth.MESSAGE_COUNT}


def test_listener_survives_garbage_and_serves_the_next_peer() -> None:
    async def scenario() -> None:
        key = PrivateKey()
        sessions: list[p2p.Session] = []

        async def on_session(session: p2p.Session) -> None:
            sessions.append(session)

        server = await listen("127.0.0.1", 0, key, CAPS, on_session)
        port = server.sockets[0].getsockname()[1]
        for garbage in (b"\x00\x05hello", b"\x04" * 1100, b"\x01\x90" + b"\x99" * 400):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(garbage)
            await writer.drain()
            assert await asyncio.wait_for(reader.read(), 10) == b""  # closed by the listener
            writer.close()
        session = await p2p.dial("127.0.0.1", port, PrivateKey(), public_key_bytes(key), CAPS)
        assert session.remote_hello.node_id == public_key_bytes(key)
        for _ in range(100):
            if sessions:
                break
            await asyncio.sleep(0.05)
        assert len(sessions) == 1
        assert sessions[0].remote_id == session.local_hello.node_id
        await session.disconnect(DisconnectReason.CLIENT_QUITTING)
        server.close()
        await server.wait_closed()

    asyncio.run(scenario())


def test_connections_beyond_the_pending_handshakes_are_closed_unanswered() -> None:
    async def scenario() -> None:
        key = PrivateKey()
        sessions: list[p2p.Session] = []

        async def on_session(session: p2p.Session) -> None:
            sessions.append(session)

        server = await listen("127.0.0.1", 0, key, CAPS, on_session, max_pending=1)
        port = server.sockets[0].getsockname()[1]
        silent_reader, silent = await asyncio.open_connection("127.0.0.1", port)  # sends nothing
        await asyncio.sleep(0.2)  # accepted: its handshake is pending
        reader, extra = await asyncio.open_connection("127.0.0.1", port)
        assert await asyncio.wait_for(reader.read(), 10) == b""  # closed unanswered
        # ... while the earlier silent one is still open (without the limit both would wait
        # for the handshake timeout, and the silent one, opened first, would close first)
        assert not silent_reader.at_eof()
        extra.close()
        silent.close()
        await asyncio.sleep(0.2)  # the silent one's handshake failed: the slot is free
        session = await p2p.dial("127.0.0.1", port, PrivateKey(), public_key_bytes(key), CAPS)
        assert session.remote_hello.node_id == public_key_bytes(key)
        await session.disconnect(DisconnectReason.CLIENT_QUITTING)
        server.close()
        await server.wait_closed()

    asyncio.run(scenario())
