"""The era1 epoch accumulator: an SSZ hash tree root over (block hash, total difficulty) records.

An era1 file commits to its blocks with `hash_tree_root(List[HeaderRecord, 8192])`, where
`HeaderRecord = Container(block_hash: Bytes32, total_difficulty: uint256)`. This module holds just
the SSZ merkleization that needs: sha256 over 32-byte chunks, zero-padded to the list limit, with
the list length mixed in. The same root is the leaf of the Portal network's pre-merge accumulator.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

EPOCH_SIZE = 8192  # the list limit, and so the most blocks an era1 file may hold

_CHUNK = 32
_ZERO_CHUNK = bytes(_CHUNK)


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _zero_hashes(depth: int) -> list[bytes]:
    """The roots of all-zero subtrees of height 0..depth."""
    hashes = [_ZERO_CHUNK]
    for _ in range(depth):
        hashes.append(_sha256(hashes[-1] + hashes[-1]))
    return hashes


_TREE_DEPTH = (EPOCH_SIZE - 1).bit_length()  # 13: 2**13 leaves
_ZERO_HASHES = _zero_hashes(_TREE_DEPTH)


def header_record_root(block_hash: bytes, total_difficulty: int) -> bytes:
    """hash_tree_root(HeaderRecord): the two 32-byte fields are the two leaves of one node.

    Raises ValueError if the hash is not 32 bytes or the difficulty does not fit a uint256.
    """
    if len(block_hash) != _CHUNK:
        raise ValueError(f"block hash must be 32 bytes, got {len(block_hash)}")
    if not 0 <= total_difficulty < 2**256:
        raise ValueError(f"total difficulty {total_difficulty} does not fit a uint256")
    return _sha256(block_hash + total_difficulty.to_bytes(_CHUNK, "little"))


def merkleize(chunks: Sequence[bytes], limit: int) -> bytes:
    """The SSZ merkle root of `chunks` padded with zero chunks to `limit` (a power of two).

    Raises ValueError if there are more chunks than the limit allows.
    """
    if len(chunks) > limit:
        raise ValueError(f"{len(chunks)} chunks exceed the limit {limit}")
    depth = (limit - 1).bit_length()
    zero_hashes = _ZERO_HASHES if depth <= _TREE_DEPTH else _zero_hashes(depth)
    layer = list(chunks)
    for height in range(depth):
        if len(layer) % 2:
            layer.append(zero_hashes[height])
        layer = [_sha256(layer[i] + layer[i + 1]) for i in range(0, len(layer), 2)]
    return layer[0] if layer else zero_hashes[depth]


def mix_in_length(root: bytes, length: int) -> bytes:
    """SSZ's list root: the merkle root hashed together with the list length (uint256 LE)."""
    return _sha256(root + length.to_bytes(_CHUNK, "little"))


def epoch_accumulator_root(records: Iterable[tuple[bytes, int]]) -> bytes:
    """hash_tree_root(List[HeaderRecord, 8192]) of (block hash, total difficulty) pairs.

    Raises ValueError on more than 8192 records or a malformed record.
    """
    leaves = [header_record_root(block_hash, td) for block_hash, td in records]
    return mix_in_length(merkleize(leaves, EPOCH_SIZE), len(leaves))
