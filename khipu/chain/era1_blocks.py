"""era1 history files as blocks to import: each file is verified whole, then decoded block by block.

`Era1File.verify()` checks every block's transactions root, uncles hash and receipts root against
its header, the total difficulties and the epoch accumulator, before any block of the file is
executed; a failure becomes an `InvalidBlock` naming the block and the check.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from eth.abc import BlockAPI

from khipu.chain.era1 import Era1File, Era1VerificationError
from khipu.chain.importer import InvalidBlock, decode_block
from khipu.chain.rules import ChainRules


def count_era1_blocks(path: Path) -> int:
    """The number of blocks in an era1 file, read from its block index."""
    with Era1File(path) as era:
        return era.count


def iter_era1_blocks(path: Path, rules: ChainRules) -> Iterator[BlockAPI]:
    """Verify an era1 file, then yield its blocks decoded for their forks.

    Raises InvalidBlock for a block whose stored data disagrees with its header, and
    Era1FormatError for a file that is not well-formed era1.
    """
    with Era1File(path) as era:
        try:
            era.verify()
        except Era1VerificationError as exc:
            number = exc.block_number if exc.block_number is not None else era.start_number
            block_hash = era.read_block(number).block_hash
            raise InvalidBlock(number, block_hash, f"era1 {exc.check}", str(exc)) from exc
        for entry in era:
            yield decode_block(join_block(entry.header_rlp, entry.body_rlp), rules)


def join_block(header_rlp: bytes, body_rlp: bytes) -> bytes:
    """The RLP block `[header, transactions, uncles...]` from a header and a body `[txs, ...]`."""
    payload = header_rlp + _list_payload(body_rlp)
    return _list_prefix(len(payload)) + payload


def _list_payload(encoded: bytes) -> bytes:
    prefix = encoded[0]
    if prefix < 0xC0:
        raise ValueError("body is not an RLP list")
    if prefix <= 0xF7:
        return encoded[1:]
    return encoded[1 + prefix - 0xF7 :]


def _list_prefix(length: int) -> bytes:
    if length <= 55:
        return bytes([0xC0 + length])
    size = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0xF7 + len(size)]) + size
