"""eth_ methods about transactions and receipts, and the refusal of eth_sendRawTransaction."""

from __future__ import annotations

from eth.abc import BlockHeaderAPI

from khipu.rpc.chain_view import blob_base_fee
from khipu.rpc.context import RpcContext
from khipu.rpc.errors import ServerError
from khipu.rpc.formatting import Json, format_receipts, format_transaction
from khipu.rpc.params import Params
from khipu.rpc.registry import rpc_method


def _transaction_json(ctx: RpcContext, header: BlockHeaderAPI | None, index: int) -> Json | None:
    if header is None:
        return None
    transactions = ctx.view.transactions(header)
    if index >= len(transactions):
        return None
    return format_transaction(transactions[index], header, index)


@rpc_method("eth_getTransactionByHash")
def get_transaction_by_hash(ctx: RpcContext, params: Params) -> Json | None:
    location = ctx.view.locate_transaction(params.hash(0))
    if location is None:
        return None
    return _transaction_json(ctx, location.header, location.index)


@rpc_method("eth_getTransactionByBlockHashAndIndex")
def get_transaction_by_block_hash(ctx: RpcContext, params: Params) -> Json | None:
    header = ctx.view.header_by_hash(params.hash(0))
    return _transaction_json(ctx, header, params.quantity(1))


@rpc_method("eth_getTransactionByBlockNumberAndIndex")
def get_transaction_by_block_number(ctx: RpcContext, params: Params) -> Json | None:
    header = ctx.view.find_header(params.block_number(0))
    return _transaction_json(ctx, header, params.quantity(1))


def block_receipts(ctx: RpcContext, header: BlockHeaderAPI) -> list[Json]:
    """Every receipt of a block, formatted as geth does."""
    return format_receipts(
        header,
        ctx.view.transactions(header),
        ctx.view.receipts(header),
        blob_base_fee(ctx.view.rules, header),
    )


@rpc_method("eth_getTransactionReceipt")
def get_transaction_receipt(ctx: RpcContext, params: Params) -> Json | None:
    location = ctx.view.locate_transaction(params.hash(0))
    if location is None:
        return None
    return block_receipts(ctx, location.header)[location.index]


@rpc_method("eth_getBlockReceipts")
def get_block_receipts(ctx: RpcContext, params: Params) -> list[Json] | None:
    header = ctx.view.find_header(params.block(0, default=None))
    return None if header is None else block_receipts(ctx, header)


@rpc_method("eth_sendRawTransaction")
def send_raw_transaction(ctx: RpcContext, params: Params) -> None:
    raise ServerError("transactions are not accepted: khipu is a sync-only archive node")


@rpc_method("eth_sendTransaction")
def send_transaction(ctx: RpcContext, params: Params) -> None:
    raise ServerError("transactions are not accepted: khipu is a sync-only archive node")
