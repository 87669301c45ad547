"""Receipts of every shape for eth/68 and eth/69 tests, blooms made by eth-bloom (py-evm's)."""

from __future__ import annotations

from eth_bloom import BloomFilter

from khipu.p2p import wire
from khipu.p2p.eth.receipts import encode_consensus_list

ADDRESS = bytes(range(20))
TOPICS = [bytes([n]) * 32 for n in (1, 2, 3)]


def bloom_of(logs: list[list[object]]) -> bytes:
    """The bloom by eth-bloom (py-evm's), an implementation independent of ours."""
    bloom = BloomFilter()
    for address, topics, _ in logs:
        bloom.add(address)  # type: ignore[arg-type]
        for topic in topics:  # type: ignore[attr-defined]
            bloom.add(topic)
    return int(bloom).to_bytes(256, "big")


def sample_receipts() -> bytes:
    """A block's receipts as stored and sent over eth/68: one legacy, one EIP-1559 with no
    logs, one blob receipt with two logs, one failed legacy."""
    logs_a = [[ADDRESS, TOPICS[:2], b"data"]]
    logs_c = [[ADDRESS, [], b""], [b"\x07" * 20, TOPICS, b"\x00" * 40]]
    legacy = wire.encode([b"\x01", 21000, bloom_of(logs_a), logs_a])
    dynamic = b"\x02" + wire.encode([b"\x01", 42000, bloom_of([]), []])
    blob = b"\x03" + wire.encode([b"\x01", 90000, bloom_of(logs_c), logs_c])
    failed = wire.encode([b"", 99000, bloom_of([]), []])
    return encode_consensus_list([legacy, dynamic, blob, failed])
