"""JSON-RPC framing: parse errors, invalid requests, unknown methods, batches and their limits."""

from __future__ import annotations

import json
from typing import Any

from khipu.rpc.config import RpcConfig
from khipu.rpc.context import RpcContext
from khipu.rpc.dispatch import Dispatcher
from khipu.rpc.errors import InvalidParams
from khipu.rpc.params import Params


def _echo(ctx: RpcContext, params: Params) -> Any:
    return params.values


def _bad(ctx: RpcContext, params: Params) -> Any:
    raise InvalidParams("invalid argument 0: nope")


def _boom(ctx: RpcContext, params: Params) -> Any:
    raise KeyError("broken store")


def dispatcher(**config: Any) -> Dispatcher:
    context = RpcContext(None, RpcConfig(**config))  # type: ignore[arg-type]  # no chain needed
    return Dispatcher(context, {"test_echo": _echo, "test_bad": _bad, "test_boom": _boom})


def answer(d: Dispatcher, body: Any) -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = d.handle_body(raw)
    return None if response is None else json.loads(response)


def test_parse_error() -> None:
    reply = answer(dispatcher(), b'{"jsonrpc": "2.0", "method": ')
    assert reply == {
        "jsonrpc": "2.0",
        "id": None,
        "error": {"code": -32700, "message": "parse error"},
    }


def test_invalid_request_and_unknown_method() -> None:
    d = dispatcher()
    assert answer(d, {"jsonrpc": "2.0", "id": 7})["error"]["code"] == -32600
    reply = answer(d, {"jsonrpc": "2.0", "id": 8, "method": "eth_nothing"})
    assert reply["id"] == 8 and reply["error"]["code"] == -32601
    assert "eth_nothing" in reply["error"]["message"]


def test_params_must_be_an_array() -> None:
    reply = answer(dispatcher(), {"jsonrpc": "2.0", "id": 1, "method": "test_echo", "params": {}})
    assert reply["error"] == {"code": -32602, "message": "non-array args"}


def test_errors_keep_their_code_and_unexpected_failures_are_internal() -> None:
    d = dispatcher()
    bad = answer(d, {"jsonrpc": "2.0", "id": 1, "method": "test_bad"})
    assert bad["error"] == {"code": -32602, "message": "invalid argument 0: nope"}
    boom = answer(d, {"jsonrpc": "2.0", "id": 2, "method": "test_boom"})
    assert boom["error"]["code"] == -32603 and "broken store" in boom["error"]["message"]


def test_batch_answers_in_order_and_skips_notifications() -> None:
    batch = [
        {"jsonrpc": "2.0", "id": 1, "method": "test_echo", "params": ["a"]},
        {"jsonrpc": "2.0", "method": "test_echo", "params": ["notification"]},
        {"jsonrpc": "2.0", "id": 3, "method": "test_echo", "params": ["c"]},
        5,
    ]
    reply = answer(dispatcher(), batch)
    assert [r["id"] for r in reply] == [1, 3, None]
    assert reply[0]["result"] == ["a"] and reply[1]["result"] == ["c"]
    assert reply[2]["error"]["code"] == -32600


def test_notification_alone_gets_no_body() -> None:
    assert answer(dispatcher(), {"jsonrpc": "2.0", "method": "test_echo"}) is None


def test_empty_and_oversized_batches() -> None:
    assert answer(dispatcher(), [])["error"] == {"code": -32600, "message": "empty batch"}
    d = dispatcher(batch_request_limit=2)
    batch = [{"jsonrpc": "2.0", "id": i, "method": "test_echo"} for i in range(3)]
    reply = answer(d, batch)
    assert reply == [
        {"jsonrpc": "2.0", "id": 0, "error": {"code": -32600, "message": "batch too large"}}
    ]
