"""The discv4 service over an in-memory UDP network: bonding, endpoint proofs, FindNode,
ENR requests with the eth fork id, lookups, expiry and liveness checks."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest
from coincurve import PrivateKey

from khipu.chain.forkid import ForkId
from khipu.p2p.discv4 import packets as pk
from khipu.p2p.discv4 import service as discovery
from khipu.p2p.discv4.table import BUCKET_SIZE, Node, RoutingTable, log_distance
from khipu.p2p.errors import RequestTimeout
from khipu.p2p.keys import keccak256
from tests.unit.p2p.memory_udp import MemoryNetwork


def test_ping_bonds_both_ways() -> None:
    async def scenario() -> None:
        net = MemoryNetwork()
        a, b = net.add(1), net.add(2)
        pong = await a.ping(b.endpoint, b.node_id)
        assert pong.recipient.ip == "127.0.0.1" and pong.recipient.udp_port == 1
        await asyncio.sleep(0.01)  # b pings a back after answering
        assert a.table.get(b.node_id) is not None
        assert b.table.get(a.node_id) is not None

    asyncio.run(scenario())


def test_find_node_needs_an_endpoint_proof() -> None:
    async def scenario() -> None:
        net = MemoryNetwork()
        a, b = net.add(1), net.add(2)
        others = [net.add(10 + i) for i in range(5)]
        for other in others:
            await b.ping(other.endpoint, other.node_id)
        # a sends FindNode without ever bonding: b must not answer (amplification guard)
        with pytest.raises(RequestTimeout):
            await a._request(
                b.node_id,
                ("127.0.0.1", 2),
                pk.FindNode(a.node_id, pk.expiration()),
                pk.NEIGHBORS,
                lambda _, p: True,
                timeout=0.2,
            )
        assert b.dropped >= 1
        found = await a.find_node(b.endpoint, b.node_id, a.node_id)  # bonds first
        assert {r.node_id for r in found} >= {o.node_id for o in others}

    asyncio.run(scenario())


def test_expired_packets_are_dropped() -> None:
    async def scenario() -> None:
        net = MemoryNetwork()
        a, b = net.add(1), net.add(2)
        stale = pk.Ping(a.endpoint, b.endpoint, int(time.time()) - 5)
        a._send(("127.0.0.1", 2), stale)
        await asyncio.sleep(0.01)
        assert b.dropped == 1
        assert b.table.get(a.node_id) is None

    asyncio.run(scenario())


def test_enr_request_returns_record_with_fork_id() -> None:
    async def scenario() -> None:
        net = MemoryNetwork()
        a, b = net.add(1), net.add(2)
        fork = ForkId(bytes.fromhex("e29a7b81"), 0)
        b._fork_id = lambda: fork
        record = await a.request_enr(b.endpoint, b.node_id)
        assert record.node_id == b.node_id
        assert record.fork_id == fork
        assert record.port(b"udp") == 2

    asyncio.run(scenario())


def test_lookup_walks_hop_by_hop() -> None:
    async def scenario() -> None:
        net = MemoryNetwork()
        # a line: node i knows only its neighbours i-1 and i+1, so finding the last node from
        # the first takes one FindNode round per hop
        nodes = [net.add(100 + i) for i in range(10)]
        for left, right in itertools.pairwise(nodes):
            await left.ping(right.endpoint, right.node_id)
        seeker = net.add(1)
        await seeker.ping(nodes[0].endpoint, nodes[0].node_id)
        target = nodes[-1].node_id
        found = await seeker.lookup(target)
        target_hash = int.from_bytes(keccak256(target), "big")
        distances = [int.from_bytes(n.id_hash, "big") ^ target_hash for n in found]
        assert found[0].node_id == target
        assert distances == sorted(distances)
        assert {n.node_id for n in found} == {n.node_id for n in nodes}
        assert seeker.table.get(target) is not None  # bonded on the way

    asyncio.run(scenario())


def test_table_buckets_and_replacements() -> None:
    table = RoutingTable(PrivateKey().public_key.format(compressed=False)[1:])
    endpoint = pk.Endpoint("127.0.0.1", 1, 1)
    # fill the farthest bucket (log distance 256): about half of all random ids land there
    far: list[Node] = []
    while len(far) < BUCKET_SIZE + 3:
        node_id = PrivateKey().public_key.format(compressed=False)[1:]
        if log_distance(table.self_hash, keccak256(node_id)) == 256:
            far.append(Node(node_id, endpoint))
    for node in far[:BUCKET_SIZE]:
        assert table.add(node) is None
    oldest = table.add(far[BUCKET_SIZE])
    assert oldest is far[0]  # full: the least recently seen entry is up for a liveness check
    assert table.get(far[BUCKET_SIZE].node_id) is None
    table.add(far[BUCKET_SIZE + 1])
    table.remove(far[0].node_id)
    assert table.get(far[BUCKET_SIZE + 1].node_id) is not None  # newest replacement promoted
    table.add(far[1])  # seen again: moves to the tail
    assert table.bucket_of(far[1].node_id).entries[-1] is far[1]


def test_dead_node_is_replaced_on_revalidation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(discovery, "RESPONSE_TIMEOUT", 0.1)

    async def scenario() -> None:
        net = MemoryNetwork()
        a, b = net.add(1), net.add(2)
        await a.ping(b.endpoint, b.node_id)
        net.down.add(("127.0.0.1", 2))
        await a._revalidate(a.table.get(b.node_id))  # type: ignore[arg-type]
        assert a.table.get(b.node_id) is None

    asyncio.run(scenario())


def test_bootstrap_fills_the_table_from_a_boot_node() -> None:
    async def scenario() -> None:
        net = MemoryNetwork()
        boot = net.add(2)
        others = [net.add(10 + i) for i in range(6)]
        for other in others:
            await other.ping(boot.endpoint, boot.node_id)
        newcomer = net.add(1)
        missing = net.add(3)
        net.down.add(("127.0.0.1", 3))
        size = await newcomer.bootstrap(
            [(boot.node_id, boot.endpoint), (missing.node_id, missing.endpoint)]
        )
        assert size == len(newcomer.table) >= 1 + len(others)
        assert newcomer.table.get(missing.node_id) is None

    asyncio.run(scenario())


def test_newer_enr_seq_in_a_ping_refreshes_the_record() -> None:
    async def scenario() -> None:
        net = MemoryNetwork()
        a, b = net.add(1), net.add(2)
        first = await a.request_enr(b.endpoint, b.node_id)
        b._fork_id = lambda: ForkId(b"\x01\x02\x03\x04", 0)  # b's record changes: seq + 1
        assert b.record.seq == first.seq + 1
        await b.ping(a.endpoint, a.node_id)  # carries the new seq
        for _ in range(100):
            if a.records[b.node_id].seq > first.seq:
                break
            await asyncio.sleep(0.01)
        assert a.records[b.node_id].fork_id == ForkId(b"\x01\x02\x03\x04", 0)

    asyncio.run(scenario())
