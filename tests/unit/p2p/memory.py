"""An in-memory duplex byte stream: protocol code runs over it exactly as over TCP."""

from __future__ import annotations

import asyncio


class MemoryWriter:
    """Writes feed the peer's StreamReader; closing sends it end-of-stream."""

    def __init__(self, peer_reader: asyncio.StreamReader) -> None:
        self._peer_reader = peer_reader
        self._closed = False

    def write(self, data: bytes) -> None:
        if not self._closed:
            self._peer_reader.feed_data(data)

    async def drain(self) -> None:
        await asyncio.sleep(0)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._peer_reader.feed_eof()

    def is_closing(self) -> bool:
        return self._closed


Side = tuple[asyncio.StreamReader, MemoryWriter]


def memory_pipe() -> tuple[Side, Side]:
    """Two connected ends, each a (reader, writer) pair. Call inside a running event loop."""
    reader_a, reader_b = asyncio.StreamReader(), asyncio.StreamReader()
    return (reader_a, MemoryWriter(reader_b)), (reader_b, MemoryWriter(reader_a))
