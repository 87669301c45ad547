"""eth/68 and eth/69 message codes and codecs (devp2p caps/eth.md, EIP-7642). Every decoder takes
an untrusted payload and returns typed values or raises PeerMisbehaved; headers, bodies and
receipts stay RLP bytes.

eth/69 differs from eth/68 in three places: Status carries the served block range instead of the
total difficulty, BlockRangeUpdate (0x11) announces a new range, and receipts travel without
their blooms (khipu.p2p.eth.receipts)."""

from __future__ import annotations

from dataclasses import dataclass

from khipu.chain.forkid import ForkId
from khipu.p2p import wire
from khipu.p2p.errors import PeerMisbehaved
from khipu.p2p.keys import keccak256
from khipu.p2p.session import Capability

ETH68 = Capability("eth", 68)
ETH69 = Capability("eth", 69)
MESSAGE_COUNT = 17  # eth/68: ids 0x00..0x10
ETH69_MESSAGE_COUNT = 18  # eth/69: ids 0x00..0x11
# What Hello offers by default: the highest version both sides speak is agreed.
CAPABILITIES = {ETH69: ETH69_MESSAGE_COUNT, ETH68: MESSAGE_COUNT}
SUPPORTED_VERSIONS = (69, 68)

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
BLOCK_RANGE_UPDATE = 0x11  # eth/69 on

RESPONSE_TO = {
    GET_BLOCK_HEADERS: BLOCK_HEADERS,
    GET_BLOCK_BODIES: BLOCK_BODIES,
    GET_RECEIPTS: RECEIPTS,
    GET_POOLED_TRANSACTIONS: POOLED_TRANSACTIONS,
}


def capabilities(versions: tuple[int, ...] = SUPPORTED_VERSIONS) -> dict[Capability, int]:
    """The eth capabilities for Hello, one per version in `versions` (68 and/or 69), with their
    message id counts. Raises ValueError for a version we do not speak."""
    counts = {68: MESSAGE_COUNT, 69: ETH69_MESSAGE_COUNT}
    unknown = [v for v in versions if v not in counts]
    if unknown or not versions:
        raise ValueError(f"eth versions {list(versions)}: khipu speaks eth/68 and eth/69")
    return {Capability("eth", version): counts[version] for version in versions}


@dataclass(frozen=True)
class BlockRange:
    """The full blocks (bodies and receipts) a node serves: `earliest` to `latest`, the latter
    with its hash. eth/69's Status carries it, BlockRangeUpdate announces a new one."""

    earliest: int
    latest: int
    latest_hash: bytes

    def fields(self) -> list[object]:
        return [self.earliest, self.latest, self.latest_hash]

    def encode(self) -> bytes:
        """The BlockRangeUpdate payload `[earliest, latest, latest-hash]`."""
        return wire.encode(self.fields())

    @classmethod
    def from_fields(cls, fields: list[wire.Item], what: str) -> BlockRange:
        """From `[earliest, latest, latest-hash]`; raises PeerMisbehaved if malformed or
        invalid (earliest after latest, a zero hash: go-ethereum's checks)."""
        block_range = cls(
            wire.as_int(fields[0], f"{what} earliest block", 64),
            wire.as_int(fields[1], f"{what} latest block", 64),
            wire.as_hash(fields[2], f"{what} latest block hash"),
        )
        if block_range.earliest > block_range.latest:
            raise PeerMisbehaved(
                f"{what}: earliest block {block_range.earliest} after latest {block_range.latest}"
            )
        if block_range.latest_hash == b"\0" * 32:
            raise PeerMisbehaved(f"{what}: zero latest block hash")
        return block_range

    @classmethod
    def decode(cls, payload: bytes) -> BlockRange:
        """A BlockRangeUpdate payload; raises PeerMisbehaved as `from_fields` does."""
        fields = wire.as_list(wire.decode(payload, "BlockRangeUpdate"), "BlockRangeUpdate", 3)
        if len(fields) != 3:
            raise PeerMisbehaved(f"BlockRangeUpdate has {len(fields)} fields, not 3")
        return cls.from_fields(fields, "BlockRangeUpdate")


@dataclass(frozen=True)
class Status:
    """The eth handshake message: who we are and what chain we follow.

    eth/68 sends the total difficulty and the head hash; eth/69 sends the served block range
    (`block_range`, whose latest hash is the head hash) and no total difficulty (None).
    """

    version: int
    network_id: int
    total_difficulty: int | None
    head_hash: bytes
    genesis_hash: bytes
    fork_id: ForkId
    block_range: BlockRange | None = None

    def encode(self) -> bytes:
        """The Status payload in the layout of `version`. Raises ValueError if a field of that
        layout is missing (an eth/69 Status without its range, an eth/68 one without TD)."""
        fork = [self.fork_id.fork_hash, self.fork_id.fork_next]
        if self.version >= 69:
            if self.block_range is None:
                raise ValueError("an eth/69 Status needs the served block range")
            return wire.encode(
                [self.version, self.network_id, self.genesis_hash, fork, *self.block_range.fields()]
            )
        if self.total_difficulty is None:
            raise ValueError("an eth/68 Status needs the total difficulty")
        return wire.encode(
            [
                self.version,
                self.network_id,
                self.total_difficulty,
                self.head_hash,
                self.genesis_hash,
                fork,
            ]
        )

    @classmethod
    def decode(cls, payload: bytes, version: int = 68) -> Status:
        """A Status in the layout of the negotiated `version`; raises PeerMisbehaved if it is
        malformed (for eth/69 also an invalid block range)."""
        fields = wire.as_list(wire.decode(payload, "Status"), "Status", 7 if version >= 69 else 6)
        if version >= 69:
            block_range = BlockRange.from_fields(fields[4:7], "Status")
            return cls(
                version=wire.as_int(fields[0], "Status version", 32),
                network_id=wire.as_int(fields[1], "Status network id", 64),
                total_difficulty=None,
                head_hash=block_range.latest_hash,
                genesis_hash=wire.as_hash(fields[2], "Status genesis hash"),
                fork_id=_fork_id(fields[3]),
                block_range=block_range,
            )
        return cls(
            version=wire.as_int(fields[0], "Status version", 32),
            network_id=wire.as_int(fields[1], "Status network id", 64),
            total_difficulty=wire.as_int(fields[2], "Status total difficulty"),
            head_hash=wire.as_hash(fields[3], "Status head hash"),
            genesis_hash=wire.as_hash(fields[4], "Status genesis hash"),
            fork_id=_fork_id(fields[5]),
        )


def _fork_id(item: wire.Item) -> ForkId:
    fork = wire.as_list(item, "Status fork id", 2)
    return ForkId(wire.as_bytes(fork[0], "fork hash", 4), wire.as_int(fork[1], "fork next", 64))


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
