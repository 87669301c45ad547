"""Ethereum Node Records (EIP-778) with the "v4" identity scheme, and the `eth` entry that
carries a fork id (EIP-868 serves records over discv4; devp2p enr-entries/eth.md).

A record is `rlp([signature, seq, k, v, ...])` with keys sorted and unique, at most 300 bytes;
the signature is the 64-byte secp256k1 r || s over keccak256(rlp([seq, k, v, ...])).
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field

from coincurve import PrivateKey, PublicKey
from coincurve.ecdsa import cdata_to_der, deserialize_recoverable, recoverable_convert

from khipu.chain.forkid import ForkId
from khipu.p2p import wire
from khipu.p2p.errors import P2PError, PeerMisbehaved
from khipu.p2p.keys import keccak256, sign_recoverable

MAX_RECORD_SIZE = 300


class InvalidRecord(P2PError):
    """A node record that is malformed, oversized or wrongly signed."""


@dataclass(frozen=True)
class NodeRecordV4:
    """A verified ENR: sequence number and key/value pairs (values as raw RLP items)."""

    seq: int
    pairs: Mapping[bytes, wire.Item]
    signature: bytes = field(default=b"", compare=False)

    @property
    def node_id(self) -> bytes:
        """The 64-byte public key (node id) the record belongs to."""
        compressed = wire.as_bytes(self.pairs[b"secp256k1"], "secp256k1", 33)
        return bytes(PublicKey(compressed).format(compressed=False)[1:])

    @property
    def ip(self) -> str | None:
        raw = self.pairs.get(b"ip")
        return str(ipaddress.ip_address(raw)) if isinstance(raw, bytes) and len(raw) == 4 else None

    def port(self, key: bytes) -> int | None:
        raw = self.pairs.get(key)
        return wire.as_int(raw, key.decode(), 16) if isinstance(raw, bytes) else None

    @property
    def fork_id(self) -> ForkId | None:
        """The fork id of the `eth` entry (`[[fork_hash, fork_next], ...]`), if present."""
        entry = self.pairs.get(b"eth")
        if entry is None:
            return None
        try:
            first = wire.as_list(wire.as_list(entry, "eth entry", 1)[0], "eth fork id", 2)
            return ForkId(wire.as_bytes(first[0], "fork hash", 4), wire.as_int(first[1], "next"))
        except PeerMisbehaved as exc:
            raise InvalidRecord(f"ENR eth entry is malformed: {exc}") from exc

    def encode(self) -> bytes:
        return wire.encode([self.signature, *self._content()])

    def _content(self) -> list[object]:
        items: list[object] = [self.seq]
        for key in sorted(self.pairs):
            items += [key, self.pairs[key]]
        return items

    def text(self) -> str:
        """The `enr:...` text form (URL-safe base64 without padding)."""
        return "enr:" + base64.urlsafe_b64encode(self.encode()).decode().rstrip("=")


def make_record(
    private_key: PrivateKey,
    seq: int,
    ip: str | None = None,
    tcp_port: int | None = None,
    udp_port: int | None = None,
    fork_id: ForkId | None = None,
) -> NodeRecordV4:
    """A signed record for our node."""
    pairs: dict[bytes, wire.Item] = {
        b"id": b"v4",
        b"secp256k1": bytes(private_key.public_key.format(compressed=True)),
    }
    if ip is not None:
        pairs[b"ip"] = ipaddress.ip_address(ip).packed
    if tcp_port is not None:
        pairs[b"tcp"] = _int_bytes(tcp_port)
    if udp_port is not None:
        pairs[b"udp"] = _int_bytes(udp_port)
    if fork_id is not None:
        pairs[b"eth"] = [[fork_id.fork_hash, _int_bytes(fork_id.fork_next)]]
    unsigned = NodeRecordV4(seq, pairs)
    content = wire.encode(unsigned._content())
    signature = sign_recoverable(private_key, keccak256(content))[:64]
    record = NodeRecordV4(seq, pairs, signature)
    if len(record.encode()) > MAX_RECORD_SIZE:
        raise InvalidRecord(f"our record is {len(record.encode())} B, over {MAX_RECORD_SIZE}")
    return record


def _int_bytes(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def decode_record(data: bytes) -> NodeRecordV4:
    """Parse and verify an ENR; raise InvalidRecord if it is malformed or badly signed."""
    if len(data) > MAX_RECORD_SIZE:
        raise InvalidRecord(f"record of {len(data)} B is over {MAX_RECORD_SIZE}")
    try:
        items = wire.as_list(wire.decode(data, "ENR"), "ENR", 2)
        signature = wire.as_bytes(items[0], "ENR signature")
        seq = wire.as_int(items[1], "ENR seq", 64)
    except PeerMisbehaved as exc:
        raise InvalidRecord(str(exc)) from exc
    rest = items[2:]
    if len(rest) % 2:
        raise InvalidRecord("ENR has a key without a value")
    pairs: dict[bytes, wire.Item] = {}
    previous = b""
    for index in range(0, len(rest), 2):
        key = rest[index]
        if not isinstance(key, bytes) or (pairs and key <= previous):
            raise InvalidRecord("ENR keys must be unique byte strings in sorted order")
        pairs[key], previous = rest[index + 1], key
    if pairs.get(b"id") != b"v4":
        raise InvalidRecord(f"unsupported ENR identity scheme {pairs.get(b'id')!r}")
    record = NodeRecordV4(seq, pairs, signature)
    _verify(record, wire.encode(items[1:]))
    return record


def _verify(record: NodeRecordV4, content: bytes) -> None:
    key = record.pairs.get(b"secp256k1")
    if not isinstance(key, bytes) or len(key) != 33 or len(record.signature) != 64:
        raise InvalidRecord("ENR lacks a 33-byte secp256k1 key or a 64-byte signature")
    try:
        public = PublicKey(key)
        # coincurve verifies DER signatures: convert r || s via a recoverable form (recid 0).
        compact = deserialize_recoverable(record.signature + b"\0")
        der = cdata_to_der(recoverable_convert(compact))
        valid = public.verify(der, keccak256(content), hasher=None)
    except Exception as exc:  # a malformed key or signature
        raise InvalidRecord(f"ENR signature cannot be checked: {exc}") from exc
    if not valid:
        raise InvalidRecord("ENR signature does not match its key")


def parse_text(text: str) -> NodeRecordV4:
    """Decode the `enr:...` text form; raise InvalidRecord if malformed."""
    if not text.startswith("enr:"):
        raise InvalidRecord("ENR text must start with 'enr:'")
    body = text[4:]
    try:
        data = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except ValueError as exc:
        raise InvalidRecord(f"ENR text is not base64: {exc}") from exc
    return decode_record(data)
