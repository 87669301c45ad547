"""Two `khipu run` nodes on 127.0.0.1: B has A as its boot node, finds it over discv4 and the
two connect (whoever dials first; the other side's dial sees the connection and stays away).
Both report one peer in admin_peers, net_peerCount, khipu_health and /metrics; a peer that
breaks the protocol is disconnected, bad-listed and refused on return while A keeps serving."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from coincurve import PrivateKey

from khipu.p2p import session as p2p
from khipu.p2p.errors import DisconnectReason, PeerDisconnected
from khipu.p2p.eth import messages as eth
from khipu.p2p.eth.peer import EthPeer, LocalChain
from khipu.p2p.keys import Enode, public_key_bytes
from khipu.p2p.peers import bad_list_file
from tests.conftest import REPO_ROOT, require_testdata
from tests.integration.node_helpers import wait_until
from tests.integration.test_node_p2p import RunningNode
from tests.unit.p2p.chainfile import MemoryChain

BLOCKS = 45
CAPS = {eth.ETH68: eth.MESSAGE_COUNT}


def rpc(url: str, method: str) -> Any:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": []}).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["result"]


class Node:
    """A running node with its enode and URLs."""

    def __init__(self, running: RunningNode, datadir: Path) -> None:
        self.running = running
        self.datadir = datadir
        self.enode = running.wait_for(r"devp2p serving.* enode=(enode://\S+)").group(1)
        self.rpc_url = running.wait_for(r'msg="json-rpc serving" url=(\S+)').group(1)
        self.metrics_url = running.wait_for(r"metrics at (http[^\s\"]+)").group(1)

    def peers(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = rpc(self.rpc_url, "admin_peers")
        return result

    def metric(self, line_start: str) -> float:
        with urllib.request.urlopen(self.metrics_url, timeout=30) as response:
            for line in response.read().decode().splitlines():
                if line.startswith(line_start):
                    return float(line.rsplit(" ", 1)[1])
        return 0.0


@pytest.fixture(scope="module")
def suite() -> Path:
    return require_testdata("rpc-compat-prague")


@pytest.fixture(scope="module")
def nodes(suite: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Node, Node]]:
    folder = tmp_path_factory.mktemp("two-nodes")
    common = [
        *("--genesis", str(suite / "genesis.json"), "--http.port", "0", "--port", "0"),
        *("--metrics", "--metrics.port", "0", "--health.interval", "2"),
    ]
    chain_file = str(suite / "chain.rlp")
    a_run = RunningNode(
        [*common, "--datadir", str(folder / "a"), "--no-seal-check", "--import", chain_file]
    )
    started: list[RunningNode] = [a_run]
    try:
        a = Node(a_run, folder / "a")
        a_run.wait_for(rf'msg="import finished" head={BLOCKS}\b')
        b_run = RunningNode([*common, "--datadir", str(folder / "b"), "--bootnodes", a.enode])
        started.append(b_run)
        b = Node(b_run, folder / "b")
        yield a, b
    finally:
        codes = [running.stop() for running in reversed(started)]
        assert codes == [0] * len(started), "\n".join(started[0].lines[-20:])


def test_b_finds_a_through_its_boot_node_and_both_show_one_peer(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    wait_until(lambda: len(a.peers()) == 1 and len(b.peers()) == 1, 120, "a and b connected")
    [a_sees], [b_sees] = a.peers(), b.peers()
    a_key = a.enode.removeprefix("enode://").split("@")[0]
    b_key = b.enode.removeprefix("enode://").split("@")[0]
    assert a_sees["enode"].startswith(f"enode://{b_key}@127.0.0.1:")
    assert b_sees["enode"].startswith(f"enode://{a_key}@127.0.0.1:")
    assert a_sees["network"]["inbound"] != b_sees["network"]["inbound"]
    assert a_sees["caps"] == ["eth/69", "eth/68", "snap/1"]  # both nodes agree on eth/69
    assert a_sees["protocols"]["eth"]["version"] == 69 == b_sees["protocols"]["eth"]["version"]
    assert b_sees["protocols"]["eth"]["latestBlock"] == BLOCKS  # A's range, from its Status
    assert b_sees["name"].startswith("khipu")
    assert rpc(a.rpc_url, "net_peerCount") == "0x1" == rpc(b.rpc_url, "net_peerCount")
    # B's peer actor checked A's head: A's block 45 header and body, served and valid
    wait_until(lambda: b.peers()[0]["score"] == 2, 60, "b's check of a's head")
    health = rpc(b.rpc_url, "khipu_health")
    assert health["p2p"]["peers"] == 1 and health["p2p"]["bad_listed"] == 0
    [peer_line] = health["p2p"]["peer_list"]
    assert peer_line["id"] == a_key[:16] and peer_line["score"] == 2
    wait_until(
        lambda: any(a.startswith("PeerManager/peer-") for a in _actors(b)), 30, "peer actor row"
    )
    total = a.metric('khipu_p2p_peers{direction="inbound"}') + a.metric(
        'khipu_p2p_peers{direction="outbound"}'
    )
    assert total == 1


def _actors(node: Node) -> list[str]:
    return [row["actor"] for row in rpc(node.rpc_url, "khipu_health")["actors"]]


def test_a_hostile_peer_is_dropped_bad_listed_and_refused_while_a_serves(
    nodes: tuple[Node, Node], suite: Path
) -> None:
    a, _ = nodes
    chain = MemoryChain(suite / "genesis.json", suite / "chain.rlp")
    enode = Enode.parse(a.enode)
    key = PrivateKey()

    async def connect() -> tuple[EthPeer, asyncio.Task[Any]]:
        session = await p2p.dial(enode.ip, enode.tcp_port, key, enode.node_id, CAPS)
        peer = EthPeer(session, LocalChain.from_reader(chain), chain)
        await peer.exchange_status()
        return peer, asyncio.create_task(peer.run())

    async def scenario() -> None:
        peer, run = await connect()
        await peer.session.send("eth", eth.GET_RECEIPTS, b"\xc3\x01\x02")  # ill-formed
        ended = await asyncio.wait_for(run, 60)
        assert isinstance(ended, PeerDisconnected)
        assert ended.reason == DisconnectReason.BREACH_OF_PROTOCOL
        await asyncio.to_thread(
            wait_until,
            lambda: rpc(a.rpc_url, "khipu_health")["p2p"]["bad_listed"] == 1,
            60,
            "a bad-listed peer",
        )
        with pytest.raises(PeerDisconnected) as refused:
            await connect()
        assert refused.value.reason == DisconnectReason.USELESS_PEER

    asyncio.run(scenario())
    assert len(a.peers()) == 1  # B is still connected and A still serves
    assert a.metric('khipu_p2p_offences_total{offence="malformed"}') == 1
    assert a.metric('khipu_p2p_refused_total{reason="useless_peer"}') == 1
    assert a.metric("khipu_p2p_bad_listed ") == 1
    # kept in A's datadir, so a restarted A still refuses it
    [stored] = bad_list_file.load(a.datadir / bad_list_file.FILE_NAME)
    assert stored.node_id == public_key_bytes(key)


def test_khipu_status_shows_b_s_discovery_actor_with_a_in_its_table(
    nodes: tuple[Node, Node],
) -> None:
    _, b = nodes

    def discovery_reported() -> bool:
        health = rpc(b.rpc_url, "khipu_health")
        names = {str(actor.get("actor", "")).rsplit("/", 1)[-1] for actor in health["actors"]}
        facts = health["p2p"].get("discovery") or {}
        return "Discovery" in names and facts.get("table", 0) >= 1

    wait_until(discovery_reported, 60, "b's Discovery actor in khipu_health, A in its table")
    result = subprocess.run(
        [sys.executable, "-m", "khipu.cli", "status", "--rpc", b.rpc_url],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = [line.split()[0] for line in result.stdout.splitlines()[2:] if line.strip()]
    assert "Discovery" in rows and "PeerManager" in rows, result.stdout
