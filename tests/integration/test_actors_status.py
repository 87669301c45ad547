"""`khipu status` fetching health from a JSON-RPC endpoint on 127.0.0.1."""

from __future__ import annotations

import http.server
import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from khipu.actors.status import HealthUnavailable, fetch_health, format_status_table

SNAPSHOT = {
    "ts": "2027-01-15T08:00:00.250Z",
    "actors": [
        {
            "actor": "StorageWriter",
            "state": "running",
            "mailbox": 0,
            "processed": 123,
            "restarts": 0,
        },
    ],
}


class FakeRpc:
    """A JSON-RPC endpoint answering every POST with `answer`; records what it was sent."""

    def __init__(self, answer: dict[str, Any]) -> None:
        self.answer = answer
        self.requests: list[dict[str, Any]] = []
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                fake.requests.append(json.loads(self.rfile.read(length)))
                body = json.dumps(fake.answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def rpc() -> Iterator[FakeRpc]:
    fake = FakeRpc({"jsonrpc": "2.0", "id": 1, "result": SNAPSHOT})
    yield fake
    fake.close()


def test_fetch_health_posts_khipu_health_and_returns_the_snapshot(rpc: FakeRpc) -> None:
    snapshot = fetch_health(rpc.url)
    assert snapshot == SNAPSHOT
    assert rpc.requests == [{"jsonrpc": "2.0", "id": 1, "method": "khipu_health", "params": []}]
    assert "StorageWriter  running" in format_status_table(snapshot)


def test_a_json_rpc_error_is_reported_with_the_url(rpc: FakeRpc) -> None:
    rpc.answer = {"jsonrpc": "2.0", "id": 1, "error": {"code": -32601, "message": "no method"}}
    with pytest.raises(HealthUnavailable, match="-32601") as raised:
        fetch_health(rpc.url)
    assert raised.value.url == rpc.url


def test_a_result_that_is_not_a_snapshot_is_refused(rpc: FakeRpc) -> None:
    rpc.answer = {"jsonrpc": "2.0", "id": 1, "result": "0x1"}
    with pytest.raises(HealthUnavailable, match="not a health snapshot"):
        fetch_health(rpc.url)


def test_a_node_that_is_not_running_is_reported() -> None:
    with socket.socket() as probe:  # a port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    with pytest.raises(HealthUnavailable, match=f"127.0.0.1:{port}"):
        fetch_health(url, timeout=2)


def test_khipu_status_prints_the_table_and_exits_by_health(rpc: FakeRpc, capsys) -> None:
    from khipu.cli import main

    assert main(["status", "--rpc-url", rpc.url]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[1].split()[:2] == ["ACTOR", "STATE"]
    assert "StorageWriter" in out and "123" in out

    stalled = {"ts": "t", "actors": [{"actor": "Importer", "state": "stalled", "restarts": 1}]}
    rpc.answer = {"jsonrpc": "2.0", "id": 1, "result": stalled}
    assert main(["status", "--rpc-url", rpc.url, "--json"]) == 2
    assert json.loads(capsys.readouterr().out) == stalled


def test_khipu_status_exits_1_when_the_node_does_not_answer(capsys) -> None:
    from khipu.cli import main

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert main(["status", "--rpc-url", f"http://127.0.0.1:{port}", "--timeout", "2"]) == 1
    assert f"no health from http://127.0.0.1:{port}" in capsys.readouterr().err
