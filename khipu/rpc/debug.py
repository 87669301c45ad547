"""debug_ methods: raw (consensus-encoded) headers, blocks, transactions and receipts."""

from __future__ import annotations

import rlp
from eth.abc import BlockHeaderAPI

from khipu.rpc.context import RpcContext
from khipu.rpc.errors import ServerError
from khipu.rpc.formatting import data
from khipu.rpc.params import Params
from khipu.rpc.registry import rpc_method


def _header(ctx: RpcContext, params: Params) -> BlockHeaderAPI:
    selector = params.block(0, default=None)
    header = ctx.view.find_header(selector)
    if header is None:
        what = f"0x{selector.block_hash.hex()}" if selector.block_hash else f"#{selector.number}"
        raise ServerError(f"header {what} not found")
    return header


@rpc_method("debug_getRawHeader")
def get_raw_header(ctx: RpcContext, params: Params) -> str:
    return data(rlp.encode(_header(ctx, params)))


@rpc_method("debug_getRawBlock")
def get_raw_block(ctx: RpcContext, params: Params) -> str:
    return data(rlp.encode(ctx.view.block(_header(ctx, params))))


@rpc_method("debug_getRawReceipts")
def get_raw_receipts(ctx: RpcContext, params: Params) -> list[str]:
    return [data(receipt.encode()) for receipt in ctx.view.receipts(_header(ctx, params))]


@rpc_method("debug_getRawTransaction")
def get_raw_transaction(ctx: RpcContext, params: Params) -> str | None:
    location = ctx.view.locate_transaction(params.hash(0))
    if location is None:
        return None
    return data(ctx.view.transactions(location.header)[location.index].encode())
