"""JSON-RPC over WebSocket (RFC 6455) on the HTTP port, with eth_subscribe / eth_unsubscribe.

A GET with `Upgrade: websocket` turns the connection into a WebSocket; each text frame is a
JSON-RPC request (or batch) answered by the same dispatcher as HTTP. Subscriptions
(`newHeads`, `logs`) are served by a poller on the connection's own thread pair: the stored
head is checked every `POLL_SECONDS` and new headers or matching logs are pushed as
`eth_subscription` notifications. Only the standard library is used.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import socket
import struct
import threading
from typing import Any

from khipu.rpc.dispatch import Dispatcher, error_response
from khipu.rpc.errors import INVALID_PARAMS, RpcError

log = logging.getLogger("khipu.rpc.ws")

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
POLL_SECONDS = 0.5
MAX_FRAME = 16 * 1024 * 1024
OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x2, 0x8, 0x9, 0xA


def accept_key(client_key: str) -> str:
    """The Sec-WebSocket-Accept value for a client's Sec-WebSocket-Key."""
    digest = hashlib.sha1((client_key + GUID).encode()).digest()
    return base64.b64encode(digest).decode()


def encode_frame(payload: bytes, opcode: int = OP_TEXT) -> bytes:
    """One unmasked, final frame (servers never mask)."""
    header = bytes([0x80 | opcode])
    length = len(payload)
    if length < 126:
        header += bytes([length])
    elif length < 2**16:
        header += bytes([126]) + struct.pack("!H", length)
    else:
        header += bytes([127]) + struct.pack("!Q", length)
    return header + payload


class FrameError(Exception):
    """The peer sent something that is not a valid WebSocket frame."""


def read_frame(stream: Any) -> tuple[int, bytes]:
    """(opcode, payload) of the next complete message, joining continuation frames.

    Raises FrameError for oversized or malformed frames and EOFError when the peer hangs up.
    """
    message = b""
    message_opcode = None
    while True:
        head = _read_exact(stream, 2)
        final, opcode = head[0] & 0x80, head[0] & 0x0F
        masked, length = head[1] & 0x80, head[1] & 0x7F
        if length == 126:
            length = struct.unpack("!H", _read_exact(stream, 2))[0]
        elif length == 127:
            length = struct.unpack("!Q", _read_exact(stream, 8))[0]
        if length > MAX_FRAME:
            raise FrameError(f"frame of {length} bytes exceeds {MAX_FRAME}")
        if not masked:
            raise FrameError("client frames must be masked")
        mask = _read_exact(stream, 4)
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(_read_exact(stream, length)))
        if opcode >= 0x8:  # control frames arrive whole, between fragments
            return opcode, payload
        if message_opcode is None:
            message_opcode = opcode
        message += payload
        if final:
            return message_opcode, message


def _read_exact(stream: Any, count: int) -> bytes:
    data = stream.read(count)
    if data is None or len(data) < count:
        raise EOFError("connection closed")
    return bytes(data)


class WebSocketSession:
    """One upgraded connection: requests in, responses and notifications out."""

    def __init__(self, dispatcher: Dispatcher, rfile: Any, wfile: Any, connection: socket.socket):
        self.dispatcher = dispatcher
        self.rfile = rfile
        self.wfile = wfile
        self.connection = connection
        self.send_lock = threading.Lock()
        self.subscriptions: dict[str, dict[str, Any]] = {}
        self.closed = threading.Event()
        self._counter = 0

    def send(self, payload: Any, opcode: int = OP_TEXT) -> None:
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        with self.send_lock:
            self.wfile.write(encode_frame(raw, opcode))
            self.wfile.flush()

    def serve(self) -> None:
        """Read messages until the peer closes; a poller thread pushes subscriptions."""
        poller = threading.Thread(target=self._poll, name="rpc-ws-poll", daemon=True)
        poller.start()
        try:
            while not self.closed.is_set():
                opcode, payload = read_frame(self.rfile)
                if opcode == OP_CLOSE:
                    self.send(payload[:2], OP_CLOSE)
                    break
                if opcode == OP_PING:
                    self.send(payload, OP_PONG)
                elif opcode in (OP_TEXT, OP_BINARY):
                    self._answer(payload)
        except (EOFError, FrameError, ConnectionError, OSError) as exc:
            log.debug("websocket closed: %s", exc)
        finally:
            self.closed.set()

    def _answer(self, payload: bytes) -> None:
        try:
            message = json.loads(payload)
        except (json.JSONDecodeError, UnicodeDecodeError):
            self.send(self.dispatcher.handle_body(payload) or b"")
            return
        if isinstance(message, dict) and message.get("method") in (
            "eth_subscribe",
            "eth_unsubscribe",
        ):
            self.send(self._subscription_call(message))
            return
        response = self.dispatcher.handle_body(payload)
        if response is not None:
            self.send(response)

    def _subscription_call(self, message: dict[str, Any]) -> dict[str, Any]:
        params = message.get("params") or []
        request_id = message.get("id")
        try:
            if message["method"] == "eth_unsubscribe":
                found = bool(params) and self.subscriptions.pop(str(params[0]), None) is not None
                return {"jsonrpc": "2.0", "id": request_id, "result": found}
            return {"jsonrpc": "2.0", "id": request_id, "result": self._subscribe(params)}
        except RpcError as error:
            return error_response(request_id, error)

    def _subscribe(self, params: list[Any]) -> str:
        from khipu.rpc.eth_logs import decode_criteria

        kind = params[0] if params else None
        head = self.dispatcher.context.view.head().block_number
        if kind == "newHeads":
            criteria = None
        elif kind == "logs":
            try:
                criteria = decode_criteria(params[1] if len(params) > 1 else {})
            except ValueError as exc:
                raise RpcError(INVALID_PARAMS, f"invalid argument 1: {exc}") from None
        else:
            raise RpcError(INVALID_PARAMS, f"no such subscription: {kind!r} (newHeads, logs)")
        self._counter += 1
        subscription_id = hex((id(self) << 16) + self._counter)
        self.subscriptions[subscription_id] = {"kind": kind, "criteria": criteria, "next": head + 1}
        return subscription_id

    def _poll(self) -> None:
        from khipu.rpc.eth_logs import block_logs
        from khipu.rpc.formatting import format_header

        view = self.dispatcher.context.view
        while not self.closed.wait(POLL_SECONDS):
            if not self.subscriptions:
                continue
            try:
                head = view.head().block_number
                for subscription_id, sub in list(self.subscriptions.items()):
                    while sub["next"] <= head:
                        header = view.header_by_number(sub["next"])
                        sub["next"] += 1
                        if header is None:
                            continue
                        if sub["kind"] == "newHeads":
                            self._notify(subscription_id, format_header(header))
                        else:
                            for entry in block_logs(
                                self.dispatcher.context, header, sub["criteria"]
                            ):
                                self._notify(subscription_id, entry)
            except (ConnectionError, OSError):
                self.closed.set()
            except Exception:  # a broken read must not kill the connection's poller silently
                log.exception("websocket subscription poll failed")

    def _notify(self, subscription_id: str, result: Any) -> None:
        self.send(
            {
                "jsonrpc": "2.0",
                "method": "eth_subscription",
                "params": {"subscription": subscription_id, "result": result},
            }
        )
