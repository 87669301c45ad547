"""debug_traceTransaction, debug_traceBlockByNumber and debug_traceBlockByHash."""

from __future__ import annotations

from typing import Any

from eth.abc import BlockHeaderAPI

from khipu.rpc.context import RpcContext
from khipu.rpc.errors import InvalidParams, ServerError
from khipu.rpc.formatting import Json, data
from khipu.rpc.params import Params
from khipu.rpc.registry import rpc_method
from khipu.rpc.replay import replay_block
from khipu.rpc.tracers import CallTracer, StructLogger

TRACERS = ("callTracer",)


def _trace_config(params: Params, index: int) -> dict[str, Any]:
    config = params.raw(index, {})
    if not isinstance(config, dict):
        raise InvalidParams(f"invalid argument {index}: trace config must be an object")
    tracer = config.get("tracer")
    if tracer is not None and tracer not in TRACERS:
        raise ServerError(f"tracer {tracer!r} is not supported (use the default or callTracer)")
    return config


def _trace(
    ctx: RpcContext, header: BlockHeaderAPI, config: dict[str, Any], only: int | None
) -> list[Json]:
    tracer_config = config.get("tracerConfig") or {}
    tracers: dict[int, Any] = {}

    def hook_for(index: int) -> Any:
        if only is not None and index != only:
            return None
        tracer = (
            CallTracer(tracer_config)
            if config.get("tracer") == "callTracer"
            else StructLogger(config)
        )
        tracers[index] = tracer
        return tracer

    results = []
    for replayed in replay_block(ctx.view, header, hook_for, stop_after=only):
        if only is not None and replayed.index != only:
            continue
        tracer = tracers[replayed.index]
        if isinstance(tracer, CallTracer):
            result = tracer.result(replayed.computation, replayed.transaction, replayed.gas_used)
        else:
            result = tracer.result(replayed.computation, replayed.gas_used)
        results.append({"txHash": data(replayed.transaction.hash), "result": result})
    return results


@rpc_method("debug_traceTransaction")
def trace_transaction(ctx: RpcContext, params: Params) -> Json:
    location = ctx.view.locate_transaction(params.hash(0))
    if location is None:
        raise ServerError("transaction not found")
    traced = _trace(ctx, location.header, _trace_config(params, 1), location.index)
    return traced[0]["result"]  # type: ignore[no-any-return]


@rpc_method("debug_traceBlockByNumber")
def trace_block_by_number(ctx: RpcContext, params: Params) -> list[Json]:
    selector = params.block_number(0)
    header = ctx.view.find_header(selector)
    if header is None:
        raise ServerError(f"block #{selector.number} not found")
    return _trace(ctx, header, _trace_config(params, 1), None)


@rpc_method("debug_traceBlockByHash")
def trace_block_by_hash(ctx: RpcContext, params: Params) -> list[Json]:
    block_hash = params.hash(0)
    header = ctx.view.header_by_hash(block_hash)
    if header is None:
        raise ServerError(f"block 0x{block_hash.hex()} not found")
    return _trace(ctx, header, _trace_config(params, 1), None)
