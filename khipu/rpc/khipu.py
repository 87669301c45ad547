"""The node's own namespace: health of its actors and sync progress (`khipu status`)."""

from __future__ import annotations

from typing import Any

from khipu.rpc.context import RpcContext
from khipu.rpc.formatting import data
from khipu.rpc.params import Params
from khipu.rpc.registry import rpc_method


@rpc_method("khipu_health")
def health(ctx: RpcContext, params: Params) -> dict[str, Any]:
    """The health snapshot from the node's monitor (or the RPC server's own when alone)."""
    return ctx.health()


@rpc_method("khipu_syncStatus")
def sync_status(ctx: RpcContext, params: Params) -> dict[str, Any]:
    """Where the stored chain stands, plus what the sync service reports, if wired."""
    head = ctx.view.head()
    status: dict[str, Any] = {
        "head": {
            "number": head.block_number,
            "hash": data(head.hash),
            "stateRoot": data(head.state_root),
            "timestamp": head.timestamp,
        },
        "syncing": False,
    }
    if ctx.sync_status is not None:
        reported = ctx.sync_status()
        status.update(reported)
        highest = reported.get("highest_block")
        status["syncing"] = isinstance(highest, int) and highest > head.block_number
    return status
