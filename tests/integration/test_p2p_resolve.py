"""`khipu devp2p discv4 resolve`: a node's record from the node itself, or through a lookup."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from coincurve import PrivateKey

from khipu import cli
from khipu.p2p.discv4.service import Discovery, start_discovery
from khipu.p2p.keys import Enode


@dataclass
class Nodes:
    boot: Enode
    target: Enode


def enode_of(discovery: Discovery) -> Enode:
    endpoint = discovery.endpoint
    return Enode(discovery.node_id, "127.0.0.1", endpoint.tcp_port, endpoint.udp_port)


@pytest.fixture
def nodes() -> Iterator[Nodes]:
    """A boot node and a target that bonded with it, answering on a loop of their own."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def start() -> tuple[Discovery, Discovery]:
        boot = await start_discovery(PrivateKey(), "127.0.0.1", 0)
        target = await start_discovery(PrivateKey(), "127.0.0.1", 0)
        await target.bootstrap([(boot.node_id, boot.endpoint)])
        return boot, target

    boot, target = asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=30)
    try:
        yield Nodes(enode_of(boot), enode_of(target))
    finally:
        boot.close()
        target.close()
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)


def resolve(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, object]]:
    code = cli.main(["devp2p", "discv4", "resolve", *args, "--json", "--timeout", "30"])
    return code, json.loads(capsys.readouterr().out)


def a_silent_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_resolve_asks_the_node_for_its_record(
    nodes: Nodes, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = resolve(capsys, str(nodes.target))
    assert code == 0, out
    assert out["found_by"] == "direct"
    assert out["node"] == str(nodes.target)
    assert str(out["enr"]).startswith("enr:") and isinstance(out["seq"], int)


def test_a_node_that_moved_is_found_through_the_boot_node(
    nodes: Nodes, capsys: pytest.CaptureFixture[str]
) -> None:
    stale = Enode(nodes.target.node_id, "127.0.0.1", nodes.target.tcp_port, a_silent_udp_port())
    code, out = resolve(capsys, str(stale), "--bootnodes", str(nodes.boot))
    assert code == 0, out
    assert out["found_by"] == "lookup"
    assert out["node"] == str(nodes.target)  # where it really answers


def test_an_unreachable_node_without_boot_nodes_is_an_error(
    nodes: Nodes, capsys: pytest.CaptureFixture[str]
) -> None:
    stale = Enode(nodes.target.node_id, "127.0.0.1", nodes.target.tcp_port, a_silent_udp_port())
    code, out = resolve(capsys, str(stale))
    assert code == 1 and out["ok"] is False
    assert "cannot resolve" in str(out["error"])
