"""JSON-RPC over WebSocket on 127.0.0.1: requests, and newHeads pushed while blocks import."""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
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
from khipu.rpc.server import RpcServer
from khipu.rpc.websocket import accept_key
from khipu.storage.chain_store import ChainStore
from tests.conftest import require_testdata


class WebSocketClient:
    """A minimal RFC 6455 client: masked text frames out, unmasked frames in."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        self.stream = self.sock.makefile("rb")
        status = self.stream.readline()
        assert b" 101 " in status, status
        headers = {}
        while (line := self.stream.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        assert headers["sec-websocket-accept"] == accept_key(key)

    def send(self, message: Any) -> None:
        payload = json.dumps(message).encode()
        mask = os.urandom(4)
        header = bytes([0x81])
        if len(payload) < 126:
            header += bytes([0x80 | len(payload)])
        else:
            header += bytes([0x80 | 126]) + struct.pack("!H", len(payload))
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def receive(self) -> Any:
        head = self.stream.read(2)
        length = head[1] & 0x7F
        if length == 126:
            length = struct.unpack("!H", self.stream.read(2))[0]
        elif length == 127:
            length = struct.unpack("!Q", self.stream.read(8))[0]
        return json.loads(self.stream.read(length))

    def close(self) -> None:
        self.stream.close()
        self.sock.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[RpcServer, ChainStore, ChainRules, Path]]:
    folder = require_testdata("rpc-compat-prague")
    document = json.loads((folder / "genesis.json").read_text())
    genesis = Genesis.from_json(document)
    store = ChainStore.open(tmp_path / "datadir", genesis, document)
    rules = ChainRules(genesis.config)
    rpc = RpcServer(store, rules, RpcConfig(port=0))
    rpc.start()
    try:
        yield rpc, store, rules, folder / "chain.rlp"
    finally:
        rpc.stop()
        store.close()


def test_requests_and_new_heads_over_websocket(
    server: tuple[RpcServer, ChainStore, ChainRules, Path],
) -> None:
    rpc, store, rules, chain_file = server
    client = WebSocketClient(int(rpc.url.rsplit(":", 1)[1].rstrip("/")))
    try:
        client.send({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []})
        assert client.receive() == {"jsonrpc": "2.0", "id": 1, "result": "0xc72dd9d5e883e"}
        client.send({"jsonrpc": "2.0", "id": 2, "method": "eth_subscribe", "params": ["newHeads"]})
        subscription = client.receive()["result"]
        importer = BlockImporter(open_chain(rules, store.db), check_seal=False)
        imported = []
        for block in iter_file_blocks(chain_file, rules):
            importer.import_block(block)
            imported.append("0x" + block.header.hash.hex())
            if len(imported) == 3:
                break
        pushed = []
        for _ in imported:
            note = client.receive()
            assert note["method"] == "eth_subscription"
            assert note["params"]["subscription"] == subscription
            pushed.append(note["params"]["result"]["hash"])
        assert pushed == imported
        client.send(
            {"jsonrpc": "2.0", "id": 3, "method": "eth_unsubscribe", "params": [subscription]}
        )
        assert client.receive() == {"jsonrpc": "2.0", "id": 3, "result": True}
        client.send({"jsonrpc": "2.0", "id": 4, "method": "eth_subscribe", "params": ["nothing"]})
        assert client.receive()["error"]["code"] == -32602
    finally:
        client.close()
