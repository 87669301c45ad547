"""Start and stop the EthereumJS peers of /work/shared/peers for interop tests.

A peer folder is copied to a cache under the temp dir and installed there once with
`npm ci` (the shared folder is read-only); tests skip with the reason when node or npm is
missing or the install fails.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT


def peers_root() -> Path:
    """$KHIPU_PEERS, or ../shared/peers beside the checkout."""
    configured = os.environ.get("KHIPU_PEERS")
    return Path(configured) if configured else REPO_ROOT.parent / "shared" / "peers"


def installed_peer(name: str) -> Path:
    """A ready-to-run copy of peer folder `name` (serve, ejs-client), or skip saying why."""
    source = peers_root() / name
    if not source.is_dir():
        pytest.skip(f"interop peer {source} is absent (set KHIPU_PEERS)")
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed: cannot run the EthereumJS interop peer")
    lock = (source / "package-lock.json").read_bytes()
    digest = hashlib.sha256(lock).hexdigest()[:12]
    target = Path(tempfile.gettempdir()) / "khipu-test-peers" / f"{name}-{digest}"
    if not (target / "node_modules").is_dir():
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(source, target, ignore=shutil.ignore_patterns("node_modules"))
        result = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"],
            cwd=target,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if result.returncode != 0:
            shutil.rmtree(target / "node_modules", ignore_errors=True)
            pytest.skip(f"npm ci failed in {target}: {result.stderr[-500:]}")
    return target


def free_port() -> int:
    """A port free for both TCP and UDP on 127.0.0.1, as far as we can tell."""
    for _ in range(20):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = int(tcp.getsockname()[1])
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            try:
                udp.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port found")


@dataclass
class ServingPeer:
    """A running serve.mjs: its enode, its fork id line and its output so far."""

    process: subprocess.Popen[str]
    enode: str
    fork_id: str
    port: int
    output: list[str] = field(default_factory=list)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def start_serving_peer(genesis: Path, chain: Path, *extra: str) -> ServingPeer:
    """Run serve.mjs on a free loopback port and wait for READY (skip if it cannot start)."""
    folder = installed_peer("serve")
    port = free_port()
    process = subprocess.Popen(
        [
            *("node", "serve.mjs", "--genesis", str(genesis), "--chain", str(chain)),
            *("--port", str(port), "--host", "127.0.0.1", *extra),
        ],
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    output: list[str] = []
    enode = fork_id = ""
    deadline = time.monotonic() + 90
    for line in process.stdout:
        output.append(line.rstrip())
        if line.startswith("ENODE "):
            enode = line.split()[1]
        elif line.startswith("FORKID "):
            fork_id = line.split(maxsplit=1)[1].strip()
        elif line.strip() == "READY":
            break
        if time.monotonic() > deadline:
            break
    if not enode or process.poll() is not None:
        process.kill()
        pytest.fail("serve.mjs did not start:\n" + "\n".join(output[-20:]))
    peer = ServingPeer(process, enode, fork_id, port, output)
    threading.Thread(target=_drain, args=(process, output), daemon=True).start()
    return peer


def _drain(process: subprocess.Popen[str], output: list[str]) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        output.append(line.rstrip())


@dataclass
class ExecutionClient:
    """A running EthereumJS execution client and its enode."""

    process: subprocess.Popen[bytes]
    enode: str

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(12)  # it can take up to 10 s
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def start_ejs_client(genesis: Path, chain: Path, datadir: Path) -> ExecutionClient:
    """Run @ethereumjs/client with `genesis` and `chain` on a free port; wait for its rlpx file.

    Its exit code says nothing (it exits 0 on failed start-up), so readiness is the file
    DATADIR/<genesis stem>/rlpx that holds the enode.
    """
    folder = installed_peer("ejs-client")
    port = free_port()
    cli_js = folder / "node_modules/@ethereumjs/client/dist/esm/bin/cli.js"
    process = subprocess.Popen(
        [
            *("node", str(cli_js), f"--gethGenesis={genesis}", f"--loadBlocksFromRlp={chain}"),
            *(f"--dataDir={datadir}", f"--port={port}", "--extIP=127.0.0.1", "--discDns=false"),
            *("--discV4=true", "--maxPeers=10", "--execution=false", "--logFile=false"),
            "--logLevel=warn",
        ],
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ready = datadir / genesis.stem / "rlpx"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if ready.exists() and ready.read_text().startswith("enode://"):
            return ExecutionClient(process, ready.read_text().strip())
        time.sleep(0.5)
    client = ExecutionClient(process, "")
    client.stop()
    pytest.fail(f"the EthereumJS client did not get ready ({ready} missing)")
