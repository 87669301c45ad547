"""Fee methods: gas price and tip suggestions, base fees, blob base fee, fee history.

The tip suggestion follows geth's gas price oracle: the lowest few tips of each of the last
blocks, their 60th percentile, ignoring tips under 2 wei and capping at 500 gwei.
"""

from __future__ import annotations

import itertools
from typing import Any

from eth.abc import BlockHeaderAPI

from khipu.rpc.chain_view import blob_base_fee
from khipu.rpc.context import RpcContext
from khipu.rpc.errors import InvalidParams
from khipu.rpc.formatting import GAS_PER_BLOB, Json, effective_gas_price, header_field, quantity
from khipu.rpc.params import Params, decode_quantity
from khipu.rpc.registry import rpc_method

ORACLE_BLOCKS = 20
ORACLE_SAMPLES = 3
ORACLE_PERCENTILE = 60
IGNORE_PRICE = 2
MAX_PRICE = 500 * 10**9
MAX_FEE_HISTORY = 1024
ELASTICITY_MULTIPLIER = 2
BASE_FEE_CHANGE_DENOMINATOR = 8


def next_base_fee(parent: BlockHeaderAPI) -> int | None:
    """EIP-1559: the base fee of the block after `parent` (None before London)."""
    base_fee = header_field(parent, "base_fee_per_gas")
    if base_fee is None:
        return None
    target = parent.gas_limit // ELASTICITY_MULTIPLIER
    if parent.gas_used == target:
        return int(base_fee)
    if parent.gas_used > target:
        delta = base_fee * (parent.gas_used - target) // target // BASE_FEE_CHANGE_DENOMINATOR
        return int(base_fee + max(delta, 1))
    delta = base_fee * (target - parent.gas_used) // target // BASE_FEE_CHANGE_DENOMINATOR
    return int(base_fee - delta)


def _tip(tx: Any, base_fee: int | None) -> int:
    return effective_gas_price(tx, base_fee) - (base_fee or 0)


def suggest_tip(ctx: RpcContext) -> int:
    """geth's SuggestTipCap over the last blocks."""
    head = ctx.view.head()
    samples: list[int] = []
    for number in range(head.block_number, max(-1, head.block_number - ORACLE_BLOCKS), -1):
        header = ctx.view.header_by_number(number)
        if header is None:
            break
        base_fee = header_field(header, "base_fee_per_gas")
        tips = sorted(
            tip
            for tx in ctx.view.transactions(header)
            if tx.sender != header.coinbase and (tip := _tip(tx, base_fee)) >= IGNORE_PRICE
        )
        samples.extend(tips[:ORACLE_SAMPLES])
    if not samples:
        return 10**9 if head.block_number == 0 else IGNORE_PRICE
    samples.sort()
    return min(samples[(len(samples) - 1) * ORACLE_PERCENTILE // 100], MAX_PRICE)


@rpc_method("eth_maxPriorityFeePerGas")
def max_priority_fee(ctx: RpcContext, params: Params) -> str:
    return quantity(suggest_tip(ctx))


@rpc_method("eth_gasPrice")
def gas_price(ctx: RpcContext, params: Params) -> str:
    head = ctx.view.head()
    base_fee = header_field(head, "base_fee_per_gas") or 0
    return quantity(suggest_tip(ctx) + base_fee)


@rpc_method("eth_baseFee")
def base_fee(ctx: RpcContext, params: Params) -> str | None:
    """The base fee of the next block."""
    fee = next_base_fee(ctx.view.head())
    return None if fee is None else quantity(fee)


@rpc_method("eth_blobBaseFee")
def blob_fee(ctx: RpcContext, params: Params) -> str | None:
    """The blob base fee at the head (as geth answers)."""
    fee = blob_base_fee(ctx.view.rules, ctx.view.head())
    return None if fee is None else quantity(fee)


def _block_count(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and not value.startswith(("0x", "0X")) and value.isdigit():
        return int(value)
    return decode_quantity(value, 64)


@rpc_method("eth_feeHistory")
def fee_history(ctx: RpcContext, params: Params) -> Json:
    """Base fees, gas used ratios and tip percentiles of up to 1024 blocks ending at one."""
    count = min(int(params.decode(0, _block_count)), MAX_FEE_HISTORY)
    newest = ctx.view.require_header(params.block(1, default=None))
    percentiles = params.raw(2, [])
    if not isinstance(percentiles, list) or not all(
        isinstance(p, int | float) and not isinstance(p, bool) for p in percentiles
    ):
        raise InvalidParams("invalid argument 2: reward percentiles must be numbers")
    for previous, current in itertools.pairwise(percentiles):
        if current < previous or not 0 <= current <= 100:
            raise InvalidParams(
                f"invalid reward percentile: #{percentiles.index(current)}:{current}"
            )
    if percentiles and not 0 <= percentiles[0] <= 100:
        raise InvalidParams(f"invalid reward percentile: #0:{percentiles[0]}")
    oldest = max(0, newest.block_number - count + 1)
    headers = [ctx.view.header_by_number(n) for n in range(oldest, newest.block_number + 1)]
    if count == 0 or not headers:
        return {"oldestBlock": "0x0", "baseFeePerGas": [], "gasUsedRatio": []}
    base_fees: list[str] = []
    ratios: list[float] = []
    rewards: list[list[str]] = []
    blob_fees: list[str] = []
    blob_ratios: list[float] = []
    for header in headers:
        assert header is not None
        base_fees.append(quantity(header_field(header, "base_fee_per_gas") or 0))
        ratios.append(header.gas_used / header.gas_limit if header.gas_limit else 0.0)
        blob_fees.append(quantity(blob_base_fee(ctx.view.rules, header) or 0))
        blob_ratios.append(_blob_ratio(ctx, header))
        if percentiles:
            rewards.append([quantity(r) for r in _rewards(ctx, header, percentiles)])
    last = headers[-1]
    assert last is not None
    base_fees.append(quantity(next_base_fee(last) or 0))
    blob_fees.append(quantity(blob_base_fee(ctx.view.rules, last) or 0))
    result: Json = {
        "oldestBlock": quantity(oldest),
        "baseFeePerGas": base_fees,
        "gasUsedRatio": ratios,
        "baseFeePerBlobGas": blob_fees,
        "blobGasUsedRatio": blob_ratios,
    }
    if percentiles:
        result["reward"] = rewards
    return result


def _blob_ratio(ctx: RpcContext, header: BlockHeaderAPI) -> float:
    used = header_field(header, "blob_gas_used")
    if used is None:
        return 0.0
    fork = ctx.view.rules.fork_name(header.block_number, header.timestamp, header.difficulty)
    schedule = ctx.view.rules.blob_schedule(fork)
    if schedule is None or not schedule.max_blobs_per_block:
        return 0.0
    return float(used / (schedule.max_blobs_per_block * GAS_PER_BLOB))


def _rewards(ctx: RpcContext, header: BlockHeaderAPI, percentiles: list[float]) -> list[int]:
    """geth's processBlock: tips sorted ascending, weighted by each transaction's gas used."""
    transactions = ctx.view.transactions(header)
    if not transactions:
        return [0 for _ in percentiles]
    base_fee = header_field(header, "base_fee_per_gas")
    receipts = ctx.view.receipts(header)
    used = []
    previous = 0
    for receipt in receipts:
        used.append(receipt.gas_used - previous)
        previous = receipt.gas_used
    sorted_tips = sorted(
        ((_tip(tx, base_fee), gas) for tx, gas in zip(transactions, used, strict=True)),
        key=lambda pair: pair[0],
    )
    rewards = []
    index = 0
    sum_gas = sorted_tips[0][1]
    for percentile in percentiles:
        threshold = header.gas_used * percentile / 100
        while sum_gas < threshold and index < len(sorted_tips) - 1:
            index += 1
            sum_gas += sorted_tips[index][1]
        rewards.append(sorted_tips[index][0])
    return rewards
