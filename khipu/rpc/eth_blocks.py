"""eth_ methods about blocks: numbers, blocks by number or hash, counts, uncles, chain id."""

from __future__ import annotations

from typing import Any

import rlp
from eth.abc import BlockHeaderAPI

from khipu.rpc.context import RpcContext
from khipu.rpc.formatting import Json, format_block, format_header, quantity
from khipu.rpc.params import Params
from khipu.rpc.registry import rpc_method


@rpc_method("eth_blockNumber")
def block_number(ctx: RpcContext, params: Params) -> str:
    return quantity(ctx.view.head().block_number)


@rpc_method("eth_chainId")
def chain_id(ctx: RpcContext, params: Params) -> str:
    return quantity(ctx.view.chain_id)


@rpc_method("eth_syncing")
def syncing(ctx: RpcContext, params: Params) -> Any:
    """False once caught up; geth's progress object while the sync service reports a gap."""
    if ctx.sync_status is not None:
        status = ctx.sync_status()
        highest = status.get("highest_block")
        current = ctx.view.head().block_number
        if isinstance(highest, int) and highest > current:
            return {
                "startingBlock": quantity(int(status.get("starting_block", 0))),
                "currentBlock": quantity(current),
                "highestBlock": quantity(highest),
            }
    return False


def _header_by_number_param(ctx: RpcContext, params: Params) -> BlockHeaderAPI | None:
    return ctx.view.find_header(params.block_number(0))


def _header_by_hash_param(ctx: RpcContext, params: Params) -> BlockHeaderAPI | None:
    return ctx.view.header_by_hash(params.hash(0))


def _block_json(ctx: RpcContext, header: BlockHeaderAPI | None, full: bool) -> Json | None:
    if header is None:
        return None
    return format_block(ctx.view.block(header), full)


@rpc_method("eth_getBlockByNumber")
def get_block_by_number(ctx: RpcContext, params: Params) -> Json | None:
    header = _header_by_number_param(ctx, params)
    return _block_json(ctx, header, params.boolean(1, default=False))


@rpc_method("eth_getBlockByHash")
def get_block_by_hash(ctx: RpcContext, params: Params) -> Json | None:
    header = _header_by_hash_param(ctx, params)
    return _block_json(ctx, header, params.boolean(1, default=False))


@rpc_method("eth_getBlockTransactionCountByNumber")
def transaction_count_by_number(ctx: RpcContext, params: Params) -> str | None:
    header = _header_by_number_param(ctx, params)
    return None if header is None else quantity(len(ctx.view.transactions(header)))


@rpc_method("eth_getBlockTransactionCountByHash")
def transaction_count_by_hash(ctx: RpcContext, params: Params) -> str | None:
    header = _header_by_hash_param(ctx, params)
    return None if header is None else quantity(len(ctx.view.transactions(header)))


@rpc_method("eth_getUncleCountByBlockNumber")
def uncle_count_by_number(ctx: RpcContext, params: Params) -> str | None:
    header = _header_by_number_param(ctx, params)
    return None if header is None else quantity(len(ctx.view.uncles(header)))


@rpc_method("eth_getUncleCountByBlockHash")
def uncle_count_by_hash(ctx: RpcContext, params: Params) -> str | None:
    header = _header_by_hash_param(ctx, params)
    return None if header is None else quantity(len(ctx.view.uncles(header)))


def _uncle_json(ctx: RpcContext, header: BlockHeaderAPI | None, index: int) -> Json | None:
    if header is None:
        return None
    uncles = ctx.view.uncles(header)
    if index >= len(uncles):
        return None
    uncle = uncles[index]
    fields = format_header(uncle)
    # geth marshals an uncle as a block of its own with no transactions and no uncles.
    fields["size"] = quantity(len(rlp.encode([uncle, [], []])))
    fields["uncles"] = []
    return fields


@rpc_method("eth_getUncleByBlockNumberAndIndex")
def uncle_by_number(ctx: RpcContext, params: Params) -> Json | None:
    return _uncle_json(ctx, _header_by_number_param(ctx, params), params.quantity(1))


@rpc_method("eth_getUncleByBlockHashAndIndex")
def uncle_by_hash(ctx: RpcContext, params: Params) -> Json | None:
    return _uncle_json(ctx, _header_by_hash_param(ctx, params), params.quantity(1))


@rpc_method("eth_capabilities")
def capabilities(ctx: RpcContext, params: Params) -> Json:
    """What this node can answer: everything from genesis (an archive node deletes nothing)."""
    head = ctx.view.head()
    whole_history = {"disabled": False, "oldestBlock": "0x0"}
    return {
        "head": {"number": quantity(head.block_number), "hash": "0x" + head.hash.hex()},
        "state": dict(whole_history),
        "tx": dict(whole_history),
        "logs": {**whole_history, "deleteStrategy": {"type": "none"}},
        "receipts": dict(whole_history),
        "blocks": dict(whole_history),
        "stateproofs": dict(whole_history),
    }
