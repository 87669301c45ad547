"""The node as a process (`python -m khipu.cli run ... --import chain.rlp`): SIGTERM stops it
cleanly mid-import, SIGKILL at random moments never costs more than the block in flight, each
run resumes after the stored head, and a crash loop exits 1 naming the failing actor."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, conformance_full
from tests.integration.node_helpers import ReferenceChain, make_chain, stored_head

KILLS = 20 if conformance_full() else 5
LINE_TIMEOUT = 180.0  # a bound for a loaded machine, not a measurement


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> ReferenceChain:
    # About 5 s of import on a loaded 2-core machine.
    return make_chain(tmp_path_factory.mktemp("node-process"), blocks=30, txs_per_block=15, seed=5)


class NodeProcess:
    """`khipu run` in a child process; stderr lines are collected by a thread."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "khipu.cli", "run", *args],
            cwd=REPO_ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, pattern: str, timeout: float = LINE_TIMEOUT) -> str:
        """The first stderr line matching `pattern`; fails if the process ends or time is up."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = 0
        with self._changed:
            while True:
                for line in self.lines[seen:]:
                    if regex.search(line):
                        return line
                seen = len(self.lines)
                if not self._reader.is_alive() or time.monotonic() > deadline:
                    self.process.kill()
                    tail = "\n".join(self.lines[-30:])
                    raise AssertionError(f"no line matching {pattern!r}; stderr ends:\n{tail}")
                self._changed.wait(0.1)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        """Send `signum`, wait for the exit and the end of stderr; returns the exit code."""
        self.process.send_signal(signum)
        code = self.process.wait(timeout)
        self._reader.join(timeout)
        return code

    def matching(self, pattern: str) -> list[str]:
        with self._changed:
            return [line for line in self.lines if re.search(pattern, line)]


def run_args(chain: ReferenceChain, datadir: Path, *extra: str) -> list[str]:
    """`khipu run` over the chain; serial unless `extra` asks for workers (the tests that do
    not care about execution skip the workers' start)."""
    mode = () if "--workers" in extra else ("--serial",)
    return [
        "--genesis", str(chain.genesis_path), "--datadir", str(datadir), "--no-seal-check",
        "--import", str(chain.chain_path), "--http.port", "0", *mode, *extra,
    ]  # fmt: skip


def assert_reference_head(chain: ReferenceChain, datadir: Path) -> None:
    number, block_hash, state_root = stored_head(chain, datadir)
    assert number == chain.blocks
    assert block_hash == chain.head_hash
    assert state_root == chain.head_state_root


def test_sigterm_mid_import_exits_0_and_the_next_run_resumes_with_metrics_and_json_logs(
    chain: ReferenceChain, tmp_path: Path
) -> None:
    datadir = tmp_path / "datadir"
    first = NodeProcess(run_args(chain, datadir, "--health.interval", "0.3"))
    first.wait_for(r'msg="import progress"')
    assert first.stop(signal.SIGTERM) == 0, "\n".join(first.lines[-20:])
    assert first.matching("stopped cleanly")
    head_after_stop, _, _ = stored_head(chain, datadir)  # opens: the store was closed cleanly
    assert head_after_stop >= 1

    second = NodeProcess(
        run_args(chain, datadir, "--metrics", "--metrics.port", "0", "--log.format", "json")
    )
    resumed = json.loads(second.wait_for(r'"msg": "import resuming"'))
    assert resumed["after"] == head_after_stop, "\n".join(first.lines + second.lines)
    second.wait_for(r'"msg": "import finished"')
    metrics_line = json.loads(second.wait_for(r'"msg": "metrics at '))
    url = metrics_line["msg"].removeprefix("metrics at ")
    rpc_url = json.loads(second.wait_for(r'"msg": "json-rpc serving"'))["url"]
    assert int(str(rpc(rpc_url, "eth_blockNumber")), 16) == chain.blocks
    assert int(str(rpc(rpc_url, "eth_blockNumber")), 16) == chain.blocks
    with urllib.request.urlopen(url, timeout=10) as response:
        exposition = response.read().decode()
    samples = dict(
        line.rsplit(" ", 1) for line in exposition.splitlines() if line and line[0] != "#"
    )
    imported_now = chain.blocks - head_after_stop
    assert float(samples["khipu_blocks_imported_total"]) == imported_now, exposition
    assert float(samples["khipu_head_block_number"]) == chain.blocks
    assert float(samples["khipu_gas_used_total"]) > 0
    rpc_ok = 'khipu_rpc_requests_total{method="eth_blockNumber",outcome="ok"}'
    assert float(samples[rpc_ok]) == 2, exposition
    assert float(samples['khipu_rpc_request_duration_seconds_count{method="eth_blockNumber"}']) == 2
    sizes = {key: float(value) for key, value in samples.items() if "store_size" in key}
    assert sizes['khipu_store_size_bytes{topic="storage"}'] > 0, sizes  # trie nodes
    assert sizes['khipu_store_size_bytes{topic="header"}'] > 0, sizes
    assert sizes['khipu_store_size_bytes{topic="chaindata"}'] > 0, sizes
    assert second.stop(signal.SIGINT) == 0, "\n".join(second.lines[-20:])
    for line in second.lines:
        if line.startswith("{"):
            json.loads(line)  # every log line is one JSON object
        else:
            assert line.startswith("khipu: "), "\n".join(second.lines)  # GracefulShutdown's words
    assert_reference_head(chain, datadir)


def test_sigkill_at_random_moments_then_each_run_resumes_after_the_stored_head(
    chain: ReferenceChain, tmp_path: Path
) -> None:
    rng = random.Random(20261121)
    datadir = tmp_path / "datadir"
    previous = 0
    heads: list[int] = []
    for kill in range(KILLS):
        if previous == chain.blocks:  # done before this kill: check it, start over afresh
            assert_reference_head(chain, datadir)
            datadir, previous = tmp_path / f"datadir{kill}", 0
        node = NodeProcess(run_args(chain, datadir, "--workers", "2"))  # workers die with it
        time.sleep(rng.uniform(0.5, 5.0))
        node.stop(signal.SIGKILL)
        resumes = node.matching(r'msg="import resuming"')
        if resumes:
            assert f"after={previous} " in resumes[0], resumes[0]
        number, _, _ = stored_head(chain, datadir)
        assert number >= previous  # nothing committed is lost
        previous = number
        heads.append(number)
    print("heads after each SIGKILL:", heads)
    last = NodeProcess(run_args(chain, datadir, "--workers", "2"))
    assert f"after={previous} " in last.wait_for(r'msg="import resuming"')
    last.wait_for(r'msg="import finished"')
    assert last.stop(signal.SIGTERM) == 0
    assert_reference_head(chain, datadir)


def test_a_crash_loop_exits_1_naming_the_actor_and_the_error(
    chain: ReferenceChain, tmp_path: Path
) -> None:
    datadir = tmp_path / "datadir"
    faults = {"KHIPU_FAULTS": "StorageWriter.import_block=raise:always@2"}
    node = NodeProcess(run_args(chain, datadir), env=faults)
    code = node.process.wait(LINE_TIMEOUT)
    node._reader.join(10)
    assert code == 1, "\n".join(node.lines[-20:])
    gave_up = node.matching(r"^khipu: supervision gave up")
    assert gave_up, "\n".join(node.lines[-20:])
    assert "gave up on NodeSupervisor/StorageWriter after 5 restart(s)" in gave_up[0]
    assert "fault injected at StorageWriter.import_block" in gave_up[0]
    assert len(node.matching(r"StorageWriter restarting in")) == 5
    number, _, _ = stored_head(chain, datadir)
    assert number == 2


def test_health_stall_restarts_a_silent_importer_and_health_lines_say_so(
    chain: ReferenceChain, tmp_path: Path
) -> None:
    datadir = tmp_path / "datadir"
    faults = {"KHIPU_FAULTS": "Importer.next_block=stall:600@3"}
    args = run_args(chain, datadir, "--health.interval", "0.2", "--health.stall", "1")
    node = NodeProcess(args, env=faults)
    node.wait_for(r"NodeSupervisor/Importer restarting in")
    node.wait_for(r'msg="import finished"')
    line = node.wait_for(r"actor=Importer state=running .*restarts=1 ")
    assert 'last_error="ActorStalled: NodeSupervisor/Importer did not answer' in line
    assert node.stop(signal.SIGTERM) == 0
    assert_reference_head(chain, datadir)


def test_a_second_signal_forces_the_exit_while_the_writer_is_stuck_and_the_store_survives(
    chain: ReferenceChain, tmp_path: Path
) -> None:
    datadir = tmp_path / "datadir"
    stuck = {"KHIPU_FAULTS": "StorageWriter.import_block=stall:600@3"}
    node = NodeProcess(run_args(chain, datadir), env=stuck)
    node.wait_for(r"fault injected: stall at StorageWriter.import_block")
    node.process.send_signal(signal.SIGTERM)
    node.wait_for(r"SIGTERM received, stopping")
    node.wait_for(r"stopping NodeSupervisor/StorageWriter")  # waits for the stuck block
    assert node.stop(signal.SIGTERM) == 130
    assert node.matching(r"second SIGTERM, exiting now")
    again = NodeProcess(run_args(chain, datadir))
    again.wait_for(r'msg="import finished"')
    assert again.stop(signal.SIGTERM) == 0
    assert_reference_head(chain, datadir)


def test_bad_run_arguments_exit_2_saying_why(chain: ReferenceChain, tmp_path: Path) -> None:
    missing = NodeProcess(["--datadir", str(tmp_path / "d"), "--import", str(tmp_path / "no.rlp")])
    assert missing.process.wait(LINE_TIMEOUT) == 2
    missing.wait_for(r"no\.rlp: no such file")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = NodeProcess(
            run_args(chain, tmp_path / "d2", "--metrics", "--metrics.port", str(port))
        )
        assert busy.process.wait(LINE_TIMEOUT) == 2
        busy.wait_for(rf"error: cannot serve metrics on 127\.0\.0\.1:{port}")


def rpc(url: str, method: str, *params: object) -> object:
    request = urllib.request.Request(
        url,
        data=json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        answer = json.loads(response.read())
    assert "error" not in answer, answer
    return answer["result"]


def test_the_node_serves_json_rpc_and_khipu_status_while_it_imports(
    chain: ReferenceChain, tmp_path: Path
) -> None:
    datadir = tmp_path / "datadir"
    node = NodeProcess(run_args(chain, datadir, "--workers", "2"))
    url = node.wait_for(r'msg="json-rpc serving"').split("url=", 1)[1].split()[0]
    node.wait_for(r'msg="import finished"')
    assert int(str(rpc(url, "eth_blockNumber")), 16) == chain.blocks
    head = rpc(url, "eth_getBlockByNumber", "latest", False)
    assert isinstance(head, dict) and head["hash"] == "0x" + chain.head_hash.hex()
    deadline = time.monotonic() + LINE_TIMEOUT
    while True:  # the board fills at the monitor's first heartbeat round (every 5 s here)
        health = rpc(url, "khipu_health")
        assert isinstance(health, dict)
        workers = [a for a in health["actors"] if "/worker-" in a["actor"]]
        if len(workers) == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    states = {actor["actor"].split("/")[-1]: actor["state"] for actor in health["actors"]}
    assert states.get("StorageWriter") == "running", health
    assert health["sync"]["head"] == chain.blocks
    status = subprocess.run(
        [sys.executable, "-m", "khipu.cli", "status", "--rpc", url],
        capture_output=True, text=True, timeout=60, cwd=REPO_ROOT,
    )  # fmt: skip
    assert status.returncode == 0, status.stdout + status.stderr
    assert "StorageWriter" in status.stdout and "running" in status.stdout
    assert "ExecutionSupervisor/worker-1" in status.stdout, status.stdout
    assert {w["kind"] for w in workers} == {"process"}, health
    assert node.stop(signal.SIGTERM) == 0, "\n".join(node.lines[-20:])


def test_ws_port_and_a_busy_rpc_port(chain: ReferenceChain, tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        blocked = NodeProcess([*run_args(chain, tmp_path / "a"), "--http.port", str(port)])
        assert blocked.process.wait(120) == 2
        blocked._reader.join(10)
        assert blocked.matching("cannot serve JSON-RPC"), "\n".join(blocked.lines[-10:])
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        ws_port = free.getsockname()[1]
    node = NodeProcess([*run_args(chain, tmp_path / "b"), "--ws", "--ws.port", str(ws_port)])
    urls = [node.wait_for(r'msg="json-rpc serving"'), node.wait_for(f":{ws_port}/")]
    assert any(f":{ws_port}/" in line for line in urls)
    node.wait_for(r'msg="import finished"')
    assert int(str(rpc(f"http://127.0.0.1:{ws_port}/", "eth_blockNumber")), 16) == chain.blocks
    assert node.stop(signal.SIGTERM) == 0, "\n".join(node.lines[-20:])
