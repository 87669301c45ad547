"""snap/1 messages (devp2p caps/snap.md): requests for account and storage ranges, bytecodes
and trie nodes, their responses, and the checks a response must pass before sync uses it."""

from __future__ import annotations

from dataclasses import dataclass

from khipu.p2p import wire
from khipu.p2p.errors import PeerMisbehaved
from khipu.p2p.keys import keccak256
from khipu.p2p.session import Capability
from khipu.p2p.snap.rangeproof import verify_range_proof
from khipu.p2p.snap.trie_nodes import BadProof

SNAP1 = Capability("snap", 1)
MESSAGE_COUNT = 8
GET_ACCOUNT_RANGE, ACCOUNT_RANGE = 0x00, 0x01
GET_STORAGE_RANGES, STORAGE_RANGES = 0x02, 0x03
GET_BYTE_CODES, BYTE_CODES = 0x04, 0x05
GET_TRIE_NODES, TRIE_NODES = 0x06, 0x07
RESPONSE_TO = {
    GET_ACCOUNT_RANGE: ACCOUNT_RANGE,
    GET_STORAGE_RANGES: STORAGE_RANGES,
    GET_BYTE_CODES: BYTE_CODES,
    GET_TRIE_NODES: TRIE_NODES,
}
EMPTY_ROOT = keccak256(b"\x80")
EMPTY_CODE_HASH = keccak256(b"")
SOFT_RESPONSE_LIMIT = 512 * 1024  # what we ask peers to fill per response


ZERO_HASH = b"\0" * 32
MAX_HASH = b"\xff" * 32


def _hash_bound(item: wire.Item, what: str, default: bytes) -> bytes:
    """A range bound as go-ethereum's BytesToHash reads it: empty is `default`, shorter is
    left-padded with zeros, longer keeps its last 32 bytes."""
    data = wire.as_bytes(item, what)
    return default if not data else data[-32:].rjust(32, b"\0")


@dataclass(frozen=True)
class GetAccountRange:
    """Accounts of the state `root` from `origin` on, up to `limit`, about `response_bytes`."""

    root: bytes
    origin: bytes
    limit: bytes
    response_bytes: int

    @classmethod
    def decode(cls, fields: list[wire.Item]) -> GetAccountRange:
        """From `[root, origin, limit, bytes]` after the request id (go-ethereum's form; the
        spec's `[root, origin, bytes]` without a limit is read too). Raises PeerMisbehaved."""
        wire.as_list(fields, "GetAccountRange", 3)
        limit = fields[2] if len(fields) > 3 else b""
        return cls(
            wire.as_hash(fields[0], "state root"),
            _hash_bound(fields[1], "origin", ZERO_HASH),
            _hash_bound(limit, "limit", MAX_HASH),
            wire.as_int(fields[-1], "response bytes", 64),
        )


@dataclass(frozen=True)
class GetStorageRanges:
    """Storage slots of `accounts` in the state `root`; `origin` and `limit` bound the first
    account's range only."""

    root: bytes
    accounts: tuple[bytes, ...]
    origin: bytes
    limit: bytes
    response_bytes: int

    @classmethod
    def decode(cls, fields: list[wire.Item]) -> GetStorageRanges:
        """From `[root, [account hash, ...], origin, limit, bytes]` after the request id (the
        limit may be left out). Raises PeerMisbehaved."""
        wire.as_list(fields, "GetStorageRanges", 4)
        limit = fields[3] if len(fields) > 4 else b""
        accounts = wire.as_list(fields[1], "storage accounts")
        return cls(
            wire.as_hash(fields[0], "state root"),
            tuple(wire.as_hash(a, "account hash") for a in accounts),
            _hash_bound(fields[2], "origin", ZERO_HASH),
            _hash_bound(limit, "limit", MAX_HASH),
            wire.as_int(fields[-1], "response bytes", 64),
        )


@dataclass(frozen=True)
class GetByteCodes:
    """Contract codes by hash."""

    hashes: tuple[bytes, ...]
    response_bytes: int

    @classmethod
    def decode(cls, fields: list[wire.Item]) -> GetByteCodes:
        """From `[[code hash, ...], bytes]` after the request id. Raises PeerMisbehaved."""
        wire.as_list(fields, "GetByteCodes", 2)
        hashes = wire.as_list(fields[0], "code hashes")
        return cls(
            tuple(wire.as_bytes(h, "code hash") for h in hashes),
            wire.as_int(fields[1], "response bytes", 64),
        )


@dataclass(frozen=True)
class GetTrieNodes:
    """Trie nodes of the state `root` by path: each path set is `[account path]` (a compact
    path in the account trie) or `[account hash, storage path, ...]` (compact paths in that
    account's storage trie)."""

    root: bytes
    paths: tuple[tuple[bytes, ...], ...]
    response_bytes: int

    @classmethod
    def decode(cls, fields: list[wire.Item]) -> GetTrieNodes:
        """From `[root, [[path, ...], ...], bytes]` after the request id. Raises
        PeerMisbehaved, also for an empty path set (go-ethereum drops such a peer too)."""
        wire.as_list(fields, "GetTrieNodes", 3)
        paths = []
        for group in wire.as_list(fields[1], "trie node paths"):
            items = wire.as_list(group, "path set")
            if not items:
                raise PeerMisbehaved("GetTrieNodes holds an empty path set")
            paths.append(tuple(wire.as_bytes(p, "trie path") for p in items))
        return cls(
            wire.as_hash(fields[0], "state root"),
            tuple(paths),
            wire.as_int(fields[2], "response bytes", 64),
        )


@dataclass(frozen=True)
class AccountRange:
    """Accounts `(hash, slim RLP body)` from the origin on, with the edge proof nodes."""

    accounts: tuple[tuple[bytes, bytes], ...]
    proof: tuple[bytes, ...]

    @classmethod
    def decode(cls, fields: list[wire.Item]) -> AccountRange:
        """From the fields after the request id: `[[[hash, body], ...], [node, ...]]`."""
        wire.as_list(fields, "AccountRange", 2)
        accounts = []
        for entry in wire.as_list(fields[0], "AccountRange accounts"):
            pair = wire.as_list(entry, "account entry", 2)
            body_item = pair[1]
            if isinstance(body_item, bytes):  # EthereumJS wraps the body in a string
                body_item = wire.decode(body_item, "account body")
            body = wire.encode(wire.as_list(body_item, "account body", 4))
            accounts.append((wire.as_hash(pair[0], "account hash"), body))
        proof = tuple(wire.as_bytes(n, "proof node") for n in wire.as_list(fields[1], "proof"))
        return cls(tuple(accounts), proof)

    def encode(self, request_id: int) -> bytes:
        """The AccountRange message: each body goes as the RLP list it is (go-ethereum's form)."""
        entries = [wire.encode_raw_list([wire.encode(h), body]) for h, body in self.accounts]
        return wire.encode_raw_list(
            [wire.encode(request_id), wire.encode_raw_list(entries), wire.encode(self.proof)]
        )


@dataclass(frozen=True)
class StorageRanges:
    """Per requested account, its slots `(hash, value)`; a proof only for a partial last one."""

    slots: tuple[tuple[tuple[bytes, bytes], ...], ...]
    proof: tuple[bytes, ...]

    @classmethod
    def decode(cls, fields: list[wire.Item]) -> StorageRanges:
        wire.as_list(fields, "StorageRanges", 2)
        slots = []
        for account in wire.as_list(fields[0], "StorageRanges slots"):
            entries = []
            for entry in wire.as_list(account, "account slots"):
                pair = wire.as_list(entry, "slot entry", 2)
                entries.append((wire.as_hash(pair[0], "slot hash"), wire.as_bytes(pair[1], "slot")))
            slots.append(tuple(entries))
        proof = tuple(wire.as_bytes(n, "proof node") for n in wire.as_list(fields[1], "proof"))
        return cls(tuple(slots), proof)

    def encode(self, request_id: int) -> bytes:
        """The StorageRanges message."""
        return wire.encode([request_id, self.slots, self.proof])


def decode_byte_strings(fields: list[wire.Item], what: str) -> list[bytes]:
    """ByteCodes and TrieNodes: `[[item, ...]]` after the request id."""
    return [
        wire.as_bytes(item, what) for item in wire.as_list(wire.as_list(fields, what, 1)[0], what)
    ]


def full_account(slim_body: bytes) -> bytes:
    """The account as the state trie stores it: empty storage root and code hash filled in."""
    nonce, balance, storage_root, code_hash = wire.as_list(wire.decode(slim_body), "account", 4)[:4]
    return wire.encode([nonce, balance, storage_root or EMPTY_ROOT, code_hash or EMPTY_CODE_HASH])


def verify_account_range(root: bytes, origin: bytes, response: AccountRange) -> bool:
    """Check an AccountRange against the state root; True if more accounts follow.

    Raises BadProof if the accounts are not exactly the trie's from `origin` on.
    """
    keys = [account_hash for account_hash, _ in response.accounts]
    values = [full_account(body) for _, body in response.accounts]
    return verify_range_proof(root, origin, keys, values, list(response.proof))


def verify_storage_range(
    storage_root: bytes, origin: bytes, slots: tuple[tuple[bytes, bytes], ...], proof: list[bytes]
) -> bool:
    """Check one account's slots against its storage root; True if more slots follow.

    Slot values travel RLP-encoded, as the trie stores them.
    """
    return verify_range_proof(
        storage_root, origin, [k for k, _ in slots], [v for _, v in slots], proof
    )


def verify_byte_codes(requested: list[bytes], codes: list[bytes]) -> list[bytes]:
    """Match returned codes to requested hashes (the peer may skip some, never reorder);
    return the hashes answered. Raises BadProof for a code nobody asked for."""
    answered, position = [], 0
    for code in codes:
        code_hash = keccak256(code)
        while position < len(requested) and requested[position] != code_hash:
            position += 1
        if position == len(requested):
            raise BadProof(f"bytecode 0x{code_hash.hex()} was not requested (or out of order)")
        answered.append(code_hash)
        position += 1
    return answered
