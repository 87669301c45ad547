"""geth's JSON for real mainnet blocks and receipts (Cancun block 19433903: legacy, dynamic-fee
and blob transactions, withdrawals), rebuilt from their fields and formatted again."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import rlp
from eth.vm.forks.cancun import CancunVM
from eth.vm.forks.cancun.blocks import CancunBlock, CancunBlockHeader
from eth.vm.forks.shanghai.withdrawals import Withdrawal

from khipu.rpc.formatting import fake_exponential, format_block, format_receipts
from tests.conftest import require_testdata

CANCUN_BLOB_FEE_FRACTION = 3338477


def _int(value: str) -> int:
    return int(value, 16)


def _bytes(value: str) -> bytes:
    return bytes.fromhex(value[2:])


def _transaction(fields: dict[str, Any]) -> Any:
    builder = CancunVM.get_transaction_builder()
    to = _bytes(fields["to"]) if fields["to"] else b""
    common = (_int(fields["gas"]), to, _int(fields["value"]), _bytes(fields["input"]))
    access_list = [
        (_bytes(e["address"]), [_int(k) for k in e["storageKeys"]])
        for e in fields.get("accessList", [])
    ]
    signature = (_int(fields["r"]), _int(fields["s"]))
    if fields["type"] == "0x0":
        return builder.new_transaction(
            _int(fields["nonce"]), _int(fields["gasPrice"]), *common, _int(fields["v"]), *signature
        )
    fees = (_int(fields["maxPriorityFeePerGas"]), _int(fields["maxFeePerGas"]))
    if fields["type"] == "0x2":
        tx = builder.new_dynamic_fee_transaction(
            1,
            _int(fields["nonce"]),
            *fees,
            *common,
            access_list,
            _int(fields["yParity"]),
            *signature,
        )
    else:
        tx = builder.new_blob_transaction(
            1, _int(fields["nonce"]), *fees, *common, access_list,
            _int(fields["maxFeePerBlobGas"]),
            [_bytes(h) for h in fields["blobVersionedHashes"]],
            _int(fields["yParity"]), *signature,
        )  # fmt: skip
    return builder.decode(tx.encode())  # this fork's typed class, as stored blocks give


def _block(fields: dict[str, Any]) -> CancunBlock:
    header = CancunBlockHeader(
        parent_hash=_bytes(fields["parentHash"]),
        uncles_hash=_bytes(fields["sha3Uncles"]),
        coinbase=_bytes(fields["miner"]),
        state_root=_bytes(fields["stateRoot"]),
        transaction_root=_bytes(fields["transactionsRoot"]),
        receipt_root=_bytes(fields["receiptsRoot"]),
        bloom=_int(fields["logsBloom"]),
        difficulty=_int(fields["difficulty"]),
        block_number=_int(fields["number"]),
        gas_limit=_int(fields["gasLimit"]),
        gas_used=_int(fields["gasUsed"]),
        timestamp=_int(fields["timestamp"]),
        extra_data=_bytes(fields["extraData"]),
        mix_hash=_bytes(fields["mixHash"]),
        nonce=_bytes(fields["nonce"]),
        base_fee_per_gas=_int(fields["baseFeePerGas"]),
        withdrawals_root=_bytes(fields["withdrawalsRoot"]),
        blob_gas_used=_int(fields["blobGasUsed"]),
        excess_blob_gas=_int(fields["excessBlobGas"]),
        parent_beacon_block_root=_bytes(fields["parentBeaconBlockRoot"]),
    )
    withdrawals = [
        Withdrawal(
            _int(w["index"]), _int(w["validatorIndex"]), _bytes(w["address"]), _int(w["amount"])
        )
        for w in fields["withdrawals"]
    ]
    transactions = [_transaction(tx) for tx in fields["transactions"]]
    return CancunBlock(header, transactions=transactions, uncles=[], withdrawals=withdrawals)


def test_cancun_block_formats_as_geth_does() -> None:
    path = require_testdata("mainnet", "rpc-json", "trin_block_19433903_value.json")
    expected = json.loads(path.read_text())["result"]
    block = _block(expected)
    assert "0x" + block.header.hash.hex() == expected["hash"]
    assert len(rlp.encode(block)) == _int(expected["size"])
    formatted = format_block(block, full=True)
    del expected["totalDifficulty"]  # dropped from geth's output after the merge
    for tx in formatted["transactions"]:
        del tx["blockTimestamp"]  # added to geth's output after this file was recorded
    assert formatted == expected


def test_cancun_receipts_format_as_geth_does() -> None:
    block_path = require_testdata("mainnet", "rpc-json", "trin_block_19433903_value.json")
    receipts_path = require_testdata("mainnet", "rpc-json", "trin_receipts-19433903.json")
    block = _block(json.loads(block_path.read_text())["result"])
    expected = json.loads(receipts_path.read_text())["result"]
    receipts = [
        SimpleNamespace(
            gas_used=_int(r["cumulativeGasUsed"]),
            bloom=_int(r["logsBloom"]),
            state_root=b"\x01" if r["status"] == "0x1" else b"",
            logs=[
                SimpleNamespace(
                    address=_bytes(log["address"]),
                    topics=[_int(t) for t in log["topics"]],
                    data=_bytes(log["data"]),
                )
                for log in r["logs"]
            ],
        )
        for r in expected
    ]
    blob_fee = fake_exponential(1, block.header.excess_blob_gas, CANCUN_BLOB_FEE_FRACTION)
    formatted = format_receipts(block.header, block.transactions, receipts, blob_fee)  # type: ignore[arg-type]
    for receipt in formatted:
        for log in receipt["logs"]:
            del log["blockTimestamp"]  # added to geth's output after this file was recorded
    assert formatted == expected
