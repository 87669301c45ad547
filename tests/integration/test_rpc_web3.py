"""web3.py, unchanged, against khipu's JSON-RPC over a generated chain with tokens and logs."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
from web3 import Web3

from khipu.chain.config import Genesis
from khipu.chain.import_job import import_files
from khipu.chain.progress import ImportProgress
from khipu.chain.rules import ChainRules
from khipu.devnet.generate import GeneratedChain, generate_chain
from khipu.devnet.genesis import DEV_BALANCE, DEV_CHAIN_ID, dev_account
from khipu.rpc.config import RpcConfig
from khipu.rpc.server import start_rpc
from khipu.storage.chain_store import ChainStore

BLOCKS, TXS = 4, 20
TOKEN_ABI: list[dict[str, Any]] = [
    {
        "name": "balanceOf",
        "type": "function",
        "stateMutability": "view",
        "inputs": [{"name": "holder", "type": "address"}],
        "outputs": [{"name": "", "type": "uint256"}],
    },
    {
        "name": "Transfer",
        "type": "event",
        "anonymous": False,
        "inputs": [
            {"name": "from", "type": "address", "indexed": True},
            {"name": "to", "type": "address", "indexed": True},
            {"name": "value", "type": "uint256", "indexed": False},
        ],
    },
]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Web3, GeneratedChain]]:
    folder = tmp_path_factory.mktemp("web3")
    quiet = ImportProgress(BLOCKS, io.StringIO(), label="generate")
    chain = generate_chain(folder / "chain", BLOCKS, TXS, "erc20", 3, progress=quiet)
    document = json.loads(chain.genesis_path.read_text())
    genesis = Genesis.from_json(document)
    rules = ChainRules(genesis.config)
    store = ChainStore.open(folder / "datadir", genesis, document)
    import_files(store, rules, [chain.chain_path], progress=ImportProgress(BLOCKS, io.StringIO()))
    server = start_rpc(store, rules, RpcConfig(port=0))
    try:
        yield Web3(Web3.HTTPProvider(server.url)), chain
    finally:
        server.stop()
        store.close()


def test_chain_and_blocks(served: tuple[Web3, GeneratedChain]) -> None:
    w3, chain = served
    assert w3.is_connected()
    assert w3.eth.chain_id == DEV_CHAIN_ID
    assert w3.eth.block_number == BLOCKS
    head = w3.eth.get_block("latest", full_transactions=True)
    assert bytes(head["hash"]) == chain.head_hash
    assert bytes(head["stateRoot"]) == chain.head_state_root
    assert len(head["transactions"]) == TXS
    assert head["baseFeePerGas"] > 0 and head["withdrawals"]


def test_transactions_receipts_and_historical_balances(
    served: tuple[Web3, GeneratedChain],
) -> None:
    w3, _chain = served
    first_tx = w3.eth.get_block(1)["transactions"][0]
    tx = w3.eth.get_transaction(first_tx)
    receipt = w3.eth.get_transaction_receipt(first_tx)
    assert receipt["blockNumber"] == tx["blockNumber"] == 1
    assert receipt["status"] == 1 and receipt["gasUsed"] > 21000
    sender = dev_account(0).address
    checksum = Web3.to_checksum_address(sender)
    assert w3.eth.get_balance(checksum, block_identifier=0) == DEV_BALANCE
    nonces = [w3.eth.get_transaction_count(tx["from"], n) for n in range(BLOCKS + 1)]
    assert nonces == sorted(nonces) and nonces[-1] > nonces[0]


def test_token_balances_by_contract_call_and_transfer_logs(
    served: tuple[Web3, GeneratedChain],
) -> None:
    w3, chain = served
    checked = 0
    for token, holders in chain.books.token_balances.items():
        contract = w3.eth.contract(address=Web3.to_checksum_address(token), abi=TOKEN_ABI)
        for holder, expected in list(holders.items())[:5]:
            balance = contract.functions.balanceOf(Web3.to_checksum_address(holder)).call()
            assert balance == expected
            checked += 1
        transfers = contract.events.Transfer().get_logs(from_block=1, to_block="latest")
        assert all(event["args"]["value"] > 0 for event in transfers)
    assert checked > 0
    all_transfers = w3.eth.get_logs({"fromBlock": 1, "toBlock": "latest"})
    assert len(all_transfers) > 0
