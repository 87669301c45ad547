"""discv4 packets (devp2p discv4.md): `hash || signature || type || rlp(data)`, at most 1280 bytes.

Decoding accepts extra list elements and trailing data (EIP-8 forward compatibility), checks the
hash and recovers the sender's node id from the signature; expiry is checked by the caller.
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass

from coincurve import PrivateKey

from khipu.p2p import wire
from khipu.p2p.errors import P2PError, PeerMisbehaved
from khipu.p2p.keys import keccak256, recover_node_id, sign_recoverable

MAX_PACKET_SIZE = 1280
HEADER_SIZE = 32 + 65 + 1
DISCOVERY_VERSION = 4
EXPIRATION = 20  # seconds a packet we send stays valid

PING, PONG, FIND_NODE, NEIGHBORS, ENR_REQUEST, ENR_RESPONSE = 1, 2, 3, 4, 5, 6


class InvalidPacket(P2PError):
    """A datagram that is not a valid discv4 packet; it is dropped, never answered."""


@dataclass(frozen=True)
class Endpoint:
    """An IP address with UDP and TCP ports, as packets carry it."""

    ip: str
    udp_port: int
    tcp_port: int

    def encode(self) -> list[object]:
        return [ipaddress.ip_address(self.ip).packed, self.udp_port, self.tcp_port]

    @classmethod
    def decode(cls, item: wire.Item) -> Endpoint:
        fields = wire.as_list(item, "endpoint", 3)
        raw_ip = wire.as_bytes(fields[0], "endpoint ip")
        ip = str(ipaddress.ip_address(raw_ip)) if len(raw_ip) in (4, 16) else "0.0.0.0"
        return cls(
            ip,
            wire.as_int(fields[1], "udp port", 16),
            wire.as_int(fields[2], "tcp port", 16),
        )


@dataclass(frozen=True)
class Ping:
    sender: Endpoint
    recipient: Endpoint
    expiration: int
    enr_seq: int | None = None


@dataclass(frozen=True)
class Pong:
    recipient: Endpoint
    ping_hash: bytes
    expiration: int
    enr_seq: int | None = None


@dataclass(frozen=True)
class FindNode:
    target: bytes
    expiration: int


@dataclass(frozen=True)
class NodeRecord:
    """One entry of Neighbors: where a node is and its id."""

    endpoint: Endpoint
    node_id: bytes


@dataclass(frozen=True)
class Neighbors:
    nodes: tuple[NodeRecord, ...]
    expiration: int


@dataclass(frozen=True)
class EnrRequest:
    expiration: int


@dataclass(frozen=True)
class EnrResponse:
    request_hash: bytes
    record: bytes  # the RLP of the ENR; see khipu.p2p.enr

    expiration: int = 0  # ENRResponse carries none; present so every packet has one


Message = Ping | Pong | FindNode | Neighbors | EnrRequest | EnrResponse


@dataclass(frozen=True)
class Packet:
    """A decoded packet: its hash (what Pong and ENRResponse refer to), sender and message."""

    hash: bytes
    sender_id: bytes
    message: Message


def expiration(now: float | None = None) -> int:
    """The expiration timestamp to put in a packet sent now."""
    return int(now if now is not None else time.time()) + EXPIRATION


def _encode_message(message: Message) -> tuple[int, list[object]]:
    if isinstance(message, Ping):
        data: list[object] = [
            DISCOVERY_VERSION,
            message.sender.encode(),
            message.recipient.encode(),
            message.expiration,
        ]
        return PING, data + ([message.enr_seq] if message.enr_seq is not None else [])
    if isinstance(message, Pong):
        data = [message.recipient.encode(), message.ping_hash, message.expiration]
        return PONG, data + ([message.enr_seq] if message.enr_seq is not None else [])
    if isinstance(message, FindNode):
        return FIND_NODE, [message.target, message.expiration]
    if isinstance(message, Neighbors):
        nodes = [[*n.endpoint.encode(), n.node_id] for n in message.nodes]
        return NEIGHBORS, [nodes, message.expiration]
    if isinstance(message, EnrRequest):
        return ENR_REQUEST, [message.expiration]
    return ENR_RESPONSE, [message.request_hash, wire.decode(message.record, "ENR")]


def encode_packet(private_key: PrivateKey, message: Message) -> tuple[bytes, bytes]:
    """The signed datagram for `message` and its hash; raise P2PError if over 1280 bytes."""
    packet_type, data = _encode_message(message)
    body = bytes([packet_type]) + wire.encode(data)
    signature = sign_recoverable(private_key, keccak256(body))
    packet_hash = keccak256(signature + body)
    datagram = packet_hash + signature + body
    if len(datagram) > MAX_PACKET_SIZE:
        raise P2PError(f"discv4 packet type {packet_type} is {len(datagram)} B, over 1280")
    return datagram, packet_hash


def _optional_seq(fields: list[wire.Item], index: int) -> int | None:
    if len(fields) <= index or not isinstance(fields[index], bytes):
        return None
    return wire.as_int(fields[index], "enr-seq", 64)


def _decode_message(packet_type: int, data: wire.Item) -> Message:
    if packet_type == PING:
        f = wire.as_list(data, "Ping", 4)
        return Ping(
            Endpoint.decode(f[1]),
            Endpoint.decode(f[2]),
            wire.as_int(f[3], "expiration", 64),
            _optional_seq(f, 4),
        )
    if packet_type == PONG:
        f = wire.as_list(data, "Pong", 3)
        return Pong(
            Endpoint.decode(f[0]),
            wire.as_hash(f[1], "ping hash"),
            wire.as_int(f[2], "expiration", 64),
            _optional_seq(f, 3),
        )
    if packet_type == FIND_NODE:
        f = wire.as_list(data, "FindNode", 2)
        return FindNode(wire.as_bytes(f[0], "target", 64), wire.as_int(f[1], "expiration", 64))
    if packet_type == NEIGHBORS:
        f = wire.as_list(data, "Neighbors", 2)
        nodes = []
        for entry in wire.as_list(f[0], "Neighbors nodes"):
            n = wire.as_list(entry, "Neighbors node", 4)
            nodes.append(NodeRecord(Endpoint.decode(n[:3]), wire.as_bytes(n[3], "node id", 64)))
        return Neighbors(tuple(nodes), wire.as_int(f[1], "expiration", 64))
    if packet_type == ENR_REQUEST:
        f = wire.as_list(data, "ENRRequest", 1)
        return EnrRequest(wire.as_int(f[0], "expiration", 64))
    if packet_type == ENR_RESPONSE:
        f = wire.as_list(data, "ENRResponse", 2)
        wire.as_list(f[1], "ENR")
        return EnrResponse(wire.as_hash(f[0], "request hash"), wire.encode(f[1]))
    raise InvalidPacket(f"unknown discv4 packet type {packet_type}")


def decode_packet(datagram: bytes) -> Packet:
    """Check and decode a datagram; raise InvalidPacket if size, hash, signature or data fail."""
    if len(datagram) > MAX_PACKET_SIZE:
        raise InvalidPacket(f"datagram of {len(datagram)} B is over 1280")
    if len(datagram) <= HEADER_SIZE:
        raise InvalidPacket(f"datagram of {len(datagram)} B is too short")
    packet_hash, signature, body = datagram[:32], datagram[32:97], datagram[97:]
    if keccak256(datagram[32:]) != packet_hash:
        raise InvalidPacket("packet hash mismatch")
    try:
        sender_id = recover_node_id(signature, keccak256(body))
        data = wire.decode(body[1:], "discv4 packet", strict=False)
        message = _decode_message(body[0], data)
    except (PeerMisbehaved, P2PError, ValueError) as exc:
        if isinstance(exc, InvalidPacket):
            raise
        raise InvalidPacket(f"discv4 packet type {body[0]}: {exc}") from exc
    return Packet(packet_hash, sender_id, message)
