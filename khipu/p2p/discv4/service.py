"""The discv4 service: answers pings with endpoint proofs, bonds, serves FindNode and ENR
requests to verified nodes only, runs iterative lookups and checks table liveness.

It is an asyncio DatagramProtocol; the UDP socket (or an in-memory transport in tests) is
given to `connection_made`. Requests are coroutines that time out with RequestTimeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from coincurve import PrivateKey

from khipu.chain.forkid import ForkId
from khipu.p2p.discv4 import packets as pk
from khipu.p2p.discv4.packets import Endpoint, InvalidPacket, NodeRecord, Packet
from khipu.p2p.discv4.table import BUCKET_SIZE, Node, RoutingTable, distance
from khipu.p2p.enr import InvalidRecord, NodeRecordV4, decode_record, make_record
from khipu.p2p.errors import P2PError, RequestTimeout
from khipu.p2p.keys import keccak256, public_key_bytes

log = logging.getLogger(__name__)

RESPONSE_TIMEOUT = 1.0  # seconds to wait for a pong, neighbors or ENR response
BOND_EXPIRATION = 12 * 3600  # an endpoint proof stays valid this long (discv4.md)
MAX_NEIGHBORS_PER_PACKET = 12  # 12 entries keep a Neighbors packet under 1280 bytes
LOOKUP_PARALLELISM = 3  # alpha
REVALIDATE_INTERVAL = 10.0
REFRESH_INTERVAL = 30 * 60.0  # a random lookup this often keeps the table fresh
Address = tuple[str, int]


@dataclass
class _Pending:
    sender_id: bytes
    packet_type: int
    matches: Callable[[Packet], bool]
    future: asyncio.Future[list[Packet]]
    wanted: int = 1  # Neighbors arrive in several packets: gather this many nodes
    got: list[Packet] = field(default_factory=list)


class Discovery(asyncio.DatagramProtocol):
    """One discv4 node: our key, our advertised endpoint, our record and routing table."""

    def __init__(
        self,
        private_key: PrivateKey,
        endpoint: Endpoint,
        fork_id: Callable[[], ForkId] | None = None,
    ) -> None:
        self.private_key = private_key
        self.node_id = public_key_bytes(private_key)
        self.endpoint = endpoint
        self.table = RoutingTable(self.node_id)
        self._fork_id = fork_id
        self._record: NodeRecordV4 | None = None
        self._transport: Any = None
        self._pending: list[_Pending] = []
        self._last_pong_from: dict[bytes, float] = {}  # they proved their endpoint to us
        self._last_ping_from: dict[bytes, float] = {}  # they checked ours: they will answer us
        self._ping_waiters: dict[bytes, asyncio.Event] = {}
        self._tasks: set[asyncio.Future[None]] = set()
        self.records: dict[bytes, NodeRecordV4] = {}  # the latest ENR of each node we asked
        self.dropped = 0  # invalid or unsolicited packets, for metrics and tests

    # ---- our record

    @property
    def record(self) -> NodeRecordV4:
        """Our signed ENR; re-signed with a higher seq whenever the fork id changes."""
        fork_id = self._fork_id() if self._fork_id else None
        if self._record is None or self._record_fork_id() != fork_id:
            seq = 1 if self._record is None else self._record.seq + 1
            self._record = make_record(
                self.private_key,
                seq,
                self.endpoint.ip,
                self.endpoint.tcp_port,
                self.endpoint.udp_port,
                fork_id,
            )
        return self._record

    def _record_fork_id(self) -> ForkId | None:
        return self._record.fork_id if self._record else None

    # ---- transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport

    def close(self) -> None:
        """Stop answering and fail every pending request."""
        if self._transport is not None:
            self._transport.close()
        for task in list(self._tasks):
            task.cancel()
        for pending in self._pending:
            if not pending.future.done():
                pending.future.set_exception(P2PError("discovery closed"))
        self._pending.clear()

    def _send(self, address: Address, message: pk.Message) -> bytes:
        datagram, packet_hash = pk.encode_packet(self.private_key, message)
        if self._transport is not None:
            self._transport.sendto(datagram, address)
        return packet_hash

    def datagram_received(self, data: bytes, addr: Address) -> None:  # type: ignore[override]
        try:
            packet = pk.decode_packet(data)
        except InvalidPacket as exc:
            self.dropped += 1
            log.debug("dropped datagram from %s:%d: %s", addr[0], addr[1], exc)
            return
        message = packet.message
        if not isinstance(message, pk.EnrResponse) and message.expiration < time.time():
            self.dropped += 1
            return
        handler = _HANDLERS.get(type(message))
        if handler is not None:
            handler(self, packet, addr)

    # ---- answering

    def _on_ping(self, packet: Packet, addr: Address) -> None:
        assert isinstance(packet.message, pk.Ping)
        seen_from = Endpoint(addr[0], addr[1], packet.message.sender.tcp_port)
        pong = pk.Pong(seen_from, packet.hash, pk.expiration(), self.record.seq)
        self._send(addr, pong)
        self._last_ping_from[packet.sender_id] = time.time()
        self._note_enr_seq(packet.sender_id, seen_from, packet.message.enr_seq)
        waiter = self._ping_waiters.pop(packet.sender_id, None)
        if waiter is not None:
            waiter.set()
        if not self._verified(packet.sender_id):
            self._spawn(self._ping_back(packet.sender_id, seen_from))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _ping_back(self, node_id: bytes, endpoint: Endpoint) -> None:
        with contextlib.suppress(P2PError):
            await self.ping(endpoint, node_id)

    def _on_reply(self, packet: Packet, addr: Address) -> None:
        for pending in self._pending:
            if (
                pending.sender_id == packet.sender_id
                and pending.packet_type == _TYPE_OF[type(packet.message)]
                and pending.matches(packet)
            ):
                pending.got.append(packet)
                if isinstance(packet.message, pk.Pong):  # the endpoint proof, recorded at once
                    self._last_pong_from[packet.sender_id] = time.time()
                if self._complete(pending) and not pending.future.done():
                    pending.future.set_result(pending.got)
                return
        self.dropped += 1  # unsolicited

    def _complete(self, pending: _Pending) -> bool:
        if pending.packet_type != pk.NEIGHBORS:
            return True
        # Senders split answers into packets of 12 nodes: a shorter packet is the last one.
        messages = [p.message for p in pending.got if isinstance(p.message, pk.Neighbors)]
        nodes = sum(len(m.nodes) for m in messages)
        return nodes >= pending.wanted or len(messages[-1].nodes) < MAX_NEIGHBORS_PER_PACKET

    def _on_find_node(self, packet: Packet, addr: Address) -> None:
        assert isinstance(packet.message, pk.FindNode)
        if not self._verified(packet.sender_id):
            self.dropped += 1  # no endpoint proof: answering would amplify spoofed traffic
            return
        closest = self.table.closest(packet.message.target, BUCKET_SIZE)
        records = [NodeRecord(n.endpoint, n.node_id) for n in closest]
        for start in range(0, max(len(records), 1), MAX_NEIGHBORS_PER_PACKET):
            chunk = tuple(records[start : start + MAX_NEIGHBORS_PER_PACKET])
            self._send(addr, pk.Neighbors(chunk, pk.expiration()))

    def _on_enr_request(self, packet: Packet, addr: Address) -> None:
        if not self._verified(packet.sender_id):
            self.dropped += 1
            return
        self._send(addr, pk.EnrResponse(packet.hash, self.record.encode()))

    def _verified(self, node_id: bytes) -> bool:
        return time.time() - self._last_pong_from.get(node_id, 0.0) < BOND_EXPIRATION

    # ---- asking

    async def _request(
        self,
        node_id: bytes,
        address: Address,
        message: pk.Message,
        reply_type: int,
        matches: Callable[[bytes, Packet], bool],
        wanted: int = 1,
        timeout: float | None = None,
    ) -> list[Packet]:
        timeout = timeout or RESPONSE_TIMEOUT
        future: asyncio.Future[list[Packet]] = asyncio.get_running_loop().create_future()
        pending = _Pending(node_id, reply_type, lambda p: True, future, wanted)
        self._pending.append(pending)
        try:
            request_hash = self._send(address, message)
            pending.matches = lambda packet: matches(request_hash, packet)
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            if pending.got:  # Neighbors: fewer nodes than asked for is a complete answer
                return pending.got
            raise RequestTimeout(
                f"node {node_id.hex()[:16]} at {address[0]}:{address[1]} sent no "
                f"{_REPLY_NAMES[reply_type]} in {timeout}s"
            ) from None
        finally:
            self._pending.remove(pending)

    async def ping(self, endpoint: Endpoint, node_id: bytes) -> pk.Pong:
        """Ping a node, await its pong (which must echo our ping hash) and add it to the table.

        Raises RequestTimeout if no valid pong arrives.
        """
        ping = pk.Ping(self.endpoint, endpoint, pk.expiration(), self.record.seq)
        address = (endpoint.ip, endpoint.udp_port)
        replies = await self._request(
            node_id,
            address,
            ping,
            pk.PONG,
            lambda ping_hash, p: (
                isinstance(p.message, pk.Pong) and p.message.ping_hash == ping_hash
            ),
        )
        pong = replies[0].message
        assert isinstance(pong, pk.Pong)
        self._note_enr_seq(node_id, endpoint, pong.enr_seq)
        self._add_to_table(Node(node_id, endpoint, last_pong=time.time()))
        return pong

    def _add_to_table(self, node: Node) -> None:
        oldest = self.table.add(node)
        if oldest is not None:  # bucket full: check whether its oldest entry still lives
            self._spawn(self._revalidate(oldest))

    async def _revalidate(self, node: Node) -> None:
        try:
            await self.ping(node.endpoint, node.node_id)
        except P2PError:
            self.table.remove(node.node_id)

    async def bond(self, endpoint: Endpoint, node_id: bytes, wait_for_ping: float = 1.0) -> None:
        """Make sure both sides hold an endpoint proof: ping unless verified, then give the node
        a moment to ping us back. Raises RequestTimeout if the node does not answer."""
        if not self._verified(node_id):
            waiter = self._ping_waiters.setdefault(node_id, asyncio.Event())
            await self.ping(endpoint, node_id)
            if time.time() - self._last_ping_from.get(node_id, 0.0) >= BOND_EXPIRATION:
                with contextlib.suppress(TimeoutError):  # it may answer us anyway
                    await asyncio.wait_for(waiter.wait(), wait_for_ping)
            self._ping_waiters.pop(node_id, None)

    async def find_node(
        self, endpoint: Endpoint, node_id: bytes, target: bytes
    ) -> list[NodeRecord]:
        """Ask a node for the nodes closest to `target` (bonding first if needed)."""
        await self.bond(endpoint, node_id)
        replies = await self._request(
            node_id,
            (endpoint.ip, endpoint.udp_port),
            pk.FindNode(target, pk.expiration()),
            pk.NEIGHBORS,
            lambda _, p: isinstance(p.message, pk.Neighbors),
            wanted=BUCKET_SIZE,
        )
        found: list[NodeRecord] = []
        for reply in replies:
            assert isinstance(reply.message, pk.Neighbors)
            found.extend(reply.message.nodes)
        return found[:BUCKET_SIZE]

    async def request_enr(self, endpoint: Endpoint, node_id: bytes) -> NodeRecordV4:
        """Fetch and verify a node's ENR (EIP-868); raise InvalidRecord if it is not theirs."""
        await self.bond(endpoint, node_id)
        replies = await self._request(
            node_id,
            (endpoint.ip, endpoint.udp_port),
            pk.EnrRequest(pk.expiration()),
            pk.ENR_RESPONSE,
            lambda request_hash, p: (
                isinstance(p.message, pk.EnrResponse) and p.message.request_hash == request_hash
            ),
        )
        response = replies[0].message
        assert isinstance(response, pk.EnrResponse)
        record = decode_record(response.record)
        if record.node_id != node_id:
            raise InvalidRecord(f"node {node_id.hex()[:16]} sent the record of another node")
        self.records[node_id] = record
        return record

    def _note_enr_seq(self, node_id: bytes, endpoint: Endpoint, seq: int | None) -> None:
        """EIP-868: a ping or pong announcing a newer record than ours makes us fetch it."""
        known = self.records.get(node_id)
        if seq is not None and known is not None and seq > known.seq:
            self._spawn(self._refetch_record(endpoint, node_id))

    async def _refetch_record(self, endpoint: Endpoint, node_id: bytes) -> None:
        with contextlib.suppress(P2PError):
            await self.request_enr(endpoint, node_id)

    async def lookup(self, target: bytes) -> list[Node]:
        """An iterative Kademlia lookup: the nodes closest to `target` we could reach.

        Queries the LOOKUP_PARALLELISM closest unasked nodes per round until no closer node turns
        up; nodes that answer are added to the table by the bond.
        """
        target_hash = keccak256(target)
        candidates = {n.node_id: n for n in self.table.closest(target)}
        asked: set[bytes] = set()
        while True:
            nearest = sorted(candidates.values(), key=lambda n: distance(n.id_hash, target_hash))
            batch = [n for n in nearest[:BUCKET_SIZE] if n.node_id not in asked][
                :LOOKUP_PARALLELISM
            ]
            if not batch:
                return nearest[:BUCKET_SIZE]
            asked.update(n.node_id for n in batch)
            answers = await asyncio.gather(
                *(self.find_node(n.endpoint, n.node_id, target) for n in batch),
                return_exceptions=True,
            )
            for node, answer in zip(batch, answers, strict=True):
                if isinstance(answer, BaseException):
                    candidates.pop(node.node_id, None)
                    continue
                for record in answer:
                    if record.node_id != self.node_id and record.node_id not in candidates:
                        candidates[record.node_id] = Node(record.node_id, record.endpoint)

    async def bootstrap(self, bootnodes: list[tuple[bytes, Endpoint]]) -> int:
        """Bond with the boot nodes, then look up our own id to fill the table.

        Returns how many nodes the table holds afterwards; unreachable boot nodes are skipped.
        """
        results = await asyncio.gather(
            *(self.ping(endpoint, node_id) for node_id, endpoint in bootnodes),
            return_exceptions=True,
        )
        if any(not isinstance(result, BaseException) for result in results):
            await self.lookup(self.node_id)
        return len(self.table)

    async def refresh_forever(self, interval: float = REFRESH_INTERVAL) -> None:
        """Every `interval` seconds look up a random target, discovering new nodes."""
        while True:
            await asyncio.sleep(interval)
            await self.refresh()

    async def refresh(self) -> None:
        """Look up a random target once: the table learns the nodes met on the way."""
        target = PrivateKey().public_key.format(compressed=False)[1:]
        await self.lookup(bytes(target))

    async def revalidate_forever(self, interval: float = REVALIDATE_INTERVAL) -> None:
        """Every `interval` seconds ping the least recently seen node of a random non-empty
        bucket; a node that fails is replaced by the newest entry of its replacement list."""
        while True:
            await asyncio.sleep(interval)
            await self.revalidate()

    async def revalidate(self) -> None:
        """Ping the least recently seen node of a random non-empty bucket once; a node that
        fails is replaced by the newest entry of its replacement list."""
        buckets = [b for b in self.table.buckets if b.entries]
        if buckets:
            await self._revalidate(random.choice(buckets).entries[0])


_HANDLERS: dict[type, Callable[[Discovery, Packet, Address], None]] = {
    pk.Ping: Discovery._on_ping,
    pk.Pong: Discovery._on_reply,
    pk.FindNode: Discovery._on_find_node,
    pk.Neighbors: Discovery._on_reply,
    pk.EnrRequest: Discovery._on_enr_request,
    pk.EnrResponse: Discovery._on_reply,
}
_REPLY_NAMES = {pk.PONG: "Pong", pk.NEIGHBORS: "Neighbors", pk.ENR_RESPONSE: "ENRResponse"}
_TYPE_OF: dict[type, int] = {
    pk.Pong: pk.PONG,
    pk.Neighbors: pk.NEIGHBORS,
    pk.EnrResponse: pk.ENR_RESPONSE,
}


async def start_discovery(
    private_key: PrivateKey,
    host: str,
    port: int,
    advertised: Endpoint | None = None,
    fork_id: Callable[[], ForkId] | None = None,
) -> Discovery:
    """Bind a UDP socket on host:port and start answering; port 0 picks a free port."""
    loop = asyncio.get_running_loop()
    endpoint = advertised or Endpoint(host, port, port)
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: Discovery(private_key, endpoint, fork_id), local_addr=(host, port)
    )
    if port == 0:
        bound = transport.get_extra_info("sockname")[1]
        protocol.endpoint = advertised or Endpoint(host, bound, bound)
    return protocol
