"""The Kademlia routing table of discv4: 256 k-buckets by log distance of keccak256(node id),
each with a replacement list, least recently seen first."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from khipu.p2p.discv4.packets import Endpoint
from khipu.p2p.keys import keccak256

BUCKET_SIZE = 16  # k
REPLACEMENTS = 10
BUCKET_COUNT = 256


@dataclass
class Node:
    """A node we know: id, where to reach it, and when we last heard a pong from it."""

    node_id: bytes
    endpoint: Endpoint
    last_pong: float = 0.0
    failures: int = 0
    id_hash: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.id_hash = keccak256(self.node_id)


def log_distance(hash_a: bytes, hash_b: bytes) -> int:
    """The bit length of hash_a XOR hash_b: 0 for equal hashes, up to 256."""
    return (int.from_bytes(hash_a, "big") ^ int.from_bytes(hash_b, "big")).bit_length()


def distance(hash_a: bytes, hash_b: bytes) -> int:
    """The XOR distance of two hashes."""
    return int.from_bytes(hash_a, "big") ^ int.from_bytes(hash_b, "big")


@dataclass
class Bucket:
    """Live entries (least recently seen first) and replacements (newest last)."""

    entries: list[Node] = field(default_factory=list)
    replacements: list[Node] = field(default_factory=list)


class RoutingTable:
    """Holds the nodes we bonded with, by distance from our own id."""

    def __init__(self, self_id: bytes) -> None:
        self.self_id = self_id
        self.self_hash = keccak256(self_id)
        self.buckets = [Bucket() for _ in range(BUCKET_COUNT)]

    def bucket_of(self, node_id: bytes) -> Bucket:
        """The bucket a node id falls in; raise ValueError for our own id."""
        index = log_distance(self.self_hash, keccak256(node_id))
        if index == 0:
            raise ValueError("our own node id has no bucket")
        return self.buckets[index - 1]

    def add(self, node: Node) -> Node | None:
        """Add or refresh a bonded node.

        A known node moves to the tail (most recently seen). A new node joins a bucket with
        room; a full bucket keeps it as a replacement and returns the bucket's least recently
        seen entry, which the caller should ping to check liveness.
        """
        if node.node_id == self.self_id:
            return None
        bucket = self.bucket_of(node.node_id)
        for index, known in enumerate(bucket.entries):
            if known.node_id == node.node_id:
                del bucket.entries[index]
                known.endpoint, known.last_pong = (
                    node.endpoint,
                    max(known.last_pong, node.last_pong),
                )
                known.failures = 0
                bucket.entries.append(known)
                return None
        if len(bucket.entries) < BUCKET_SIZE:
            bucket.entries.append(node)
            bucket.replacements = [r for r in bucket.replacements if r.node_id != node.node_id]
            return None
        bucket.replacements = [r for r in bucket.replacements if r.node_id != node.node_id]
        bucket.replacements.append(node)
        del bucket.replacements[:-REPLACEMENTS]
        return bucket.entries[0]

    def remove(self, node_id: bytes) -> None:
        """Drop a dead node, promoting the newest replacement in its place."""
        if node_id == self.self_id:
            return
        bucket = self.bucket_of(node_id)
        before = len(bucket.entries)
        bucket.entries = [n for n in bucket.entries if n.node_id != node_id]
        if len(bucket.entries) < before and bucket.replacements:
            bucket.entries.append(bucket.replacements.pop())

    def get(self, node_id: bytes) -> Node | None:
        if node_id == self.self_id:
            return None
        return next((n for n in self.bucket_of(node_id).entries if n.node_id == node_id), None)

    def closest(self, target_id: bytes, count: int = BUCKET_SIZE) -> list[Node]:
        """The `count` known nodes nearest to `target_id` (a node id, hashed here)."""
        target = keccak256(target_id)
        return sorted(self, key=lambda n: distance(n.id_hash, target))[:count]

    def __iter__(self) -> Iterator[Node]:
        for bucket in self.buckets:
            yield from bucket.entries

    def __len__(self) -> int:
        return sum(len(b.entries) for b in self.buckets)
