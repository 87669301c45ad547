"""Receipts as eth/69 sends them (EIP-7642): `[tx-type, post-state-or-status, cumulative-gas,
logs]` for every transaction type, without the bloom, and the way back to the consensus form that
eth/68 sends and receipts roots are computed over (a legacy receipt as the list
`[status, gas, bloom, logs]`, a typed one as the string `type || rlp([status, gas, bloom, logs])`).

The bloom is recomputed from the logs (yellow paper, section 4.3.1): three bits of 2048 per
address and topic, taken from the first six bytes of its keccak hash.
"""

from __future__ import annotations

from khipu.p2p import wire
from khipu.p2p.errors import PeerMisbehaved
from khipu.p2p.keys import keccak256

BLOOM_BYTES = 256
LEGACY_TYPE = 0
MAX_TYPED_RECEIPT = 0x7F  # EIP-2718: a typed envelope starts with a byte below 0x80


def logs_bloom(logs: list[wire.Item], what: str = "receipt logs") -> bytes:
    """The 256-byte bloom of `logs` (`[[address, [topic, ...], data], ...]`).

    Raises PeerMisbehaved if a log is not `[20-byte address, [32-byte topic, ...], data]`.
    """
    bloom = 0
    for log in logs:
        fields = wire.as_list(log, f"{what} log", 3)
        if len(fields) != 3:
            raise PeerMisbehaved(f"{what}: a log of {len(fields)} fields")
        wire.as_bytes(fields[2], f"{what} log data")
        entries = [wire.as_bytes(fields[0], f"{what} log address", 20)]
        entries += [
            wire.as_bytes(topic, f"{what} log topic", 32)
            for topic in wire.as_list(fields[1], f"{what} log topics")
        ]
        for entry in entries:
            digest = keccak256(entry)
            for index in (0, 2, 4):
                bloom |= 1 << (int.from_bytes(digest[index : index + 2], "big") & 2047)
    return bloom.to_bytes(BLOOM_BYTES, "big")


def decode_network_receipts(item: wire.Item, what: str = "eth/69 receipts") -> list[bytes]:
    """One block's receipts as an eth/69 peer sent them (decoded RLP), each turned into its
    consensus encoding (the item of the receipts trie, bloom recomputed).

    Raises PeerMisbehaved for anything that is not a list of well-formed eth/69 receipts.
    """
    consensus = []
    for index, entry in enumerate(wire.as_list(item, what)):
        where = f"{what} #{index}"
        fields = wire.as_list(entry, where, 4)
        if len(fields) != 4:
            raise PeerMisbehaved(f"{where} has {len(fields)} fields, not 4")
        tx_type = wire.as_int(fields[0], f"{where} type", 8)
        if tx_type > MAX_TYPED_RECEIPT:
            raise PeerMisbehaved(f"{where} has transaction type 0x{tx_type:02x}")
        status = wire.as_bytes(fields[1], f"{where} status")
        gas = wire.as_int(fields[2], f"{where} cumulative gas", 64)
        logs = wire.as_list(fields[3], f"{where} logs")
        body = wire.encode([status, gas, logs_bloom(logs, where), logs])
        consensus.append(body if tx_type == LEGACY_TYPE else bytes([tx_type]) + body)
    return consensus


def encode_consensus_list(receipts: list[bytes]) -> bytes:
    """The eth/68 (and storage) form of a block's receipts from their consensus encodings:
    legacy receipts inline as lists, typed ones as byte strings."""
    return wire.encode_raw_list([r if r[:1] and r[0] >= 0xC0 else wire.encode(r) for r in receipts])


def to_network_receipts(receipts_rlp: bytes) -> bytes:
    """A block's receipts list as stored and sent over eth/68 (`rlp([receipt, ...])`), in the
    eth/69 form: `rlp([[type, status, gas, logs], ...])` (the blooms dropped).

    Raises PeerMisbehaved (with what is wrong) if the stored list is not made of receipts; the
    serving side turns that into an error of its own store.
    """
    network = []
    for index, entry in enumerate(wire.as_list(wire.decode(receipts_rlp, "receipts"), "receipts")):
        where = f"stored receipt #{index}"
        if isinstance(entry, bytes):  # typed: type || rlp(list)
            if not entry or entry[0] > MAX_TYPED_RECEIPT:
                raise PeerMisbehaved(f"{where} is a string without a transaction type")
            tx_type, fields = entry[0], wire.as_list(wire.decode(entry[1:], where), where, 4)
        else:
            tx_type, fields = LEGACY_TYPE, wire.as_list(entry, where, 4)
        network.append([tx_type, fields[0], fields[1], fields[3]])
    return wire.encode(network)
