"""The JSON-RPC HTTP server on 127.0.0.1: transport rules, limits, and serving while importing."""

from __future__ import annotations

import gzip
import http.client
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from khipu.chain.chain import open_chain
from khipu.chain.config import Genesis
from khipu.chain.import_job import iter_file_blocks
from khipu.chain.importer import BlockImporter
from khipu.chain.rules import ChainRules
from khipu.rpc.config import RpcConfig
from khipu.rpc.server import RpcServer, start_rpc
from khipu.storage.chain_store import ChainStore
from tests.conftest import require_testdata

LOOP_FOREVER = "0x5b600056"  # JUMPDEST PUSH1 0 JUMP


@pytest.fixture
def empty_chain(tmp_path: Path) -> Iterator[tuple[ChainStore, ChainRules, Path]]:
    folder = require_testdata("rpc-compat-prague")
    document = json.loads((folder / "genesis.json").read_text())
    genesis = Genesis.from_json(document)
    store = ChainStore.open(tmp_path / "datadir", genesis, document)
    try:
        yield store, ChainRules(genesis.config), folder / "chain.rlp"
    finally:
        store.close()


def post(
    server: RpcServer, body: Any, headers: dict[str, str] | None = None
) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", int(server.url.rsplit(":", 1)[1][:-1]))
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    connection.request("POST", "/", raw, {"Content-Type": "application/json", **(headers or {})})
    return connection.getresponse()


def call(server: RpcServer, method: str, *params: Any) -> Any:
    reply = json.loads(
        post(server, {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}).read()
    )
    return reply


def test_serves_each_new_head_while_blocks_are_imported(
    empty_chain: tuple[ChainStore, ChainRules, Path],
) -> None:
    store, rules, chain_file = empty_chain
    server = start_rpc(store, rules, RpcConfig(port=0))
    try:
        assert call(server, "eth_blockNumber")["result"] == "0x0"
        importer = BlockImporter(open_chain(rules, store.db), check_seal=False)
        for count, block in enumerate(iter_file_blocks(chain_file, rules), start=1):
            importer.import_block(block)
            assert call(server, "eth_blockNumber")["result"] == hex(count)
            latest = call(server, "eth_getBlockByNumber", "latest", False)["result"]
            assert latest["hash"] == "0x" + block.header.hash.hex()
            if count == 10:
                break
    finally:
        server.stop()


def test_a_slow_call_does_not_hold_up_other_requests(
    empty_chain: tuple[ChainStore, ChainRules, Path],
) -> None:
    store, rules, _ = empty_chain
    replies: list[Any] = []
    server = RpcServer(store, rules, RpcConfig(port=0, evm_timeout=600.0))
    server.start()
    overrides = {"0x" + "aa" * 20: {"code": LOOP_FOREVER}}
    looping_call = {"to": "0x" + "aa" * 20, "gas": "0x2faf080"}
    slow = threading.Thread(
        target=lambda: replies.append(call(server, "eth_call", looping_call, "latest", overrides)),
        daemon=True,
    )
    slow.start()
    try:
        deadline = time.monotonic() + 120  # a bound for a loaded machine, not a measurement
        while server.context.requests_in_flight.value < 1 and time.monotonic() < deadline:
            time.sleep(0.05)  # until the looping call is being executed, not just sent
        assert server.context.requests_in_flight.value == 1
        assert call(server, "eth_chainId")["result"] == "0xc72dd9d5e883e"
        assert slow.is_alive(), "the looping call should still be running"
    finally:
        server.stop()  # cancels the running call
        slow.join(timeout=60)
    assert replies and replies[0]["error"]["message"] == "the RPC server is stopping"


def test_evm_timeout_aborts_the_call(empty_chain: tuple[ChainStore, ChainRules, Path]) -> None:
    store, rules, _ = empty_chain
    with RpcServer(store, rules, RpcConfig(port=0, evm_timeout=0.3)) as server:
        overrides = {"0x" + "aa" * 20: {"code": LOOP_FOREVER}}
        reply = call(server, "eth_call", {"to": "0x" + "aa" * 20}, "latest", overrides)
        assert reply["error"] == {"code": -32000, "message": "execution aborted (timeout = 0.3s)"}


def test_transport_rules(empty_chain: tuple[ChainStore, ChainRules, Path]) -> None:
    store, rules, _ = empty_chain
    config = RpcConfig(port=0, max_request_size=2000, cors_domains=("https://app.example",))
    with RpcServer(store, rules, config) as server:
        request = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "eth_getBlockByNumber",
            "params": ["0x0", True],
        }
        zipped = post(server, request, {"Accept-Encoding": "gzip"})
        assert zipped.getheader("Content-Encoding") == "gzip"
        assert json.loads(gzip.decompress(zipped.read()))["result"]["number"] == "0x0"

        assert post(server, b"x" * 3000).status == 413
        wrong_type = post(server, request, {"Content-Type": "text/plain"})
        assert wrong_type.status == 415

        allowed = post(server, request, {"Origin": "https://app.example"})
        assert allowed.getheader("Access-Control-Allow-Origin") == "https://app.example"
        other = post(server, request, {"Origin": "https://evil.example"})
        assert other.getheader("Access-Control-Allow-Origin") is None

        assert post(server, request, {"Host": "evil.example"}).status == 403
        assert post(server, request, {"Host": "localhost:8545"}).status == 200
