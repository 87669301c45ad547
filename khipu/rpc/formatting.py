"""Blocks, transactions, receipts and logs as geth's JSON-RPC shows them, field by field."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import rlp
from eth._utils.address import generate_contract_address
from eth.abc import BlockAPI, BlockHeaderAPI, LogAPI, ReceiptAPI, SignedTransactionAPI

GAS_PER_BLOB = 2**17
MIN_BLOB_BASE_FEE = 1

Json = dict[str, Any]


def quantity(value: int) -> str:
    """An integer as a JSON-RPC quantity: hex without leading zeros."""
    return hex(value)


def data(value: bytes) -> str:
    """Bytes as JSON-RPC data: 0x-prefixed hex of every byte."""
    return "0x" + bytes(value).hex()


def word(value: int) -> str:
    """An integer as a 32-byte data word (storage values, keys)."""
    return "0x" + value.to_bytes(32, "big").hex()


def header_field(header: BlockHeaderAPI, name: str) -> Any:
    """A fork-dependent header field, or None for headers of forks that lack it."""
    try:
        return getattr(header, name)
    except AttributeError:
        return None


def format_header(header: BlockHeaderAPI) -> Json:
    """geth's RPCMarshalHeader: later-fork fields only when the header has them."""
    fields: Json = {
        "number": quantity(header.block_number),
        "hash": data(header.hash),
        "parentHash": data(header.parent_hash),
        "nonce": data(header.nonce),
        "mixHash": data(header.mix_hash),
        "sha3Uncles": data(header.uncles_hash),
        "logsBloom": data(header.bloom.to_bytes(256, "big")),
        "stateRoot": data(header.state_root),
        "miner": data(header.coinbase),
        "difficulty": quantity(header.difficulty),
        "extraData": data(header.extra_data),
        "gasLimit": quantity(header.gas_limit),
        "gasUsed": quantity(header.gas_used),
        "timestamp": quantity(header.timestamp),
        "transactionsRoot": data(header.transaction_root),
        "receiptsRoot": data(header.receipt_root),
    }
    for json_name, name, as_data in _LATER_FIELDS:
        value = header_field(header, name)
        if value is not None:
            fields[json_name] = data(value) if as_data else quantity(value)
    return fields


_LATER_FIELDS = (
    ("baseFeePerGas", "base_fee_per_gas", False),
    ("withdrawalsRoot", "withdrawals_root", True),
    ("blobGasUsed", "blob_gas_used", False),
    ("excessBlobGas", "excess_blob_gas", False),
    ("parentBeaconBlockRoot", "parent_beacon_block_root", True),
    ("requestsHash", "requests_hash", True),
)


def format_block(block: BlockAPI, full: bool) -> Json:
    """geth's RPCMarshalBlock: the header, size, transactions (hashes or objects), uncles."""
    header = block.header
    fields = format_header(header)
    fields["size"] = quantity(len(rlp.encode(block)))
    if full:
        fields["transactions"] = [
            format_transaction(tx, header, index) for index, tx in enumerate(block.transactions)
        ]
    else:
        fields["transactions"] = [data(tx.hash) for tx in block.transactions]
    fields["uncles"] = [data(uncle.hash) for uncle in block.uncles]
    if header_field(header, "withdrawals_root") is not None:
        fields["withdrawals"] = [
            {
                "index": quantity(w.index),
                "validatorIndex": quantity(w.validator_index),
                "address": data(w.address),
                "amount": quantity(w.amount),
            }
            for w in block.withdrawals
        ]
    return fields


def effective_gas_price(tx: SignedTransactionAPI, base_fee: int | None) -> int:
    """What the sender paid per gas: the gas price, or min(max fee, base fee + tip)."""
    if tx.type_id is None or tx.type_id == 1 or base_fee is None:
        return int(tx.gas_price) if tx.type_id in (None, 1) else int(tx.max_fee_per_gas)
    return min(int(tx.max_fee_per_gas), base_fee + int(tx.max_priority_fee_per_gas))


def format_transaction(
    tx: SignedTransactionAPI, header: BlockHeaderAPI | None, index: int | None
) -> Json:
    """geth's RPCTransaction for a mined transaction (or a pending one when header is None)."""
    type_id = 0 if tx.type_id is None else tx.type_id
    base_fee = None if header is None else header_field(header, "base_fee_per_gas")
    fields: Json = {}
    if header is not None:
        fields["blockHash"] = data(header.hash)
        fields["blockNumber"] = quantity(header.block_number)
        fields["blockTimestamp"] = quantity(header.timestamp)
    fields["from"] = data(tx.sender)
    fields["gas"] = quantity(tx.gas)
    fields["gasPrice"] = quantity(effective_gas_price(tx, base_fee))
    if type_id >= 2:
        fields["maxFeePerGas"] = quantity(tx.max_fee_per_gas)
        fields["maxPriorityFeePerGas"] = quantity(tx.max_priority_fee_per_gas)
    if type_id == 3:
        fields["maxFeePerBlobGas"] = quantity(tx.max_fee_per_blob_gas)
    fields["hash"] = data(tx.hash)
    fields["input"] = data(tx.data)
    fields["nonce"] = quantity(tx.nonce)
    fields["to"] = data(tx.to) if tx.to else None
    fields["transactionIndex"] = None if index is None else quantity(index)
    if header is None:
        fields["blockHash"] = fields["blockNumber"] = fields["transactionIndex"] = None
    fields["value"] = quantity(tx.value)
    fields["type"] = quantity(type_id)
    if type_id == 0:
        v = int(tx.v)  # type: ignore[attr-defined]
        if v not in (27, 28):
            fields["chainId"] = quantity((v - 35) // 2)
        fields["v"] = quantity(v)
    else:
        fields["accessList"] = format_access_list(tx.access_list)
        fields["chainId"] = quantity(tx.chain_id)  # type: ignore[arg-type]
        if type_id == 3:
            fields["blobVersionedHashes"] = [data(h) for h in tx.blob_versioned_hashes]
        if type_id == 4:
            fields["authorizationList"] = [
                {
                    "chainId": quantity(auth.chain_id),
                    "address": data(auth.address),
                    "nonce": quantity(auth.nonce),
                    "yParity": quantity(auth.y_parity),
                    "r": quantity(auth.r),
                    "s": quantity(auth.s),
                }
                for auth in tx.authorization_list
            ]
        fields["v"] = quantity(tx.y_parity)
    fields["r"] = quantity(tx.r)
    fields["s"] = quantity(tx.s)
    if type_id != 0:
        fields["yParity"] = quantity(tx.y_parity)
    return fields


def format_access_list(access_list: Sequence[tuple[bytes, Sequence[int]]]) -> list[Json]:
    return [
        {"address": data(address), "storageKeys": [word(slot) for slot in slots]}
        for address, slots in access_list
    ]


def format_log(
    log: LogAPI, header: BlockHeaderAPI, tx_hash: bytes, tx_index: int, log_index: int
) -> Json:
    """geth's types.Log JSON for a log of a canonical block."""
    return {
        "address": data(log.address),
        "topics": [word(topic) for topic in log.topics],
        "data": data(log.data),
        "blockNumber": quantity(header.block_number),
        "transactionHash": data(tx_hash),
        "transactionIndex": quantity(tx_index),
        "blockHash": data(header.hash),
        "blockTimestamp": quantity(header.timestamp),
        "logIndex": quantity(log_index),
        "removed": False,
    }


def format_receipts(
    header: BlockHeaderAPI,
    transactions: Sequence[SignedTransactionAPI],
    receipts: Sequence[ReceiptAPI],
    blob_base_fee: int | None,
) -> list[Json]:
    """geth's MarshalReceipt for every transaction of a block, logs numbered across the block."""
    base_fee = header_field(header, "base_fee_per_gas")
    formatted = []
    previous_cumulative = 0
    log_index = 0
    for index, (tx, receipt) in enumerate(zip(transactions, receipts, strict=True)):
        gas_used = receipt.gas_used - previous_cumulative
        previous_cumulative = receipt.gas_used
        logs = []
        for log in receipt.logs:
            logs.append(format_log(log, header, tx.hash, index, log_index))
            log_index += 1
        fields: Json = {
            "blockHash": data(header.hash),
            "blockNumber": quantity(header.block_number),
            "contractAddress": None,
            "cumulativeGasUsed": quantity(receipt.gas_used),
            "effectiveGasPrice": quantity(effective_gas_price(tx, base_fee)),
            "from": data(tx.sender),
            "gasUsed": quantity(gas_used),
            "logs": logs,
            "logsBloom": data(receipt.bloom.to_bytes(256, "big")),
            "to": data(tx.to) if tx.to else None,
            "transactionHash": data(tx.hash),
            "transactionIndex": quantity(index),
            "type": quantity(0 if tx.type_id is None else tx.type_id),
        }
        if len(receipt.state_root) == 32:
            fields["root"] = data(receipt.state_root)
        else:
            fields["status"] = quantity(1 if receipt.state_root == b"\x01" else 0)
        if not tx.to:
            fields["contractAddress"] = data(generate_contract_address(tx.sender, tx.nonce))
        if tx.type_id == 3:
            fields["blobGasUsed"] = quantity(GAS_PER_BLOB * len(tx.blob_versioned_hashes))
            fields["blobGasPrice"] = quantity(blob_base_fee or 0)
        formatted.append(fields)
    return formatted


def fake_exponential(factor: int, numerator: int, denominator: int) -> int:
    """EIP-4844's integer approximation of factor * e ** (numerator / denominator)."""
    i = 1
    output = 0
    numerator_accum = factor * denominator
    while numerator_accum > 0:
        output += numerator_accum
        numerator_accum = (numerator_accum * numerator) // (denominator * i)
        i += 1
    return output // denominator
