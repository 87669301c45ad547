"""An RLPx connection after the handshake: whole messages in and out of encrypted frames,
snappy compression once Hello is done, and the size limits that keep a hostile peer in check."""

from __future__ import annotations

import asyncio

import cramjam

from khipu.p2p import wire
from khipu.p2p.abc import ByteReader, ByteWriter
from khipu.p2p.errors import FrameError, PeerDisconnected, PeerMisbehaved
from khipu.p2p.frames import HEADER_LENGTH, MAC_LENGTH, MAX_FRAME_SIZE, FrameCodec

MAX_MESSAGE_SIZE = 10 * 1024 * 1024  # a message after decompression (eth.md: "typically 10 MiB")
_DISCONNECT = 0x01  # the p2p Disconnect message id
FRAME_BODY_TIMEOUT = 20.0  # seconds to receive the rest of a frame once its header arrived
LINGER_TIMEOUT = 2.0  # seconds a Disconnect waits for the peer to hang up before we close


def _snappy_length(data: bytes) -> int:
    """The uncompressed length a raw snappy block declares in its varint preamble."""
    length = shift = 0
    for byte in data[:5]:
        length |= (byte & 0x7F) << shift
        if byte < 0x80:
            return length
        shift += 7
    raise PeerMisbehaved("snappy block has a malformed length preamble")


def split_message_id(frame_data: bytes) -> tuple[int, bytes]:
    """Split frame data into its RLP-encoded message id and the message payload.

    Raises PeerMisbehaved if the id is not a canonical RLP integer.
    """
    if not frame_data:
        raise PeerMisbehaved("empty frame")
    first = frame_data[0]
    if first < 0x80:
        return first, frame_data[1:]
    if first == 0x80:
        return 0, frame_data[1:]
    if first <= 0x88:
        length = first - 0x80
        raw = frame_data[1 : 1 + length]
        if len(raw) != length or raw[0] == 0 or (length == 1 and raw[0] < 0x80):
            raise PeerMisbehaved("message id is not a canonical RLP integer")
        return int.from_bytes(raw, "big"), frame_data[1 + length :]
    raise PeerMisbehaved(f"message id prefix 0x{first:02x} is not an RLP integer")


class FramedConnection:
    """Sends and receives devp2p messages `(id, payload)` over one RLPx session."""

    def __init__(
        self,
        reader: ByteReader,
        writer: ByteWriter,
        codec: FrameCodec,
        max_message_size: int = MAX_MESSAGE_SIZE,
    ) -> None:
        self.max_message_size = max_message_size
        self._reader = reader
        self._writer = writer
        self._codec = codec
        self.remote_id = codec.remote_id
        self.compression = False

    @property
    def remote_address(self) -> str:
        """'ip:port' of the peer's socket, or '?' for a stream without one (in-memory tests)."""
        get_extra_info = getattr(self._writer, "get_extra_info", None)
        peer = get_extra_info("peername") if get_extra_info is not None else None
        if isinstance(peer, tuple) and len(peer) >= 2:
            return f"{peer[0]}:{peer[1]}"
        return "?"

    def send_nowait(self, message_id: int, payload: bytes) -> None:
        """Frame and write one message; raise FrameError if it is too big to send."""
        if self.compression:
            payload = bytes(cramjam.snappy.compress_raw(payload))
        frame_data = wire.encode(message_id) + payload
        if len(frame_data) > self.max_frame_size:
            raise FrameError(f"message 0x{message_id:02x} of {len(frame_data)} B is too big")
        if not self._writer.is_closing():
            self._writer.write(self._codec.encode(frame_data))

    async def send(self, message_id: int, payload: bytes) -> None:
        """Send one message and wait until the transport has accepted it."""
        self.send_nowait(message_id, payload)
        try:
            await self._writer.drain()
        except ConnectionError as exc:
            raise PeerDisconnected(f"{self._peer}: connection lost while sending: {exc}") from exc

    async def receive(self, timeout: float | None = None) -> tuple[int, bytes]:
        """The next message `(id, payload)`, decompressed.

        Raises TimeoutError if no frame starts within `timeout` (the stream stays usable),
        FrameError / PeerMisbehaved for a bad MAC, an oversized or malformed message, and
        PeerDisconnected if the stream ends.
        """
        try:
            header = await asyncio.wait_for(
                self._reader.readexactly(HEADER_LENGTH + MAC_LENGTH), timeout
            )
            size = self._codec.decode_header(header, self.max_frame_size)
            body = await asyncio.wait_for(
                self._reader.readexactly(FrameCodec.body_length(size)), FRAME_BODY_TIMEOUT
            )
        except asyncio.IncompleteReadError as exc:
            raise PeerDisconnected(f"{self._peer}: connection closed") from exc
        except ConnectionError as exc:
            raise PeerDisconnected(f"{self._peer}: connection lost: {exc}") from exc
        message_id, payload = split_message_id(self._codec.decode_body(body, size))
        if self.compression:
            try:
                payload = self._decompress(message_id, payload)
            except PeerMisbehaved:
                # EthereumJS sends Disconnect uncompressed; it ends the session anyway, so its
                # reason is read as sent rather than treated as a breach.
                if message_id != _DISCONNECT or len(payload) > 8:
                    raise
        elif len(payload) > self.max_message_size:
            raise PeerMisbehaved(f"{self._peer}: message of {len(payload)} B is over the limit")
        return message_id, payload

    @property
    def max_frame_size(self) -> int:
        """The largest frame accepted: a full-size message that snappy could not shrink."""
        return min(MAX_FRAME_SIZE, self.max_message_size + self.max_message_size // 6 + 64)

    def _decompress(self, message_id: int, payload: bytes) -> bytes:
        declared = _snappy_length(payload)
        if declared > self.max_message_size:
            raise PeerMisbehaved(
                f"{self._peer}: message 0x{message_id:02x} declares {declared} B uncompressed, "
                f"over the {self.max_message_size} B limit"
            )
        try:
            return bytes(cramjam.snappy.decompress_raw(payload))
        except Exception as exc:  # cramjam raises its own DecompressionError
            raise PeerMisbehaved(f"{self._peer}: bad snappy data in 0x{message_id:02x}") from exc

    async def drain(self) -> None:
        """Wait until written data has been handed to the transport."""
        await self._writer.drain()

    def close(self) -> None:
        """Close the underlying stream; further sends are dropped."""
        if not self._writer.is_closing():
            self._writer.close()

    async def close_after_peer(self, timeout: float = LINGER_TIMEOUT) -> None:
        """Close once the peer has had our last message: end our side of the stream, then read
        and drop what the peer still sends until it hangs up, for at most `timeout` seconds.

        Closing a socket with unread data in it makes the kernel answer with a reset, and the
        reset can reach the peer before the Disconnect written just before it: the peer then
        sees "connection reset" instead of our reason. Never raises.
        """
        write_eof = getattr(self._writer, "write_eof", None)
        read = getattr(self._reader, "read", None)
        try:
            if write_eof is not None and not self._writer.is_closing():
                write_eof()
            if read is not None:
                async with asyncio.timeout(timeout):
                    while await read(65536):
                        pass
        except (TimeoutError, OSError, RuntimeError, asyncio.IncompleteReadError):
            pass  # the peer kept the line open or is gone: closing is all that is left
        self.close()

    @property
    def _peer(self) -> str:
        return f"peer {self.remote_id.hex()[:16]}"
