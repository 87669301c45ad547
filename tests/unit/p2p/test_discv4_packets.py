"""discv4 packets against EIP-8's vectors, round trips, size and tamper checks; ENR (EIP-778)."""

from __future__ import annotations

import pytest
from coincurve import PrivateKey

from khipu.chain.forkid import ForkId
from khipu.p2p import enr
from khipu.p2p.discv4 import packets as pk
from khipu.p2p.discv4.packets import Endpoint, InvalidPacket, NodeRecord
from khipu.p2p.keys import public_key_bytes
from tests.unit.p2p import eip8_vectors as v

KEY_B = PrivateKey(v.STATIC_KEY_B)
ID_B = public_key_bytes(KEY_B)


def test_eip8_ping_vectors_decode() -> None:
    ping = pk.decode_packet(v.DISCOVERY_PING_V4)
    assert ping.sender_id == ID_B
    assert isinstance(ping.message, pk.Ping)
    assert ping.message.sender == Endpoint("127.0.0.1", 3322, 5544)
    assert ping.message.recipient.ip == "::1"
    assert ping.message.expiration == 1136239445
    ping555 = pk.decode_packet(v.DISCOVERY_PING_V555)
    assert isinstance(ping555.message, pk.Ping)
    assert ping555.message.sender.ip == "2001:db8:3c4d:15::abcd:ef12"


def test_eip8_other_vectors_decode() -> None:
    pong = pk.decode_packet(v.DISCOVERY_PONG)
    assert isinstance(pong.message, pk.Pong) and pong.sender_id == ID_B
    findnode = pk.decode_packet(v.DISCOVERY_FINDNODE)
    assert isinstance(findnode.message, pk.FindNode) and len(findnode.message.target) == 64
    neighbours = pk.decode_packet(v.DISCOVERY_NEIGHBOURS)
    assert isinstance(neighbours.message, pk.Neighbors)
    assert [n.endpoint.ip for n in neighbours.message.nodes] == [
        "99.33.22.55",
        "1.2.3.4",
        "2001:db8:3c4d:15::abcd:ef12",
        "2001:db8:85a3:8d3:1319:8a2e:370:7348",
    ]


def test_round_trip_and_tamper() -> None:
    key = PrivateKey()
    message = pk.Ping(Endpoint("127.0.0.1", 30303, 30304), Endpoint("10.0.0.1", 1, 2), 99, 7)
    datagram, packet_hash = pk.encode_packet(key, message)
    packet = pk.decode_packet(datagram)
    assert (packet.message, packet.hash, packet.sender_id) == (
        message,
        packet_hash,
        public_key_bytes(key),
    )
    tampered = bytearray(datagram)
    tampered[-1] ^= 1
    with pytest.raises(InvalidPacket):
        pk.decode_packet(bytes(tampered))
    with pytest.raises(InvalidPacket):
        pk.decode_packet(datagram + b"\0" * 1280)
    with pytest.raises(InvalidPacket):
        pk.decode_packet(datagram[:90])


def test_neighbors_of_twelve_fit_in_a_packet() -> None:
    nodes = tuple(
        NodeRecord(Endpoint("2001:db8::1", 65535, 65535), bytes([i]) * 64) for i in range(12)
    )
    datagram, _ = pk.encode_packet(PrivateKey(), pk.Neighbors(nodes, 2**32))
    assert len(datagram) <= pk.MAX_PACKET_SIZE
    decoded = pk.decode_packet(datagram).message
    assert isinstance(decoded, pk.Neighbors) and decoded.nodes == nodes


def test_enr_example_vector() -> None:
    record = enr.parse_text(v.ENR_EXAMPLE)
    assert record.seq == 1
    assert record.node_id == ID_B
    assert record.ip == "127.0.0.1"
    assert record.port(b"udp") == 30303
    ours = enr.make_record(KEY_B, 1, ip="127.0.0.1", udp_port=30303)
    assert ours.text() == v.ENR_EXAMPLE


def test_enr_with_fork_id_and_tampering() -> None:
    key = PrivateKey()
    fork = ForkId(bytes.fromhex("e29a7b81"), 0)
    record = enr.make_record(key, 3, "127.0.0.1", 30303, 30303, fork)
    decoded = enr.decode_record(record.encode())
    assert decoded.fork_id == fork
    assert decoded.node_id == public_key_bytes(key)
    assert decoded.port(b"tcp") == 30303
    raw = bytearray(record.encode())
    raw[-1] ^= 1  # change the udp port: the signature no longer matches
    with pytest.raises(enr.InvalidRecord):
        enr.decode_record(bytes(raw))
    with pytest.raises(enr.InvalidRecord):
        enr.decode_record(b"\xc0")
