"""era1 history files: up to 8192 consecutive pre-merge blocks with receipts and total difficulty.

Layout (go-ethereum internal/era, eth-clients/e2store-format-specs formats/era1.md):

    era1        := Version | block-tuple* | other-entries* | Accumulator | BlockIndex
    block-tuple := CompressedHeader | CompressedBody | CompressedReceipts | TotalDifficulty

Header, body and receipts are snappy-*framed* RLP. Receipts are the consensus encoding, bloom
included: a legacy receipt is an RLP list (its first field the post-state root before Byzantium,
the status after), a typed receipt is an RLP string holding `type || rlp(fields)`. The total
difficulty is a 32-byte little-endian uint256. The BlockIndex is `start | offset* | count`, all
uint64 little-endian, each offset relative to the first byte of the BlockIndex entry's header
(checked on the mainnet files). The Accumulator is the SSZ root of the epoch's
(block hash, total difficulty) records, see ssz_accumulator.

Era1File reads blocks as raw RLP (decoding them is the importer's job, with the fork's classes),
sequentially or by number, and verify() checks every commitment the file carries:

    with Era1File("mainnet-00001-a5364e9a.era1") as era:
        era.verify(parent=last_block_of_previous_file)  # optional parent
        for block in era:  # Era1Block(number, header_rlp, body_rlp, receipts_rlp, total_difficulty)
            ...
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import cast

import cramjam
import rlp  # type: ignore[import-untyped]
import sha3

from khipu.chain.e2store import HEADER_SIZE, E2StoreReader, Entry, Era1FormatError, encode_entry
from khipu.chain.ssz_accumulator import EPOCH_SIZE, epoch_accumulator_root

__all__ = [
    "Era1Block",
    "Era1File",
    "Era1FormatError",
    "Era1VerificationError",
    "ordered_trie_root",
    "write_era1",
]

VERSION = 0x3265
COMPRESSED_HEADER = 0x03
COMPRESSED_BODY = 0x04
COMPRESSED_RECEIPTS = 0x05
TOTAL_DIFFICULTY = 0x06
ACCUMULATOR = 0x07
BLOCK_INDEX = 0x3266


def _keccak(data: bytes) -> bytes:
    """keccak256; safe-pysha3 directly, ~5x faster per call than eth-hash's pycryptodome pick."""
    digest: bytes = sha3.keccak_256(data).digest()
    return digest


_BLOCK_TUPLE_TYPES = (COMPRESSED_HEADER, COMPRESSED_BODY, COMPRESSED_RECEIPTS, TOTAL_DIFFICULTY)
_ACCUMULATOR_ENTRY_SIZE = HEADER_SIZE + 32
BLANK_ROOT = _keccak(rlp.encode(b""))
_EMPTY_LIST_HASH = _keccak(rlp.encode([]))  # the uncles hash of a block without uncles

# Indexes of header fields, common to every fork's header.
_PARENT_HASH, _UNCLES_HASH, _TX_ROOT, _RECEIPTS_ROOT, _DIFFICULTY, _NUMBER = 0, 1, 4, 5, 7, 8


@dataclass(frozen=True)
class Era1Block:
    """One block of an era1 file, as raw RLP: header, body `[txs, uncles]`, receipts list."""

    number: int
    header_rlp: bytes
    body_rlp: bytes
    receipts_rlp: bytes
    total_difficulty: int

    @property
    def block_hash(self) -> bytes:
        """keccak256 of the header RLP (computed on each call)."""
        return _keccak(self.header_rlp)


class Era1VerificationError(Exception):
    """A block of an era1 file, or the file as a whole, fails one of verify()'s checks.

    `check` names the check (see Era1File.verify); `block_number` is None for whole-file checks.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        block_number: int | None,
        check: str,
        detail: str = "",
    ) -> None:
        self.path = Path(path)
        self.block_number = block_number
        self.check = check
        self.detail = detail
        where = str(self.path) if block_number is None else f"{self.path} block {block_number}"
        super().__init__(f"{where}: {check} check failed" + (f": {detail}" if detail else ""))


class Era1File:
    """An open era1 file. Reading the tail (index, accumulator) happens here, blocks on demand.

    Raises Era1FormatError if the Version entry, the BlockIndex or the Accumulator entry is
    missing or malformed (a truncated file ends up here), OSError if the file cannot be read.
    Use as a context manager or call close().
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._store = E2StoreReader(self.path)
        try:
            self._read_tail()
        except BaseException:
            self._store.close()
            raise

    def _read_tail(self) -> None:
        store = self._store
        version = store.entry_at(0, VERSION)
        if version.value:
            raise Era1FormatError(self.path, 0, f"Version entry has {len(version.value)} bytes")
        count = store.read_u64(store.size - 8)
        if not 1 <= count <= EPOCH_SIZE:
            raise Era1FormatError(
                self.path, store.size - 8, f"block count {count} is not within 1..{EPOCH_SIZE}"
            )
        index_length = 16 + 8 * count
        index_offset = store.size - HEADER_SIZE - index_length
        if index_offset < version.end + _ACCUMULATOR_ENTRY_SIZE:
            raise Era1FormatError(
                self.path, store.size - 8, f"block count {count} does not fit the file"
            )
        entry_type, length = store.header_at(index_offset)
        if entry_type != BLOCK_INDEX or length != index_length:
            raise Era1FormatError(
                self.path,
                index_offset,
                f"no BlockIndex for {count} blocks at the end of the file "
                f"(found type 0x{entry_type:04x} with {length} bytes)",
            )
        accumulator = store.entry_at(index_offset - _ACCUMULATOR_ENTRY_SIZE, ACCUMULATOR)
        if accumulator.end != index_offset:
            raise Era1FormatError(
                self.path, accumulator.offset, "Accumulator entry is not 32 bytes before the index"
            )
        self._index_offset = index_offset
        self._accumulator_offset = accumulator.offset
        self.start_number: int = store.read_u64(index_offset + HEADER_SIZE)
        """Number of the first block in the file."""
        self.count: int = count
        """How many consecutive blocks the file holds."""
        self.accumulator_root: bytes = accumulator.value
        """The epoch accumulator root the file claims (verify() recomputes it)."""

    def close(self) -> None:
        """Close the file; blocks already read stay valid."""
        self._store.close()

    def __enter__(self) -> Era1File:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        last = self.start_number + self.count - 1
        return f"Era1File({str(self.path)!r}, blocks {self.start_number}..{last})"

    # --- reading ---------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Era1Block]:
        """The blocks in order, walking the entries from the start of the file."""
        for _, _, block in self._walk():
            yield block

    def block_offset(self, number: int) -> int:
        """File offset of block `number`'s CompressedHeader entry, from the BlockIndex.

        Raises IndexError for a number outside the file, Era1FormatError for an index offset
        that points outside the block area.
        """
        if not self.start_number <= number < self.start_number + self.count:
            raise IndexError(
                f"{self.path}: block {number} is not in blocks "
                f"{self.start_number}..{self.start_number + self.count - 1}"
            )
        field = self._index_offset + HEADER_SIZE + 8 + 8 * (number - self.start_number)
        relative = self._store.read_u64(field)
        if relative >= 2**63:  # the offsets are signed: blocks lie before the index
            relative -= 2**64
        offset = self._index_offset + relative
        if not HEADER_SIZE <= offset < self._accumulator_offset:
            raise Era1FormatError(
                self.path, field, f"index offset {offset} lies outside the blocks", number
            )
        return offset

    def read_block(self, number: int) -> Era1Block:
        """Block `number`, found through the BlockIndex. Its content is not checked here (that
        the header carries this number, for one): verify() does that for the whole file.

        Raises IndexError for a number outside the file; Era1FormatError for a bad entry or
        snappy stream (naming the block).
        """
        block, _ = self._read_tuple(self.block_offset(number), number)
        return block

    def _walk(self) -> Iterator[tuple[int, int, Era1Block]]:
        """(start offset, end offset, block) of each block tuple in file order."""
        offset = HEADER_SIZE  # just after the Version entry
        for number in range(self.start_number, self.start_number + self.count):
            block, end = self._read_tuple(offset, number)
            yield offset, end, block
            offset = end

    def _read_tuple(self, offset: int, number: int) -> tuple[Era1Block, int]:
        """The block tuple whose header entry starts at `offset`, and the offset after it."""
        entries = []
        for entry_type in _BLOCK_TUPLE_TYPES:
            try:
                entry = self._store.entry_at(offset, entry_type)
            except Era1FormatError as error:
                raise Era1FormatError(self.path, error.offset, error.reason, number) from None
            entries.append(entry)
            offset = entry.end
        header, body, receipts, difficulty = entries
        if len(difficulty.value) != 32:
            raise Era1FormatError(
                self.path,
                difficulty.offset,
                f"TotalDifficulty has {len(difficulty.value)} bytes, not 32",
                number,
            )
        block = Era1Block(
            number=number,
            header_rlp=self._decompress(header, number, "header"),
            body_rlp=self._decompress(body, number, "body"),
            receipts_rlp=self._decompress(receipts, number, "receipts"),
            total_difficulty=int.from_bytes(difficulty.value, "little"),
        )
        return block, offset

    def _decompress(self, entry: Entry, number: int, what: str) -> bytes:
        if not entry.value:
            raise Era1FormatError(self.path, entry.offset, f"empty {what} entry", number)
        try:
            return bytes(cramjam.snappy.decompress(entry.value))
        except cramjam.DecompressionError as error:
            raise Era1FormatError(
                self.path, entry.offset, f"{what}: bad snappy frame stream: {error}", number
            ) from None

    # --- verification ----------------------------------------------------------------------

    def verify(self, parent: Era1Block | None = None) -> None:
        """Check every block and the file's own commitments; return quietly if all hold.

        `parent`, the last block of the previous file, lets the first block's parent hash and
        total difficulty be checked too.

        Per block, in order (the check names as Era1VerificationError.check gives them):
        `header-rlp`/`body-rlp`/`receipts-rlp` (each decodes to the expected shape), `number`
        (the header's number is the one the file position implies), `parent-hash` (the header's
        parent is the previous block's hash), `transactions-root`, `uncles-hash`,
        `receipts-root` (tries and hash against the header), `total-difficulty`
        (td[n] = td[n-1] + difficulty[n]; for block 0, td = difficulty; the first block of a
        later file is checked only against a `parent`), `block-index` (the index points
        at the block found by walking the file). Then per file: `block-count` (no block tuple
        follows the last indexed one) and `accumulator` (the epoch root of (hash, td) records
        equals the file's Accumulator entry).

        Raises Era1VerificationError at the first failure, Era1FormatError for malformed bytes,
        ValueError if `parent` is not the block before this file's first.
        """
        records: list[tuple[bytes, int]] = []
        previous: tuple[bytes, int] | None = None  # (hash, total difficulty)
        if parent is not None:
            if parent.number != self.start_number - 1:
                raise ValueError(
                    f"block {parent.number} is not the parent of block {self.start_number}"
                )
            previous = (parent.block_hash, parent.total_difficulty)
        end_of_blocks = HEADER_SIZE
        for offset, end, block in self._walk():
            block_hash = block.block_hash
            self._verify_block(block, previous)
            indexed = self.block_offset(block.number)
            if indexed != offset:
                raise Era1VerificationError(
                    self.path,
                    block.number,
                    "block-index",
                    f"index points at offset {indexed}, the block is at {offset}",
                )
            records.append((block_hash, block.total_difficulty))
            previous = (block_hash, block.total_difficulty)
            end_of_blocks = end
        self._verify_no_extra_blocks(end_of_blocks)
        root = epoch_accumulator_root(records)
        if root != self.accumulator_root:
            raise Era1VerificationError(
                self.path,
                None,
                "accumulator",
                f"computed 0x{root.hex()}, file has 0x{self.accumulator_root.hex()}",
            )

    def _verify_block(self, block: Era1Block, previous: tuple[bytes, int] | None) -> None:
        def fail(check: str, detail: str = "") -> Era1VerificationError:
            return Era1VerificationError(self.path, block.number, check, detail)

        decoded_header = _decode_list(block.header_rlp)
        if decoded_header is None or len(decoded_header) < 15:
            raise fail("header-rlp", "not an RLP list of at least 15 fields")
        header = [field for field in decoded_header if isinstance(field, bytes)]
        if len(header) != len(decoded_header):
            raise fail("header-rlp", "a header field is a list, not a byte string")
        body = _decode_list(block.body_rlp)
        if body is None or len(body) != 2 or not all(isinstance(part, list) for part in body):
            raise fail("body-rlp", "not an RLP list [transactions, uncles]")
        receipts = _decode_list(block.receipts_rlp)
        if receipts is None:
            raise fail("receipts-rlp", "not an RLP list")
        transactions, uncles = cast(list[list[object]], body)

        number = int.from_bytes(header[_NUMBER], "big")
        if number != block.number:
            raise fail("number", f"header says {number}")
        if previous is not None and header[_PARENT_HASH] != previous[0]:
            raise fail("parent-hash", f"parent 0x{header[_PARENT_HASH].hex()}")

        tx_values = [_trie_value(tx) for tx in transactions]
        receipt_values = [_trie_value(receipt) for receipt in receipts]
        if not all(tx_values) or not all(receipt_values):
            raise fail("body-rlp" if not all(tx_values) else "receipts-rlp", "an empty item")
        tx_root = ordered_trie_root(tx_values)
        if tx_root != header[_TX_ROOT]:
            raise fail("transactions-root", _mismatch(tx_root, header[_TX_ROOT]))
        uncles_hash = _keccak(rlp.encode(uncles)) if uncles else _EMPTY_LIST_HASH
        if uncles_hash != header[_UNCLES_HASH]:
            raise fail("uncles-hash", _mismatch(uncles_hash, header[_UNCLES_HASH]))
        receipts_root = ordered_trie_root(receipt_values)
        if receipts_root != header[_RECEIPTS_ROOT]:
            raise fail("receipts-root", _mismatch(receipts_root, header[_RECEIPTS_ROOT]))

        difficulty = int.from_bytes(header[_DIFFICULTY], "big")
        if previous is not None:
            expected_td: int | None = previous[1] + difficulty
        else:
            expected_td = difficulty if block.number == 0 else None
        if expected_td is not None and block.total_difficulty != expected_td:
            raise fail(
                "total-difficulty", f"file has {block.total_difficulty}, expected {expected_td}"
            )

    def _verify_no_extra_blocks(self, end_of_blocks: int) -> None:
        for entry in self._store.entries(end_of_blocks):
            if entry.offset >= self._accumulator_offset:
                break
            if entry.type in _BLOCK_TUPLE_TYPES:
                raise Era1VerificationError(
                    self.path,
                    None,
                    "block-count",
                    f"a block entry (type 0x{entry.type:04x}) at offset {entry.offset} "
                    f"follows the {self.count} indexed blocks",
                )


def ordered_trie_root(values: Sequence[bytes]) -> bytes:
    """Root of the Merkle-Patricia trie mapping rlp(index) -> values[index]: the transactions
    root and the receipts root of a block.

    Built in one pass over the sorted keys instead of inserting into a trie.HexaryTrie, which
    computes the same root (the tests compare them) about 4x slower: it re-decodes every node it
    touches. Raises ValueError for an empty value, which a trie cannot hold.
    """
    if not values:
        return BLANK_ROOT
    if not all(values):
        raise ValueError("a trie cannot hold an empty value")
    pairs = sorted((_nibbles(rlp.encode(index)), value) for index, value in enumerate(values))
    return _keccak(rlp.encode(_trie_node(pairs, 0)))


def _trie_node(pairs: Sequence[tuple[bytes, bytes]], depth: int) -> list[object]:
    """The node holding `pairs` (nibble keys sorted, sharing their first `depth` nibbles)."""
    if len(pairs) == 1:
        key, value = pairs[0]
        return [_hex_prefix(key[depth:], is_leaf=True), value]
    # The keys are sorted, so what the first and the last share, they all share.
    first, last = pairs[0][0], pairs[-1][0]
    shared = 0
    while (
        depth + shared < min(len(first), len(last))
        and first[depth + shared] == last[depth + shared]
    ):
        shared += 1
    if shared:
        child = _trie_node(pairs, depth + shared)
        return [_hex_prefix(first[depth : depth + shared], is_leaf=False), _node_reference(child)]
    branch: list[object] = [b""] * 17
    start = 0
    if len(first) == depth:  # a key ending here keeps its value in the branch
        branch[16] = pairs[0][1]
        start = 1
    while start < len(pairs):
        nibble = pairs[start][0][depth]
        end = start + 1
        while end < len(pairs) and pairs[end][0][depth] == nibble:
            end += 1
        branch[nibble] = _node_reference(_trie_node(pairs[start:end], depth + 1))
        start = end
    return branch


def _node_reference(node: list[object]) -> object:
    """How a parent refers to a node: inline if its encoding is under 32 bytes, else its hash."""
    encoded = rlp.encode(node)
    return node if len(encoded) < 32 else _keccak(encoded)


def _nibbles(key: bytes) -> bytes:
    return bytes(nibble for byte in key for nibble in (byte >> 4, byte & 0x0F))


def _hex_prefix(nibbles: bytes, is_leaf: bool) -> bytes:
    """The compact (hex-prefix) encoding of a nibble path, flagged as leaf or extension."""
    flag = 2 if is_leaf else 0
    if len(nibbles) % 2:
        prefix, rest = bytes([(flag + 1) << 4 | nibbles[0]]), nibbles[1:]
    else:
        prefix, rest = bytes([flag << 4]), nibbles
    return prefix + bytes(rest[i] << 4 | rest[i + 1] for i in range(0, len(rest), 2))


def write_era1(path: str | os.PathLike[str], blocks: Iterable[Era1Block]) -> bytes:
    """Write `blocks` (consecutive numbers, 1..8192 of them) as an era1 file; return its
    accumulator root. The content is written as given, unchecked: it builds test fixtures.

    Raises ValueError for an empty, too long or non-consecutive sequence of blocks.
    """
    records: list[tuple[bytes, int]] = []
    offsets: list[int] = []
    start_number: int | None = None
    with open(path, "wb") as out:
        written = out.write(encode_entry(VERSION, b""))
        for block in blocks:
            if start_number is None:
                start_number = block.number
            expected = start_number + len(offsets)
            if block.number != expected:
                raise ValueError(f"block {block.number} follows block {expected - 1}")
            if len(offsets) == EPOCH_SIZE:
                raise ValueError(f"an era1 file holds at most {EPOCH_SIZE} blocks")
            offsets.append(written)
            records.append((block.block_hash, block.total_difficulty))
            for entry_type, data in (
                (COMPRESSED_HEADER, block.header_rlp),
                (COMPRESSED_BODY, block.body_rlp),
                (COMPRESSED_RECEIPTS, block.receipts_rlp),
            ):
                written += out.write(encode_entry(entry_type, bytes(cramjam.snappy.compress(data))))
            td = block.total_difficulty.to_bytes(32, "little")
            written += out.write(encode_entry(TOTAL_DIFFICULTY, td))
        if start_number is None:
            raise ValueError("an era1 file needs at least one block")
        root = epoch_accumulator_root(records)
        written += out.write(encode_entry(ACCUMULATOR, root))
        index = [start_number.to_bytes(8, "little")]
        index += [(offset - written).to_bytes(8, "little", signed=True) for offset in offsets]
        index.append(len(offsets).to_bytes(8, "little"))
        out.write(encode_entry(BLOCK_INDEX, b"".join(index)))
    return root


def _decode_list(encoded: bytes) -> list[object] | None:
    """The decoded RLP list, or None if `encoded` is not one canonical RLP list."""
    try:
        decoded = rlp.decode(encoded)
    except rlp.exceptions.DecodingError:
        return None
    return decoded if isinstance(decoded, list) else None


def _trie_value(item: object) -> bytes:
    """The trie value of a transaction or receipt as it sits in an RLP list: a legacy one is an
    RLP list (its encoding is the value), a typed one an RLP string `type || payload` (the value
    is the string itself)."""
    return item if isinstance(item, bytes) else rlp.encode(item)


def _mismatch(computed: bytes, claimed: bytes) -> str:
    return f"computed 0x{computed.hex()}, header has 0x{claimed.hex()}"
