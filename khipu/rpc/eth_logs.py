"""eth_getLogs and the polling filters (eth_newFilter, eth_newBlockFilter, ...)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth.abc import BlockHeaderAPI
from eth_bloom.bloom import BloomFilter

from khipu.rpc.context import Filter, RpcContext
from khipu.rpc.errors import LIMIT_EXCEEDED, InvalidParams, RpcError, ServerError
from khipu.rpc.formatting import Json, data, format_log
from khipu.rpc.params import (
    BlockSelector,
    HexError,
    Params,
    decode_address,
    decode_block_number,
    decode_hash,
)
from khipu.rpc.registry import rpc_method

MAX_TOPICS = 4
MAX_TERMS = 1000  # geth's limit of addresses, and of topics per position


@dataclass(frozen=True)
class LogCriteria:
    """What a log query asks for: a block hash or a range, addresses, topics per position."""

    block_hash: bytes | None
    from_block: BlockSelector
    to_block: BlockSelector
    addresses: tuple[bytes, ...]
    topics: tuple[tuple[bytes, ...], ...]  # () at a position matches anything

    def matches(self, address: bytes, topics: tuple[int, ...]) -> bool:
        if self.addresses and address not in self.addresses:
            return False
        if len(self.topics) > len(topics):
            return False
        for wanted, topic in zip(self.topics, topics, strict=False):
            if wanted and topic.to_bytes(32, "big") not in wanted:
                return False
        return True

    def bloom_may_match(self, bloom: int) -> bool:
        """False when the block's bloom proves no log of it can match."""
        filter_ = BloomFilter(bloom)
        if self.addresses and not any(address in filter_ for address in self.addresses):
            return False
        return all(not wanted or any(t in filter_ for t in wanted) for wanted in self.topics)


def decode_criteria(value: Any) -> LogCriteria:
    """geth's FilterCriteria. Raises InvalidParams / HexError."""
    if not isinstance(value, dict):
        raise HexError(
            "json: cannot unmarshal non-object into Go value of type filters.FilterCriteria"
        )
    block_hash = None
    if value.get("blockHash") is not None:
        if value.get("fromBlock") is not None or value.get("toBlock") is not None:
            raise InvalidParams(
                "cannot specify both BlockHash and FromBlock/ToBlock, choose one or the other"
            )
        block_hash = decode_hash(value["blockHash"])
    from_block = _range_end(value.get("fromBlock"))
    to_block = _range_end(value.get("toBlock"))
    raw_addresses = value.get("address")
    if raw_addresses is None:
        addresses: tuple[bytes, ...] = ()
    elif isinstance(raw_addresses, str):
        addresses = (decode_address(raw_addresses),)
    elif isinstance(raw_addresses, list):
        if len(raw_addresses) > MAX_TERMS:
            raise InvalidParams("exceed max addresses or topics per search position")
        addresses = tuple(decode_address(a) for a in raw_addresses)
    else:
        raise HexError("invalid addresses in query")
    raw_topics = value.get("topics") or []
    if not isinstance(raw_topics, list):
        raise HexError("invalid topics in query")
    if len(raw_topics) > MAX_TOPICS:
        raise InvalidParams("exceed max topics")
    topics: list[tuple[bytes, ...]] = []
    for position in raw_topics:
        if position is None:
            topics.append(())
        elif isinstance(position, str):
            topics.append((decode_hash(position),))
        elif isinstance(position, list):
            if len(position) > MAX_TERMS:
                raise InvalidParams("exceed max addresses or topics per search position")
            topics.append(tuple(decode_hash(t) for t in position if t is not None))
        else:
            raise HexError("invalid topic(s)")
    return LogCriteria(block_hash, from_block, to_block, addresses, tuple(topics))


def _range_end(value: Any) -> BlockSelector:
    return BlockSelector(tag="latest") if value is None else decode_block_number(value)


def block_logs(ctx: RpcContext, header: BlockHeaderAPI, criteria: LogCriteria) -> list[Json]:
    """The logs of one block that match, with their block-wide log index."""
    if not criteria.bloom_may_match(header.bloom):
        return []
    found = []
    log_index = 0
    transactions = None
    for tx_index, receipt in enumerate(ctx.view.receipts(header)):
        for log in receipt.logs:
            if criteria.matches(log.address, tuple(log.topics)):
                if transactions is None:
                    transactions = ctx.view.transactions(header)
                tx_hash = transactions[tx_index].hash
                found.append(format_log(log, header, tx_hash, tx_index, log_index))
            log_index += 1
    return found


def range_logs(ctx: RpcContext, criteria: LogCriteria, first: int, last: int) -> list[Json]:
    """Matching logs of canonical blocks first..last, within the configured limits."""
    if last - first + 1 > ctx.config.logs_block_range:
        raise RpcError(
            LIMIT_EXCEEDED, f"query exceeds max block range {ctx.config.logs_block_range}"
        )
    found: list[Json] = []
    for number in range(first, last + 1):
        header = ctx.view.header_by_number(number)
        if header is None:
            break
        found.extend(block_logs(ctx, header, criteria))
        if len(found) > ctx.config.logs_max_results:
            raise RpcError(
                LIMIT_EXCEEDED,
                f"query returned more than {ctx.config.logs_max_results} results",
            )
    return found


def query_logs(ctx: RpcContext, criteria: LogCriteria) -> list[Json]:
    """eth_getLogs for parsed criteria, with geth's errors for bad ranges."""
    if criteria.block_hash is not None:
        header = ctx.view.header_by_hash(criteria.block_hash)
        if header is None:
            raise ServerError("unknown block")
        return block_logs(ctx, header, criteria)
    head = ctx.view.head().block_number
    first = _resolve(ctx, criteria.from_block, head)
    last = _resolve(ctx, criteria.to_block, head)
    if first > head or last > head:
        raise InvalidParams("block range extends beyond current head block")
    if first > last:
        raise InvalidParams("invalid block range params")
    return range_logs(ctx, criteria, first, last)


def _resolve(ctx: RpcContext, selector: BlockSelector, head: int) -> int:
    if selector.number is not None:
        return selector.number
    return 0 if selector.tag == "earliest" else head


@rpc_method("eth_getLogs")
def get_logs(ctx: RpcContext, params: Params) -> list[Json]:
    return query_logs(ctx, params.decode(0, decode_criteria))


@rpc_method("eth_newFilter")
def new_filter(ctx: RpcContext, params: Params) -> str:
    criteria: LogCriteria = params.decode(0, decode_criteria)
    head = ctx.view.head().block_number
    return ctx.filters.install(Filter("logs", criteria, head + 1))


@rpc_method("eth_newBlockFilter")
def new_block_filter(ctx: RpcContext, params: Params) -> str:
    return ctx.filters.install(Filter("blocks", None, ctx.view.head().block_number + 1))


def _filter(ctx: RpcContext, params: Params) -> tuple[str, Filter]:
    filter_id = params.required(0)
    flt = ctx.filters.get(filter_id) if isinstance(filter_id, str) else None
    if flt is None:
        raise ServerError("filter not found")
    return filter_id, flt


@rpc_method("eth_getFilterChanges")
def get_filter_changes(ctx: RpcContext, params: Params) -> list[Any]:
    """What happened since the last poll: new block hashes, or new matching logs."""
    _, flt = _filter(ctx, params)
    head = ctx.view.head().block_number
    first, flt.next_block = flt.next_block, head + 1
    if flt.kind == "blocks":
        headers = (ctx.view.header_by_number(n) for n in range(first, head + 1))
        return [data(h.hash) for h in headers if h is not None]
    criteria: LogCriteria = flt.criteria
    last = head if criteria.to_block.number is None else min(head, criteria.to_block.number)
    if criteria.from_block.number is not None:
        first = max(first, criteria.from_block.number)
    return range_logs(ctx, criteria, first, last) if first <= last else []


@rpc_method("eth_getFilterLogs")
def get_filter_logs(ctx: RpcContext, params: Params) -> list[Json]:
    _, flt = _filter(ctx, params)
    if flt.kind != "logs":
        raise ServerError("filter not found")
    return query_logs(ctx, flt.criteria)


@rpc_method("eth_uninstallFilter")
def uninstall_filter(ctx: RpcContext, params: Params) -> bool:
    filter_id = params.required(0)
    return isinstance(filter_id, str) and ctx.filters.remove(filter_id)
