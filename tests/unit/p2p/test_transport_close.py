"""Closing an RLPx connection so that the peer reads our last message, over real loopback TCP."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from khipu.p2p.transport import FramedConnection


class _PlainCodec:
    """Frames as they are: what reaches the socket is the frame data itself."""

    remote_id = b"\x01" * 64

    def encode(self, frame_data: bytes) -> bytes:
        return frame_data


@contextmanager
def _server_loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield loop
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


def _accepting(loop: asyncio.AbstractEventLoop) -> tuple[int, asyncio.Queue[FramedConnection]]:
    accepted: asyncio.Queue[FramedConnection] = asyncio.Queue()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accepted.put(FramedConnection(reader, writer, _PlainCodec()))  # type: ignore[arg-type]

    async def listen() -> int:
        server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
        return int(server.sockets[0].getsockname()[1])

    return asyncio.run_coroutine_threadsafe(listen(), loop).result(5), accepted


def _read_to_end(client: socket.socket) -> tuple[bytes, str]:
    received = b""
    client.settimeout(5)
    while True:
        try:
            chunk = client.recv(65536)
        except ConnectionResetError:
            return received, "reset"
        if not chunk:
            return received, "eof"
        received += chunk


def test_a_peer_that_wrote_while_we_were_busy_reads_our_last_message_and_a_clean_end() -> None:
    """Our loop is busy while the peer writes, so its bytes sit unread in the kernel when we
    say goodbye. A plain close would answer them with a TCP reset, which a peer's stream reports
    instead of the message before it; close_after_peer ends with a FIN and reads them away."""
    with _server_loop() as loop:
        port, accepted = _accepting(loop)
        client = socket.create_connection(("127.0.0.1", port))
        connection = asyncio.run_coroutine_threadsafe(accepted.get(), loop).result(5)

        async def busy_then_goodbye() -> None:
            time.sleep(0.3)  # the loop cannot read: the peer's bytes stay in the kernel
            connection.send_nowait(0x01, b"\xc1\x03")  # Disconnect: useless peer
            await connection.close_after_peer(timeout=5)

        closing = asyncio.run_coroutine_threadsafe(busy_then_goodbye(), loop)
        time.sleep(0.1)  # the busy spell has begun
        client.sendall(b"status the busy side has not read" * 10)
        time.sleep(0.6)
        received, end = _read_to_end(client)
        assert (received, end) == (b"\x01\xc1\x03", "eof")
        started = time.monotonic()
        client.close()
        closing.result(5)  # returns once the peer hung up, not at the timeout
        assert time.monotonic() - started < 4


def test_close_after_peer_gives_up_on_a_peer_that_never_hangs_up() -> None:
    with _server_loop() as loop:
        port, accepted = _accepting(loop)
        client = socket.create_connection(("127.0.0.1", port))
        connection = asyncio.run_coroutine_threadsafe(accepted.get(), loop).result(5)
        closing = asyncio.run_coroutine_threadsafe(connection.close_after_peer(timeout=0.5), loop)
        closing.result(5)
        client.settimeout(5)
        assert client.recv(10) == b""  # our side ended; the connection is closed
        client.close()
