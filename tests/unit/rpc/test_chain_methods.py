"""Methods over a real chain (rpc-compat-prague), checked against the store read directly."""

from __future__ import annotations

import rlp
from eth_hash.auto import keccak
from eth_typing import Address
from trie.hexary import HexaryTrie

from khipu.chain.chain import open_chain
from khipu.chain.rules import ChainRules
from khipu.storage.chain_store import ChainStore
from tests.unit.rpc.conftest import Client

CONTRACT = "0x7dcd17433742f4c0ca53122ab541d0ba67fc27df"  # emits logs, keeps a counter in slot 0
REVERTER = "0x0ee3ab1371c93e7c0c281cc0c2107cdebc8b1930"  # reverts with Error(string) / Panic


def test_balances_at_every_block_match_the_state(
    rpc: Client, chain_store: tuple[ChainStore, ChainRules]
) -> None:
    store, rules = chain_store
    chain = open_chain(rules, store.db)
    seen = set()
    for number in (0, 5, 20, 44, 45):
        header = store.chaindb.get_canonical_block_header_by_number(number)
        expected = chain.get_vm(header).state.get_balance(Address(bytes.fromhex(CONTRACT[2:])))
        assert rpc.call("eth_getBalance", CONTRACT, hex(number)) == hex(expected)
        by_hash = rpc.call("eth_getBalance", CONTRACT, {"blockHash": "0x" + header.hash.hex()})
        assert by_hash == hex(expected)
        seen.add(expected)
    assert len(seen) > 1, "the balance should change over the chain"


def test_unknown_block_is_a_server_error(rpc: Client) -> None:
    error = rpc.error("eth_getBalance", CONTRACT, "0x3e8")
    assert error.code == -32000 and error.message == "header not found"
    assert rpc.call("eth_getBlockByNumber", "0x3e8", False) is None


def test_block_by_number_and_hash_agree_and_name_their_transactions(rpc: Client) -> None:
    block = rpc.call("eth_getBlockByNumber", "0x2", True)
    assert block == rpc.call("eth_getBlockByHash", block["hash"], True)
    hashes = rpc.call("eth_getBlockByNumber", "0x2", False)["transactions"]
    assert hashes == [tx["hash"] for tx in block["transactions"]]
    assert rpc.call("eth_getBlockTransactionCountByNumber", "0x2") == hex(len(hashes))
    tx = rpc.call("eth_getTransactionByHash", hashes[-1])
    assert tx == block["transactions"][-1]
    assert rpc.call("eth_getTransactionByBlockNumberAndIndex", "0x2", tx["transactionIndex"]) == tx


def test_receipts_cumulate_gas_and_number_logs_across_the_block(rpc: Client) -> None:
    receipts = rpc.call("eth_getBlockReceipts", "0x2")
    cumulative = 0
    log_indexes = []
    for receipt in receipts:
        cumulative += int(receipt["gasUsed"], 16)
        assert int(receipt["cumulativeGasUsed"], 16) == cumulative
        log_indexes += [int(log["logIndex"], 16) for log in receipt["logs"]]
        assert rpc.call("eth_getTransactionReceipt", receipt["transactionHash"]) == receipt
    assert log_indexes == list(range(len(log_indexes))) and log_indexes
    header = rpc.call("eth_getBlockByNumber", "0x2", False)
    assert cumulative == int(header["gasUsed"], 16)


def test_get_logs_by_range_equals_per_block_queries(rpc: Client) -> None:
    ranged = rpc.call("eth_getLogs", {"fromBlock": "0x1", "toBlock": "0x8", "address": CONTRACT})
    assert ranged and all(log["address"] == CONTRACT for log in ranged)
    per_block = []
    for number in range(1, 9):
        block_hash = rpc.call("eth_getBlockByNumber", hex(number), False)["hash"]
        per_block += rpc.call("eth_getLogs", {"blockHash": block_hash, "address": [CONTRACT]})
    assert ranged == per_block
    topic = ranged[0]["topics"][1]
    only = rpc.call("eth_getLogs", {"fromBlock": "0x1", "toBlock": "0x8", "topics": [None, topic]})
    assert only == [log for log in ranged if log["topics"][1] == topic]


def test_get_logs_limits_and_bad_ranges(rpc: Client) -> None:
    assert rpc.error("eth_getLogs", {"fromBlock": "0x0", "toBlock": "0x20"}).code == -32005
    assert rpc.error("eth_getLogs", {"fromBlock": "0x5", "toBlock": "0x2"}).code == -32602
    assert rpc.error("eth_getLogs", {"fromBlock": "0x1", "toBlock": "0x99"}).code == -32602


def test_block_filter_reports_nothing_new_on_a_still_chain_and_uninstalls(rpc: Client) -> None:
    filter_id = rpc.call("eth_newBlockFilter")
    assert rpc.call("eth_getFilterChanges", filter_id) == []
    log_filter = rpc.call("eth_newFilter", {"fromBlock": "0x1", "toBlock": "0x8"})
    assert rpc.call("eth_getFilterLogs", log_filter) == rpc.call(
        "eth_getLogs", {"fromBlock": "0x1", "toBlock": "0x8"}
    )
    assert rpc.call("eth_uninstallFilter", filter_id) is True
    assert rpc.call("eth_uninstallFilter", filter_id) is False
    assert rpc.error("eth_getFilterChanges", filter_id).message == "filter not found"


def test_proof_verifies_against_the_state_root(rpc: Client) -> None:
    block = rpc.call("eth_getBlockByNumber", "latest", False)
    proof = rpc.call("eth_getProof", CONTRACT, ["0x0"], "latest")
    nodes = [bytes.fromhex(node[2:]) for node in proof["accountProof"]]
    state_root = bytes.fromhex(block["stateRoot"][2:])
    account = HexaryTrie.get_from_proof(
        state_root, keccak(bytes.fromhex(CONTRACT[2:])), [rlp.decode(n) for n in nodes]
    )
    _nonce, balance, storage_root, _code_hash = rlp.decode(account)
    assert hex(int.from_bytes(balance, "big")) == proof["balance"]
    assert "0x" + storage_root.hex() == proof["storageHash"]
    slot = proof["storageProof"][0]
    value = HexaryTrie.get_from_proof(
        storage_root,
        keccak(b"\x00" * 32),
        [rlp.decode(bytes.fromhex(n[2:])) for n in slot["proof"]],
    )
    assert hex(rlp.decode(value, sedes=rlp.sedes.big_endian_int)) == slot["value"]
    assert slot["value"] == hex(int(rpc.call("eth_getStorageAt", CONTRACT, "0x0", "latest"), 16))


def test_call_reverts_with_code_3_and_the_reason(rpc: Client) -> None:
    call = {"from": "0x" + "00" * 20, "to": REVERTER, "gas": "0x186a0", "input": "0x01"}
    error = rpc.error("eth_call", call, "latest")
    assert error.code == 3 and error.message == "execution reverted: user error"
    assert isinstance(error.data, str) and error.data.startswith("0x08c379a0")


def test_call_sees_state_overrides(rpc: Client) -> None:
    # Code that returns the caller's balance: BALANCE(CALLER) MSTORE RETURN.
    code = "0x" + "33" + "31" + "600052" + "60206000f3"
    target = "0x" + "c0" * 20
    caller = "0x" + "c1" * 20
    overrides = {target: {"code": code}, caller: {"balance": "0x1234"}}
    result = rpc.call("eth_call", {"from": caller, "to": target}, "latest", overrides)
    assert int(result, 16) == 0x1234


def test_estimate_gas_is_enough_for_the_call(rpc: Client) -> None:
    call = {"from": "0x" + "01" * 20, "to": CONTRACT, "input": "0xff01"}
    estimate = int(rpc.call("eth_estimateGas", call), 16)
    assert estimate > 21000
    rpc.call("eth_call", {**call, "gas": hex(estimate)}, "latest")  # must not fail
    too_little = rpc.error("eth_call", {**call, "gas": hex(21000 + 10)}, "latest")
    assert too_little.code == -32000


def test_raw_block_decodes_to_the_block_hash(rpc: Client) -> None:
    raw = bytes.fromhex(rpc.call("debug_getRawBlock", "0x3")[2:])
    header = rlp.decode(raw)[0]
    assert (
        "0x" + keccak(rlp.encode(header)).hex()
        == rpc.call("eth_getBlockByNumber", "0x3", False)["hash"]
    )
    assert rpc.call("debug_getRawHeader", "0x3") == "0x" + rlp.encode(header).hex()


def test_transactions_are_refused(rpc: Client) -> None:
    error = rpc.error("eth_sendRawTransaction", "0x00")
    assert error.code == -32000 and "not accepted" in error.message


def test_trace_transaction_gas_matches_the_receipt(rpc: Client) -> None:
    receipts = rpc.call("eth_getBlockReceipts", "0x4")
    for receipt in receipts:
        trace = rpc.call("debug_traceTransaction", receipt["transactionHash"])
        assert trace["gas"] == int(receipt["gasUsed"], 16)
        assert trace["failed"] == (receipt.get("status") == "0x0")
        calls = rpc.call(
            "debug_traceTransaction", receipt["transactionHash"], {"tracer": "callTracer"}
        )
        assert calls["gasUsed"] == receipt["gasUsed"] and calls["from"] == receipt["from"]


def test_trace_call_sees_overrides_and_reports_the_call_tree(rpc: Client) -> None:
    # Contract that CALLs 0xc2.. with no value, then returns: shows a nested frame.
    caller_code = "0x" + "6000600060006000600073" + "c2" * 20 + "61fffff1" + "00"
    overrides = {"0x" + "c1" * 20: {"code": caller_code}}
    call = {"from": "0x" + "c0" * 20, "to": "0x" + "c1" * 20, "gas": "0x30000"}
    frames = rpc.call(
        "debug_traceCall", call, "latest", {"tracer": "callTracer", "stateOverrides": overrides}
    )
    assert frames["type"] == "CALL" and frames["to"] == "0x" + "c1" * 20
    assert [c["to"] for c in frames["calls"]] == ["0x" + "c2" * 20]
    steps = rpc.call("debug_traceCall", call, "latest", {"stateOverrides": overrides})
    assert steps["structLogs"][-1]["op"] == "STOP" and not steps["failed"]
    assert any(step["op"] == "CALL" for step in steps["structLogs"])


def test_simulate_chains_blocks_and_carries_state(rpc: Client) -> None:
    sender, receiver = "0x" + "c0" * 20, "0x" + "c1" * 20
    fees = {"gas": "0x5208", "maxFeePerGas": "0x10000000"}
    transfer = {"from": sender, "to": receiver, "value": "0x64", **fees}
    blocks = rpc.call(
        "eth_simulateV1",
        {
            "blockStateCalls": [
                {"stateOverrides": {sender: {"balance": "0x1" + "0" * 18}}, "calls": [transfer]},
                {"calls": [transfer, transfer]},
            ],
            "validation": True,
        },
        "latest",
    )
    head = rpc.call("eth_blockNumber")
    assert [b["number"] for b in blocks] == [hex(int(head, 16) + 1), hex(int(head, 16) + 2)]
    assert blocks[1]["parentHash"] == blocks[0]["hash"]
    assert [len(b["calls"]) for b in blocks] == [1, 2]
    assert all(c["status"] == "0x1" for b in blocks for c in b["calls"])
    error = rpc.error(
        "eth_simulateV1",
        {"blockStateCalls": [{"blockOverrides": {"number": "0x1"}}]},
        "latest",
    )
    assert error.code == -38020
    assert rpc.call("eth_blockNumber") == head  # nothing was stored


def test_accounts_is_empty_as_on_a_node_without_keys(rpc: Client) -> None:
    assert rpc.call("eth_accounts") == []
