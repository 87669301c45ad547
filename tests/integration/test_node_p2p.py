"""`khipu run` serves devp2p: after importing rpc-compat-prague, EthereumJS's probe.mjs finds it
over discv4, handshakes, checks its Status and downloads every header, body and receipt list
(checking the receipts roots); `khipu devp2p eth headers` against it returns the chain."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, require_testdata
from tests.integration.p2p_peers import free_port, installed_peer
from tests.unit.p2p.chainfile import MemoryChain

BLOCKS = 45
LINE_TIMEOUT = 180.0  # a bound for a loaded machine, not a measurement


class RunningNode:
    """`khipu run` in a child process, its stderr lines collected by a thread."""

    def __init__(self, args: list[str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "khipu.cli", "run", *args],
            cwd=REPO_ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, pattern: str) -> re.Match[str]:
        """The first match of `pattern` in stderr; fails if the node exits or time is up."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + LINE_TIMEOUT
        while time.monotonic() < deadline:
            for line in list(self.lines):
                found = regex.search(line)
                if found:
                    return found
            if self.process.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.1)
        tail = "\n".join(self.lines[-30:])
        pytest.fail(f"no line matching {pattern!r}; stderr ends:\n{tail}")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._reader.join(10)
        return self.process.returncode


@pytest.fixture(scope="module")
def suite() -> Path:
    return require_testdata("rpc-compat-prague")


@pytest.fixture(scope="module")
def node(
    suite: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, RunningNode]]:
    """The node after its import finished, and its enode."""
    installed_peer("serve")  # skip before starting anything if node/npm are missing
    datadir = tmp_path_factory.mktemp("node-p2p") / "data"
    running = RunningNode(
        [
            *("--genesis", str(suite / "genesis.json"), "--datadir", str(datadir)),
            *("--no-seal-check", "--import", str(suite / "chain.rlp")),
            *("--http.port", "0", "--port", str(free_port()), "--maxpeers", "5"),
        ]
    )
    try:
        enode = running.wait_for(r"devp2p serving.* enode=(enode://\S+)").group(1)
        running.wait_for(rf'msg="import finished" head={BLOCKS}\b')
        yield enode, running
    finally:
        code = running.stop()
        assert code == 0, "\n".join(running.lines[-20:])
    assert (datadir / "nodekey").is_file()


def test_ethereumjs_probe_downloads_the_whole_chain_from_the_node(
    node: tuple[str, RunningNode], suite: Path
) -> None:
    enode, _ = node
    probe = subprocess.run(
        ["node", "probe.mjs", enode, str(BLOCKS + 1)],
        cwd=installed_peer("serve"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    text = probe.stdout + probe.stderr
    assert probe.returncode == 0, text
    chain_id = json.loads((suite / "genesis.json").read_text())["config"]["chainId"]
    genesis = MemoryChain(suite / "genesis.json", suite / "chain.rlp").genesis_hash()
    assert "discv4 PING->PONG ok" in text and "matches-enode=true" in text
    assert "RLPx handshake + Hello ok: p2p v5" in text
    assert f"networkId={chain_id} " in text
    assert f"genesis=0x{genesis.hex()[:12]}" in text
    assert f"GetBlockHeaders(origin=0, amount={BLOCKS + 1}) -> {BLOCKS + 1} headers" in text
    assert f"GetBlockBodies({BLOCKS + 1}) -> {BLOCKS + 1} bodies" in text
    assert f"receipts root check: {BLOCKS + 1}/{BLOCKS + 1} blocks match" in text


def test_khipu_devp2p_eth_headers_against_the_node(
    node: tuple[str, RunningNode], suite: Path
) -> None:
    enode, _ = node
    result = subprocess.run(
        [
            *(sys.executable, "-m", "khipu.cli", "devp2p", "eth", "headers", enode),
            *("--genesis", str(suite / "genesis.json"), "--from", "1", "--count", "10", "--json"),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    answer = json.loads(result.stdout)
    chain = MemoryChain(suite / "genesis.json", suite / "chain.rlp")
    assert answer["client"] == "khipu"
    assert answer["head"] == "0x" + chain.hashes[BLOCKS].hex()
    assert [h["number"] for h in answer["headers"]] == list(range(1, 11))
    assert [h["hash"] for h in answer["headers"]] == [
        "0x" + chain.hashes[n].hex() for n in range(1, 11)
    ]


def test_a_busy_port_given_with_port_stops_the_node_with_exit_2(
    suite: Path, tmp_path: Path
) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        running = RunningNode(
            [
                *("--genesis", str(suite / "genesis.json"), "--datadir", str(tmp_path / "d")),
                *("--http.port", "0", "--port", str(port)),
            ]
        )
        code = running.process.wait(LINE_TIMEOUT)
        running.stop()
    assert code == 2
    assert any(f"cannot serve devp2p on 127.0.0.1:{port}" in line for line in running.lines)


def test_a_busy_default_port_leaves_the_node_running_without_devp2p(
    suite: Path, tmp_path: Path
) -> None:
    import socket

    with socket.socket() as taken:
        try:  # hold 30303; if someone else holds it, it is busy all the same
            taken.bind(("127.0.0.1", 30303))
            taken.listen()
        except OSError:
            pass
        running = RunningNode(
            [
                *("--genesis", str(suite / "genesis.json"), "--datadir", str(tmp_path / "d")),
                "--http.port",
                "0",
            ]
        )
        try:
            running.wait_for(r"devp2p is off: cannot serve devp2p on 127.0.0.1:30303")
            running.wait_for(r"serving until Ctrl-C")
        finally:
            code = running.stop()
    assert code == 0


def test_admin_node_info_and_net_methods_report_devp2p(node: tuple[str, RunningNode]) -> None:
    import urllib.request

    enode, running = node
    url = running.wait_for(r'msg="json-rpc serving" url=(\S+)').group(1)

    def rpc(method: str) -> object:
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": []}).encode()
        request = urllib.request.Request(
            url, data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())["result"]

    info = rpc("admin_nodeInfo")
    assert isinstance(info, dict) and info["enode"] == enode
    assert info["id"] == enode.removeprefix("enode://").split("@")[0]
    assert rpc("net_listening") is True
    assert int(str(rpc("net_peerCount")), 16) >= 0
