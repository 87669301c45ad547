"""debug_traceTransaction, debug_traceBlockByNumber and debug_traceBlockByHash."""

from __future__ import annotations

from typing import Any

from eth.abc import BlockHeaderAPI

from khipu.rpc.context import RpcContext
from khipu.rpc.errors import InvalidParams, ServerError
from khipu.rpc.formatting import Json, data
from khipu.rpc.params import HexError, Params
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


@rpc_method("debug_traceCall")
def trace_call(ctx: RpcContext, params: Params) -> Json:
    """Trace a call at a block, as eth_call runs it (state and block overrides in the config)."""
    from types import SimpleNamespace

    from khipu.rpc.call_execution import (
        CallEnvironment,
        CallExecutor,
        CallRequest,
        apply_block_overrides,
        decode_call,
        decode_state_overrides,
    )
    from khipu.rpc.evm_hooks import ExecutionCancelled, ExecutionTimeout

    request: CallRequest = params.decode(0, decode_call)
    config = _trace_config(params, 2)
    header = ctx.view.require_header(params.block(1))
    header = apply_block_overrides(header, config.get("blockOverrides"))
    try:
        overrides = decode_state_overrides(config.get("stateOverrides"))
    except HexError as exc:
        raise InvalidParams(f"invalid argument 2: {exc}") from None
    executor = CallExecutor(
        ctx.view,
        CallEnvironment(header, overrides),
        ctx.config.gas_cap,
        ctx.config.evm_timeout,
        ctx.stopping,
    )
    is_call_tracer = config.get("tracer") == "callTracer"
    tracer: Any = (
        CallTracer(config.get("tracerConfig") or {}) if is_call_tracer else StructLogger(config)
    )
    gas = executor.default_gas(request)
    try:
        outcome = executor.run(request, gas, tracer)
    except (ExecutionTimeout, ExecutionCancelled) as exc:
        raise ServerError(str(exc)) from None
    if isinstance(tracer, CallTracer):
        tx = SimpleNamespace(to=request.to, sender=request.sender, gas=gas)
        return tracer.result(outcome.computation, tx, outcome.gas_used)
    return tracer.result(outcome.computation, outcome.gas_used)  # type: ignore[no-any-return]
