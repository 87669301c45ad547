"""JSON-RPC 2.0 request handling: single and batch requests, errors as geth answers them."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from khipu.rpc.context import RpcContext
from khipu.rpc.errors import (
    INTERNAL_ERROR,
    INVALID_REQUEST,
    PARSE_ERROR,
    MethodNotFound,
    RpcError,
    ServerError,
)
from khipu.rpc.params import Params
from khipu.rpc.registry import Handler
from khipu.storage.chain_store import StoreUnavailable

log = logging.getLogger("khipu.rpc")

Json = dict[str, Any]

# Told of every call: method name (or "unknown"), whether it answered a result, seconds taken.
CallObserver = Callable[[str, bool, float], None]


def error_response(request_id: Any, error: RpcError) -> Json:
    return {"jsonrpc": "2.0", "id": request_id, "error": error.as_json()}


class Dispatcher:
    """Turns request bodies into response bodies using a method table."""

    def __init__(self, context: RpcContext, methods: dict[str, Handler]) -> None:
        self.context = context
        self.methods = methods
        self.observer: CallObserver | None = None  # the node's metrics, when it has them

    def handle_body(self, body: bytes) -> bytes | None:
        """The response body for a request body; None when only notifications were sent."""
        try:
            payload = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _encode(error_response(None, RpcError(PARSE_ERROR, "parse error")))
        if isinstance(payload, list):
            return self._handle_batch(payload)
        response = self.handle_call(payload)
        return None if response is None else _encode(response)

    def _handle_batch(self, batch: list[Any]) -> bytes | None:
        if not batch:
            return _encode(error_response(None, RpcError(INVALID_REQUEST, "empty batch")))
        limit = self.context.config.batch_request_limit
        if limit and len(batch) > limit:
            first_id = next((m.get("id") for m in batch if isinstance(m, dict) and "id" in m), None)
            error = RpcError(INVALID_REQUEST, "batch too large")
            return _encode([error_response(first_id, error)])
        responses = []
        size = 0
        for message in batch:
            response = self.handle_call(message)
            if response is None:
                continue
            size += len(_encode(response))
            if size > self.context.config.batch_response_max_size:
                error = RpcError(-32003, "response too large")
                response = error_response(response.get("id"), error)
            responses.append(response)
        return _encode(responses) if responses else None

    def handle_call(self, message: Any) -> Json | None:
        """The response object for one request object; None for a notification."""
        if not isinstance(message, dict) or not isinstance(message.get("method"), str):
            request_id = message.get("id") if isinstance(message, dict) else None
            return error_response(request_id, RpcError(INVALID_REQUEST, "invalid request"))
        is_notification = "id" not in message
        request_id = message.get("id")
        method = message["method"]
        started = time.perf_counter()
        try:
            result = self.call(method, message.get("params"))
        except RpcError as error:
            response = error_response(request_id, error)
        else:
            response = {"jsonrpc": "2.0", "id": request_id, "result": result}
        if self.observer is not None:
            known = method if method in self.methods else "unknown"
            self.observer(known, "result" in response, time.perf_counter() - started)
        return None if is_notification else response

    def call(self, method: str, params: Any) -> Any:
        """Run `method` with `params`. Raises RpcError; unexpected failures become -32603."""
        handler = self.methods.get(method)
        if handler is None:
            raise MethodNotFound(method)
        if params is None:
            params = []
        if not isinstance(params, list):
            raise RpcError(-32602, "non-array args")
        try:
            return handler(self.context, Params(params, method))
        except RpcError:
            raise
        except StoreUnavailable as exc:  # the writer is restarting: ask again in a moment
            raise ServerError(str(exc)) from exc
        except Exception as exc:  # a bug or a broken store: answer, log, keep serving
            log.exception("%s failed", method)
            raise RpcError(INTERNAL_ERROR, f"internal error: {type(exc).__name__}: {exc}") from exc


def _encode(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()
