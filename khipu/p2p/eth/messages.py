"""eth/68 message codes and codecs (devp2p caps/eth.md). Every decoder takes an untrusted payload
and returns typed values or raises PeerMisbehaved; headers, bodies and receipts stay RLP bytes."""

from __future__ import annotations

from dataclasses import dataclass

from khipu.chain.forkid import ForkId
from khipu.p2p import wire
from khipu.p2p.errors import PeerMisbehaved
from khipu.p2p.keys import keccak256
from khipu.p2p.session import Capability

ETH_VERSION = 68
ETH68 = Capability("eth", ETH_VERSION)
MESSAGE_COUNT = 17  # ids 0x00..0x10

STATUS = 0x00
NEW_BLOCK_HASHES = 0x01
TRANSACTIONS = 0x02
GET_BLOCK_HEADERS = 0x03
BLOCK_HEADERS = 0x04
GET_BLOCK_BODIES = 0x05
BLOCK_BODIES = 0x06
NEW_BLOCK = 0x07
NEW_POOLED_TRANSACTION_HASHES = 0x08
GET_POOLED_TRANSACTIONS = 0x09
POOLED_TRANSACTIONS = 0x0A
GET_RECEIPTS = 0x0F
RECEIPTS = 0x10

RESPONSE_TO = {
    GET_BLOCK_HEADERS: BLOCK_HEADERS,
    GET_BLOCK_BODIES: BLOCK_BODIES,
    GET_RECEIPTS: RECEIPTS,
    GET_POOLED_TRANSACTIONS: POOLED_TRANSACTIONS,
}


@dataclass(frozen=True)
class Status:
    """The eth handshake message: who we are and what chain we follow."""

    version: int
    network_id: int
    total_difficulty: int
    head_hash: bytes
    genesis_hash: bytes
    fork_id: ForkId

    def encode(self) -> bytes:
        return wire.encode(
            [
                self.version,
                self.network_id,
                self.total_difficulty,
                self.head_hash,
                self.genesis_hash,
                [self.fork_id.fork_hash, self.fork_id.fork_next],
            ]
        )

    @classmethod
    def decode(cls, payload: bytes) -> Status:
        fields = wire.as_list(wire.decode(payload, "Status"), "Status", 6)
        fork = wire.as_list(fields[5], "Status fork id", 2)
        return cls(
            version=wire.as_int(fields[0], "Status version", 32),
            network_id=wire.as_int(fields[1], "Status network id", 64),
            total_difficulty=wire.as_int(fields[2], "Status total difficulty"),
            head_hash=wire.as_hash(fields[3], "Status head hash"),
            genesis_hash=wire.as_hash(fields[4], "Status genesis hash"),
            fork_id=ForkId(
                wire.as_bytes(fork[0], "fork hash", 4), wire.as_int(fork[1], "fork next", 64)
            ),
        )


@dataclass(frozen=True)
class HeaderRequest:
    """GetBlockHeaders: `amount` headers from `origin` (number or hash), `skip` apart."""

    origin: int | bytes
    amount: int
    skip: int = 0
    reverse: bool = False

    def encode_query(self) -> list[object]:
        return [self.origin, self.amount, self.skip, int(self.reverse)]

    @classmethod
    def decode_query(cls, item: wire.Item) -> HeaderRequest:
        fields = wire.as_list(item, "GetBlockHeaders query", 4)
        origin_item = wire.as_bytes(fields[0], "GetBlockHeaders origin")
        origin: int | bytes = (
            origin_item if len(origin_item) == 32 else wire.as_int(origin_item, "origin", 64)
        )
        reverse = wire.as_int(fields[3], "reverse", 8)
        if reverse > 1:
            raise PeerMisbehaved(f"GetBlockHeaders reverse flag is {reverse}")
        return cls(
            origin,
            wire.as_int(fields[1], "GetBlockHeaders amount", 64),
            wire.as_int(fields[2], "GetBlockHeaders skip", 64),
            bool(reverse),
        )


def encode_request(request_id: int, body: object) -> bytes:
    """`[request-id, body]`, the shape of every eth/66+ request and response."""
    return wire.encode([request_id, body])


def encode_raw_response(request_id: int, encoded_items: list[bytes]) -> bytes:
    """`[request-id, [item, ...]]` from items that are already RLP."""
    return wire.encode_raw_list([wire.encode(request_id), wire.encode_raw_list(encoded_items)])


def decode_request(payload: bytes, what: str) -> tuple[int, wire.Item]:
    """Split `[request-id, body]`; raise PeerMisbehaved if the shape is wrong."""
    fields = wire.as_list(wire.decode(payload, what), what, 2)
    return wire.as_int(fields[0], f"{what} request id", 64), fields[1]


def decode_hash_list(item: wire.Item, what: str) -> list[bytes]:
    """A list of 32-byte hashes."""
    return [wire.as_hash(entry, what) for entry in wire.as_list(item, what)]


def encode_items(item: wire.Item, what: str) -> list[bytes]:
    """Each element of a decoded list, re-encoded as RLP bytes (canonical, so as received)."""
    return [wire.encode(entry) for entry in wire.as_list(item, what)]


def decode_new_block_hashes(payload: bytes) -> list[tuple[bytes, int]]:
    """NewBlockHashes: `[[hash, number], ...]`."""
    announced = []
    for entry in wire.as_list(wire.decode(payload, "NewBlockHashes"), "NewBlockHashes"):
        pair = wire.as_list(entry, "NewBlockHashes entry", 2)
        announced.append((wire.as_hash(pair[0], "hash"), wire.as_int(pair[1], "number", 64)))
    return announced


def decode_new_block(payload: bytes) -> tuple[bytes, int]:
    """NewBlock: `[block, td]`; returns the block's RLP and the announced total difficulty."""
    fields = wire.as_list(wire.decode(payload, "NewBlock"), "NewBlock", 2)
    block = wire.as_list(fields[0], "NewBlock block", 3)
    wire.as_list(block[0], "NewBlock header", 15)
    return wire.encode(block), wire.as_int(fields[1], "NewBlock total difficulty")


@dataclass(frozen=True)
class HeaderFacts:
    """The few header fields the p2p layer needs, with the header's hash."""

    block_hash: bytes
    number: int
    parent_hash: bytes
    timestamp: int


def header_facts(header_rlp: bytes) -> HeaderFacts:
    """Hash, number, parent and time of an RLP header; raise PeerMisbehaved if malformed."""
    fields = wire.as_list(wire.decode(header_rlp, "block header"), "block header", 15)
    return HeaderFacts(
        block_hash=keccak256(header_rlp),
        number=wire.as_int(fields[8], "header number", 64),
        parent_hash=wire.as_hash(fields[0], "header parent hash"),
        timestamp=wire.as_int(fields[11], "header timestamp", 64),
    )
