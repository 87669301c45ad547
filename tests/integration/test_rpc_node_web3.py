"""web3.py (HTTPProvider and the persistent WebSocketProvider) against `khipu run` as a process.

The node starts on an empty datadir and imports a generated erc20 chain; a WebSocket client
(on the `--ws` server) subscribes to newHeads and logs while it imports. Once the import is
done, state at historical blocks (genesis, a middle block, the head) is checked against what
the chain itself implies: the genesis alloc, the generator's books, and balances replayed from
receipts, logs and withdrawals.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from eth_typing import ChecksumAddress
from web3 import AsyncWeb3, Web3, WebSocketProvider

from khipu.devnet.contracts import TRANSFER_EVENT, balance_slot
from khipu.devnet.generate import GeneratedChain, generate_chain
from khipu.devnet.genesis import dev_account
from tests.integration.node_helpers import wait_until
from tests.integration.test_node_process import LINE_TIMEOUT, NodeProcess

BLOCKS, TXS = 40, 6  # a few seconds of import: long enough to subscribe while it runs
MIDDLE = BLOCKS // 2
GWEI = 10**9
TOKEN_ABI: list[dict[str, Any]] = [
    {
        "name": "balanceOf",
        "type": "function",
        "stateMutability": "view",
        "inputs": [{"name": "holder", "type": "address"}],
        "outputs": [{"name": "", "type": "uint256"}],
    }
]


@dataclass
class RunningNode:
    """The node process, its JSON-RPC URL, the chain it imports and the genesis document."""

    process: NodeProcess
    url: str  # HTTP, which also accepts WebSocket upgrades
    ws_url: str  # the second server of --ws --ws.port
    chain: GeneratedChain
    genesis: dict[str, Any]
    imported: bool = False

    def wait_imported(self) -> Web3:
        """An HTTP web3 client once the node logged that the import finished."""
        if not self.imported:
            self.process.wait_for(r'msg="import finished"')
            self.imported = True
        return Web3(Web3.HTTPProvider(self.url))


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningNode]:
    folder = tmp_path_factory.mktemp("rpc-node-web3")
    chain = generate_chain(folder / "chain", BLOCKS, TXS, "erc20", 11)
    args = [
        "--genesis", str(chain.genesis_path), "--datadir", str(folder / "datadir"),
        "--no-seal-check", "--import", str(chain.chain_path), "--http.port", "0",
        "--ws", "--ws.port", "0",
    ]  # fmt: skip
    process = NodeProcess(args)
    try:
        process.wait_for(r'msg="json-rpc serving"')
        wait_until(lambda: len(process.matching("json-rpc serving")) == 2, LINE_TIMEOUT, "--ws")
        http_url, ws_url = (
            line.split("url=", 1)[1].split()[0] for line in process.matching("json-rpc serving")
        )
        genesis = json.loads(chain.genesis_path.read_text())
        yield RunningNode(process, http_url, ws_url.replace("http://", "ws://"), chain, genesis)
    finally:
        if process.process.poll() is None:
            process.process.kill()
            process.process.wait(30)


def _checksum(address: bytes) -> ChecksumAddress:
    return Web3.to_checksum_address(address)


def _raw(address: str) -> bytes:
    """The 20 bytes of a (checksummed) hex address as web3 returns it."""
    return bytes.fromhex(address.removeprefix("0x"))


def _genesis_account(genesis: dict[str, Any], address: bytes) -> dict[str, Any]:
    alloc: dict[str, Any] = genesis["alloc"]
    for key, account in alloc.items():
        if bytes.fromhex(key.removeprefix("0x")) == address:
            return dict(account)
    raise AssertionError(f"0x{address.hex()} not in the genesis alloc")


def _genesis_token_balance(genesis: dict[str, Any], token: bytes, holder: bytes) -> int:
    storage = _genesis_account(genesis, token).get("storage", {})
    for slot, value in storage.items():
        if int(slot, 16) == balance_slot(holder):
            return int(value, 16)
    return 0


@dataclass
class Pushed:
    """What the --ws server pushed while the node imported."""

    subscribed_at: int  # the head once both subscriptions were in place
    heads: list[dict[str, Any]]
    logs: list[dict[str, Any]]


def test_new_heads_and_logs_over_websocket_while_the_node_imports(node: RunningNode) -> None:
    """On the --ws server, every block imported after subscribing is pushed once, in order,
    with the hash, parent and state root that the node stores; the token's logs come too,
    each block's before its head, and they are exactly what eth_getLogs answers later."""
    token = next(iter(node.chain.books.token_balances))

    async def collect() -> Pushed:
        async with AsyncWeb3(WebSocketProvider(node.ws_url)) as w3:
            logs_id = await w3.eth.subscribe("logs", {"address": _checksum(token)})
            heads_id = await w3.eth.subscribe("newHeads")
            pushed = Pushed(await w3.eth.block_number, [], [])
            if pushed.subscribed_at < BLOCKS:
                async for message in w3.socket.process_subscriptions():
                    if message["subscription"] == logs_id:
                        pushed.logs.append(dict(message["result"]))
                        continue
                    assert message["subscription"] == heads_id
                    pushed.heads.append(dict(message["result"]))
                    if pushed.heads[-1]["number"] == BLOCKS:
                        break
            return pushed

    pushed = asyncio.run(asyncio.wait_for(collect(), 180))
    assert pushed.subscribed_at < BLOCKS, "the import ended before the subscription: raise BLOCKS"
    numbers = [head["number"] for head in pushed.heads]
    assert numbers == list(range(numbers[0], BLOCKS + 1)), numbers
    assert numbers[0] <= pushed.subscribed_at + 1
    w3 = node.wait_imported()
    for head in pushed.heads:
        stored = w3.eth.get_block(head["number"])
        assert bytes(head["hash"]) == bytes(stored["hash"])
        assert bytes(head["parentHash"]) == bytes(stored["parentHash"])
        assert bytes(head["stateRoot"]) == bytes(stored["stateRoot"])
    assert bytes(w3.eth.get_block("latest")["hash"]) == node.chain.head_hash

    def key(log: Any) -> tuple[int, int, bytes, bytes]:
        return (
            log["blockNumber"],
            log["logIndex"],
            bytes(log["transactionHash"]),
            bytes(log["data"]),
        )

    assert pushed.logs and all(_raw(log["address"]) == token for log in pushed.logs)
    since_first = w3.eth.get_logs(
        {"fromBlock": pushed.logs[0]["blockNumber"], "toBlock": BLOCKS, "address": _checksum(token)}
    )
    assert [key(log) for log in pushed.logs] == [key(log) for log in since_first]
    after_subscribing = w3.eth.get_logs(
        {"fromBlock": pushed.subscribed_at + 1, "toBlock": BLOCKS, "address": _checksum(token)}
    )
    assert len(after_subscribing) <= len(pushed.logs)


def test_websocket_requests_answer_like_http(node: RunningNode) -> None:
    """WebSocket upgraded on the HTTP port answers state, calls and logs as HTTP does."""
    http = node.wait_imported()
    token = next(iter(node.chain.books.token_balances))
    holder = dev_account(1).address
    slot = balance_slot(holder)
    criteria: Any = {
        "fromBlock": 1,
        "toBlock": "latest",
        "address": _checksum(token),
        "topics": ["0x" + TRANSFER_EVENT.hex()],
    }

    async def over_websocket() -> tuple[int, int, bytes, int, int]:
        async with AsyncWeb3(WebSocketProvider(node.url.replace("http://", "ws://"))) as w3:
            contract = w3.eth.contract(address=_checksum(token), abi=TOKEN_ABI)
            return (
                await w3.eth.block_number,
                await w3.eth.get_balance(_checksum(holder), MIDDLE),
                bytes(await w3.eth.get_storage_at(_checksum(token), slot, MIDDLE)),
                await contract.functions.balanceOf(_checksum(holder)).call(block_identifier=MIDDLE),
                len(await w3.eth.get_logs(criteria)),
            )

    number, balance, stored, called, logs = asyncio.run(asyncio.wait_for(over_websocket(), 60))
    contract = http.eth.contract(address=_checksum(token), abi=TOKEN_ABI)
    assert number == http.eth.block_number == BLOCKS
    assert balance == http.eth.get_balance(_checksum(holder), MIDDLE)
    assert stored == bytes(http.eth.get_storage_at(_checksum(token), slot, MIDDLE))
    assert called == int.from_bytes(stored, "big")
    assert called == contract.functions.balanceOf(_checksum(holder)).call(block_identifier=MIDDLE)
    assert logs == len(http.eth.get_logs(criteria)) > 0


def test_token_balances_code_and_storage_at_genesis_middle_and_head(node: RunningNode) -> None:
    """balanceOf (eth_call) and the balance slot (eth_getStorageAt) agree with the genesis
    alloc at block 0, with genesis plus the Transfer logs replayed up to MIDDLE, and with the
    generator's books at the head."""
    w3 = node.wait_imported()
    logs = w3.eth.get_logs(
        {"fromBlock": 0, "toBlock": MIDDLE, "topics": ["0x" + TRANSFER_EVENT.hex()]}
    )
    checked = moved = 0
    for token, books in node.chain.books.token_balances.items():
        code = bytes.fromhex(_genesis_account(node.genesis, token)["code"].removeprefix("0x"))
        for block in (0, MIDDLE, "latest"):
            assert bytes(w3.eth.get_code(_checksum(token), block)) == code
        contract = w3.eth.contract(address=_checksum(token), abi=TOKEN_ABI)
        for holder in list(books)[:6]:
            at_genesis = _genesis_token_balance(node.genesis, token, holder)
            at_middle = at_genesis
            for log in logs:
                if _raw(log["address"]) != token:
                    continue
                value = int.from_bytes(bytes(log["data"]), "big")
                at_middle -= value if bytes(log["topics"][1])[12:] == holder else 0
                at_middle += value if bytes(log["topics"][2])[12:] == holder else 0
            for block, expected in (
                (0, at_genesis),
                (MIDDLE, at_middle),
                ("latest", books[holder]),
            ):
                call = contract.functions.balanceOf(_checksum(holder)).call(block_identifier=block)
                word = w3.eth.get_storage_at(_checksum(token), balance_slot(holder), block)
                assert call == int.from_bytes(bytes(word), "big") == expected, (
                    token,
                    holder,
                    block,
                )
            checked += 1
            moved += at_genesis != at_middle
    assert checked > 0 and moved > 0 and logs


def test_eth_balances_and_nonces_follow_receipts_and_withdrawals(node: RunningNode) -> None:
    """Replaying fees (receipts) and withdrawals block by block from the genesis balance gives
    the balance served at every block; nonces count the account's transactions."""
    w3 = node.wait_imported()
    accounts = [dev_account(index).address for index in range(4)]
    balance = {a: int(_genesis_account(node.genesis, a)["balance"], 16) for a in accounts}
    nonce = dict.fromkeys(accounts, 0)
    for number in range(BLOCKS + 1):
        block = w3.eth.get_block(number, full_transactions=True)
        assert _raw(block["miner"]) not in accounts
        for tx in block["transactions"]:
            sender = _raw(tx["from"])
            receipt = w3.eth.get_transaction_receipt(tx["hash"])
            assert receipt["blockNumber"] == number and receipt["status"] == 1
            assert bytes(receipt["transactionHash"]) == bytes(tx["hash"])
            assert len(receipt["logs"]) == 1  # one Transfer per token transfer
            if sender in balance:
                balance[sender] -= receipt["gasUsed"] * receipt["effectiveGasPrice"] + tx["value"]
                nonce[sender] += 1
        for withdrawal in block.get("withdrawals", []):
            address = _raw(withdrawal["address"])
            if address in balance:
                balance[address] += withdrawal["amount"] * GWEI
        if number in (0, MIDDLE, BLOCKS):
            for account in accounts:
                assert w3.eth.get_balance(_checksum(account), number) == balance[account]
                assert w3.eth.get_transaction_count(_checksum(account), number) == nonce[account]
    assert any(nonce.values())
    assert all(
        balance[a] != int(_genesis_account(node.genesis, a)["balance"], 16) for a in accounts
    )


def test_logs_filtered_by_address_and_topic_match_the_receipts(node: RunningNode) -> None:
    w3 = node.wait_imported()
    token = next(iter(node.chain.books.token_balances))
    sender = dev_account(2).address
    from_topic = "0x" + sender.rjust(32, b"\x00").hex()
    transfer = "0x" + TRANSFER_EVENT.hex()
    from_receipts = []
    for number in range(1, BLOCKS + 1):
        for receipt in w3.eth.get_block_receipts(number):
            assert receipt["cumulativeGasUsed"] >= receipt["gasUsed"]
            for log in receipt["logs"]:
                if _raw(log["address"]) == token and bytes(log["topics"][1]) == bytes.fromhex(
                    from_topic[2:]
                ):
                    from_receipts.append((log["blockNumber"], log["logIndex"]))
    by_address = w3.eth.get_logs({"fromBlock": 1, "toBlock": "latest", "address": _checksum(token)})
    assert by_address and all(_raw(log["address"]) == token for log in by_address)
    filtered = w3.eth.get_logs(
        {
            "fromBlock": 1,
            "toBlock": "latest",
            "address": _checksum(token),
            "topics": [transfer, from_topic],
        }
    )
    assert [(log["blockNumber"], log["logIndex"]) for log in filtered] == from_receipts
    assert len(filtered) < len(by_address)
    none = w3.eth.get_logs({"fromBlock": 1, "toBlock": "latest", "topics": ["0x" + "11" * 32]})
    assert none == []


def test_sigterm_stops_the_node_with_exit_0(node: RunningNode) -> None:
    """Last in the module: it ends the node the tests above share."""
    node.wait_imported()
    assert node.process.stop(signal.SIGTERM) == 0, "\n".join(node.process.lines[-20:])
    assert node.process.matching("stopped cleanly")
