"""`khipu status --rpc URL` against a node's `health_snapshot`, served as JSON-RPC khipu_health
the way the RPC server is meant to (here a stand-in: the real server is built elsewhere)."""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from khipu.actors.status import format_status_table
from khipu.node import Node, NodeSettings
from tests.conftest import REPO_ROOT
from tests.integration.node_helpers import fast_strategy, make_chain, quick_health, wait_until


def serve_health(health: Callable[[], dict[str, Any]]) -> http.server.ThreadingHTTPServer:
    """A JSON-RPC endpoint on 127.0.0.1 answering khipu_health with `health()`."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            assert request["method"] == "khipu_health"
            body = json.dumps({"jsonrpc": "2.0", "id": request["id"], "result": health()})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    chain = make_chain(tmp_path / "chain", blocks=4, txs_per_block=5, seed=3)
    settings = NodeSettings(
        import_files=(chain.chain_path,),
        check_seal=False,
        health=quick_health(),
        strategy=fast_strategy(),
    )
    running = Node(chain.selection(tmp_path / "datadir"), settings, emit_health_line=print)
    running.start()
    yield running
    running.shutdown("test over")


def test_khipu_status_prints_every_actor_and_the_import_progress(node: Node) -> None:
    wait_until(lambda: node.import_status.snapshot()["state"] == "done", 120, "the import to end")
    wait_until(lambda: len(node.board.all()) == 3, 10, "a health round over every actor")
    server = serve_health(node.health_snapshot)
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        result = subprocess.run(
            [sys.executable, "-m", "khipu.cli", "status", "--rpc", url],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 0, result.stderr
    print(result.stdout)
    lines = result.stdout.splitlines()
    assert lines[0].endswith(": 3 actor(s)")
    assert [line.split()[0] for line in lines[2:5]] == [
        "StorageWriter",
        "Importer",
        "HealthMonitor",
    ]
    assert all(line.split()[1] == "running" for line in lines[2:5])
    assert lines[5] == "import: done, head 4 of 4 (100.0%), 0.00 blocks/s, 0.0 tx/s, 0.000 Mgas/s"


def test_the_sync_line_shows_a_failed_import_with_its_error() -> None:
    snapshot = {
        "ts": "t",
        "actors": [],
        "sync": {"stage": "import", "state": "failed", "head": 7, "target": 45, "error": "bad"},
    }
    last = format_status_table(snapshot).splitlines()[-1]
    assert last.startswith("import: failed, head 7 of 45 (15.6%), 0.00 blocks/s")
    assert last.endswith("error: bad")
