"""era1 files: the two mainnet epochs read and verify; corrupted copies fail with typed errors."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import rlp
from eth_hash.auto import keccak
from trie import HexaryTrie

from khipu.chain.e2store import E2StoreReader, Era1FormatError, encode_entry
from khipu.chain.era1 import (
    Era1Block,
    Era1File,
    Era1VerificationError,
    ordered_trie_root,
    write_era1,
)
from khipu.chain.ssz_accumulator import EPOCH_SIZE, epoch_accumulator_root
from tests.conftest import require_testdata

EPOCH0 = "mainnet-00000-5ec1ffb8.era1"
EPOCH1 = "mainnet-00001-a5364e9a.era1"
GENESIS_HASH = "d4e56740f876aef8c010b86a40d5f56745a118d0906a34e69aec8c0db1cb8fa3"
# go-ethereum internal/era/eradl/checksums_mainnet.txt
EPOCH0_SHA256 = "9c3f42e0247d5503533f437ada2d44e7e9661170421c1b7844687c8dcfc0eb9b"


def era1_path(name: str) -> Path:
    return require_testdata("mainnet", "era1", name)


@pytest.fixture(scope="module")
def first_blocks() -> list[Era1Block]:
    """Blocks 0..63 of mainnet, read from the first epoch file."""
    with Era1File(era1_path(EPOCH0)) as era:
        return [era.read_block(number) for number in range(64)]


@pytest.fixture
def small_era1(tmp_path: Path, first_blocks: list[Era1Block]) -> Path:
    """A valid era1 file of blocks 0..63, written afresh for each test to corrupt."""
    path = tmp_path / "mainnet-small.era1"
    write_era1(path, first_blocks)
    return path


def verification_failure(path: Path) -> Era1VerificationError:
    with Era1File(path) as era, pytest.raises(Era1VerificationError) as caught:
        era.verify()
    return caught.value


def patch_bytes(path: Path, offset: int, change: Callable[[int], int]) -> None:
    data = bytearray(path.read_bytes())
    data[offset] = change(data[offset])
    path.write_bytes(bytes(data))


# --- the mainnet files ----------------------------------------------------------------------


def test_the_first_mainnet_epoch_verifies_fully() -> None:
    with Era1File(era1_path(EPOCH0)) as era:
        era.verify()  # the second epoch is verified against its parent below


@pytest.mark.parametrize("name", [EPOCH0, EPOCH1])
def test_the_file_name_carries_the_accumulator_root(name: str) -> None:
    # go-ethereum names a file after the first 4 bytes of its accumulator root
    with Era1File(era1_path(name)) as era:
        assert name.removesuffix(".era1").split("-")[2] == era.accumulator_root[:4].hex()


def test_epoch_bounds_and_the_genesis_block() -> None:
    with Era1File(era1_path(EPOCH0)) as first, Era1File(era1_path(EPOCH1)) as second:
        assert (first.start_number, first.count) == (0, 8192)
        assert (second.start_number, second.count) == (8192, 8192)
        genesis = first.read_block(0)
        last = first.read_block(8191)
        following = second.read_block(8192)
    assert genesis.block_hash.hex() == GENESIS_HASH
    assert genesis.total_difficulty == 0x400000000  # the genesis difficulty, its own td
    assert rlp.decode(genesis.header_rlp)[0] == bytes(32)
    # the epochs chain: block 8192's parent is block 8191, and td carries on
    header = rlp.decode(following.header_rlp)
    assert header[0] == last.block_hash
    assert following.total_difficulty == last.total_difficulty + int.from_bytes(header[7], "big")


def test_the_second_epoch_verifies_against_its_parent_in_the_first() -> None:
    with Era1File(era1_path(EPOCH0)) as first:
        parent = first.read_block(8191)
        grandparent = first.read_block(8190)
    with Era1File(era1_path(EPOCH1)) as second:
        second.verify(parent=parent)
        with pytest.raises(ValueError):
            second.verify(parent=grandparent)
        heavier = dataclasses.replace(parent, total_difficulty=parent.total_difficulty + 1)
        with pytest.raises(Era1VerificationError) as caught:
            second.verify(parent=heavier)
        assert (caught.value.block_number, caught.value.check) == (8192, "total-difficulty")
        other = dataclasses.replace(parent, header_rlp=grandparent.header_rlp)
        with pytest.raises(Era1VerificationError) as caught:
            second.verify(parent=other)
        assert (caught.value.block_number, caught.value.check) == (8192, "parent-hash")


def test_random_access_equals_sequential_iteration() -> None:
    with Era1File(era1_path(EPOCH1)) as era:
        sequential = list(era)
        assert [b.number for b in sequential] == list(range(8192, 16384))
        for number in (16383, 8192, 12000):
            assert era.read_block(number) == sequential[number - 8192]
        assert all(era.read_block(b.number) == b for b in sequential)
        with pytest.raises(IndexError):
            era.read_block(16384)
        with pytest.raises(IndexError):
            era.read_block(8191)


@pytest.mark.parametrize(("name", "uncles"), [(EPOCH0, 1410), (EPOCH1, 562)])
def test_blocks_carry_their_uncles(name: str, uncles: int) -> None:
    with Era1File(era1_path(name)) as era:
        counts = {b.number: len(rlp.decode(b.body_rlp)[1]) for b in era}
    assert sum(counts.values()) == uncles
    assert max(counts.values()) == 2  # a block may include at most two uncles
    if name == EPOCH0:
        assert counts[3] == 1 and counts[1] == 0


def test_writer_reproduces_the_official_file_byte_for_byte(tmp_path: Path) -> None:
    with Era1File(era1_path(EPOCH0)) as era:
        root = write_era1(tmp_path / "copy.era1", era)
        assert root == era.accumulator_root
    assert hashlib.sha256((tmp_path / "copy.era1").read_bytes()).hexdigest() == EPOCH0_SHA256


# --- transactions and receipts tries on real mainnet data -----------------------------------


def rpc_json(name: str) -> Any:
    data = json.loads(require_testdata("mainnet", "rpc-json", name).read_text())
    return data.get("result", data)


def number(hex_quantity: str) -> int:
    return int(hex_quantity, 16)


def data(hex_bytes: str | None) -> bytes:
    return bytes.fromhex(hex_bytes[2:]) if hex_bytes else b""


def encode_transaction(tx: dict[str, Any]) -> object:
    """A transaction as it sits in a block body: a list (legacy) or `type || rlp` (typed)."""
    common = [number(tx["nonce"]), number(tx["gasPrice"]), number(tx["gas"]), data(tx["to"])]
    common += [number(tx["value"]), data(tx["input"])]
    signature = [number(tx["v"]), number(tx["r"]), number(tx["s"])]
    if tx["type"] == "0x0":
        return [*common, *signature]
    assert tx["type"] == "0x1", "block 12964999 is pre-London"
    access_list = [
        [data(a["address"]), [data(k) for k in a["storageKeys"]]] for a in tx["accessList"]
    ]
    return b"\x01" + rlp.encode([number(tx["chainId"]), *common, access_list, *signature])


def encode_receipt(receipt: dict[str, Any]) -> object:
    """A receipt in consensus form, as era1 stores it in its list: a list or `type || rlp`."""
    logs = [
        [data(log["address"]), [data(t) for t in log["topics"]], data(log["data"])]
        for log in receipt["logs"]
    ]
    fields = [number(receipt["status"]), number(receipt["cumulativeGasUsed"])]
    fields += [data(receipt["logsBloom"]), logs]
    if receipt["type"] == "0x0":
        return fields
    return bytes([number(receipt["type"])]) + rlp.encode(fields)


def trie_values(items: list[object]) -> list[bytes]:
    return [item if isinstance(item, bytes) else rlp.encode(item) for item in items]


def test_transactions_root_of_a_real_block_with_typed_transactions() -> None:
    block = rpc_json("ethereum-execution_block_12964999.json")
    transactions = [encode_transaction(tx) for tx in block["transactions"]]
    assert keccak(trie_values(transactions)[6]) == data(block["transactions"][6]["hash"])
    assert ordered_trie_root(trie_values(transactions)) == data(block["transactionsRoot"])
    assert ordered_trie_root(trie_values(transactions[:-1])) != data(block["transactionsRoot"])


@pytest.mark.parametrize("block_number", [19433902, 19433903])
def test_receipts_root_of_real_blocks_with_typed_receipts(block_number: int) -> None:
    block = rpc_json(f"trin_block_{block_number}_value.json")
    receipts = [encode_receipt(r) for r in rpc_json(f"trin_receipts-{block_number}.json")]
    assert ordered_trie_root(trie_values(receipts)) == data(block["receiptsRoot"])


def hexary_trie_root(values: list[bytes]) -> bytes:
    trie = HexaryTrie(db={})
    for index, value in enumerate(values):
        trie.set(rlp.encode(index), value)
    root: bytes = trie.root_hash
    return root


@pytest.mark.parametrize("count", [*range(0, 40), 127, 128, 129, 255, 256, 257, 1000])
def test_ordered_trie_root_equals_the_trie_package(count: int) -> None:
    rng = random.Random(count)
    values = [rng.randbytes(rng.choice([1, 2, 20, 31, 32, 33, 120])) for _ in range(count)]
    assert ordered_trie_root(values) == hexary_trie_root(values)


def test_verify_checks_real_transactions_and_receipts_against_the_header(
    tmp_path: Path, first_blocks: list[Era1Block]
) -> None:
    # Genesis with the transactions root of block 12964999 and the receipts root of block
    # 19433902, carrying those blocks' transactions and receipts: it verifies only if era1's
    # list forms (typed items as strings) are turned into trie values the way mainnet does.
    txs_block = rpc_json("ethereum-execution_block_12964999.json")
    receipts_block = rpc_json("trin_block_19433902_value.json")
    header = rlp.decode(first_blocks[0].header_rlp)
    header[4] = data(txs_block["transactionsRoot"])
    header[5] = data(receipts_block["receiptsRoot"])
    transactions = [encode_transaction(tx) for tx in txs_block["transactions"]]
    receipts = [encode_receipt(r) for r in rpc_json("trin_receipts-19433902.json")]
    block = dataclasses.replace(
        first_blocks[0],
        header_rlp=rlp.encode(header),
        body_rlp=rlp.encode([transactions, []]),
        receipts_rlp=rlp.encode(receipts),
    )
    write_era1(tmp_path / "good.era1", [block])
    with Era1File(tmp_path / "good.era1") as era:
        era.verify()

    broken = dataclasses.replace(block, receipts_rlp=rlp.encode(receipts[::-1]))
    write_era1(tmp_path / "receipts.era1", [broken])
    failure = verification_failure(tmp_path / "receipts.era1")
    assert (failure.block_number, failure.check) == (0, "receipts-root")

    broken = dataclasses.replace(block, body_rlp=rlp.encode([transactions[1:], []]))
    write_era1(tmp_path / "txs.era1", [broken])
    failure = verification_failure(tmp_path / "txs.era1")
    assert (failure.block_number, failure.check) == (0, "transactions-root")


# --- corrupted files ------------------------------------------------------------------------


def test_the_small_fixture_verifies(small_era1: Path) -> None:
    with Era1File(small_era1) as era:
        assert (era.start_number, era.count) == (0, 64)
        era.verify()


@pytest.mark.parametrize(("entry", "what"), [(0, "header"), (1, "body"), (2, "receipts")])
def test_a_flipped_byte_in_a_compressed_entry_names_the_block(
    small_era1: Path, entry: int, what: str
) -> None:
    with Era1File(small_era1) as era:
        offset = era.block_offset(17)
    with E2StoreReader(small_era1) as store:
        target = list(store.entries(offset))[entry]
    patch_bytes(small_era1, target.end - 3, lambda b: b ^ 0x40)  # inside the checksummed data
    with Era1File(small_era1) as era:
        assert era.read_block(16).number == 16
        with pytest.raises(Era1FormatError) as caught:
            era.verify()
        assert (caught.value.block_number, caught.value.offset) == (17, target.offset)
        assert caught.value.reason.startswith(what)
        with pytest.raises(Era1FormatError):
            era.read_block(17)


def test_a_changed_total_difficulty_fails_its_check(small_era1: Path) -> None:
    with Era1File(small_era1) as era:
        offset = era.block_offset(5)
    with E2StoreReader(small_era1) as store:
        td_entry = list(store.entries(offset))[3]
    patch_bytes(small_era1, td_entry.offset + 8, lambda b: b ^ 0x01)
    failure = verification_failure(small_era1)
    assert (failure.block_number, failure.check) == (5, "total-difficulty")


def test_a_broken_accumulator_fails_its_check(small_era1: Path) -> None:
    with Era1File(small_era1) as era:
        root_offset = era._accumulator_offset + 8 + 31
    patch_bytes(small_era1, root_offset, lambda b: b ^ 0xFF)
    failure = verification_failure(small_era1)
    assert (failure.block_number, failure.check) == (None, "accumulator")


def test_a_real_file_with_a_broken_accumulator_fails(tmp_path: Path) -> None:
    path = tmp_path / EPOCH1
    shutil.copyfile(era1_path(EPOCH1), path)
    patch_bytes(path, path.stat().st_size - (8 + 16 + 8 * 8192) - 32, lambda b: b ^ 0x80)
    failure = verification_failure(path)
    assert failure.check == "accumulator" and failure.path == path


@pytest.mark.parametrize("keep", [1, 8, 100, 5000, -1, -8, -9])
def test_a_truncated_file_is_a_format_error(small_era1: Path, keep: int) -> None:
    content = small_era1.read_bytes()
    small_era1.write_bytes(content[:keep])
    with pytest.raises(Era1FormatError) as caught:
        Era1File(small_era1)
    assert caught.value.path == small_era1


@pytest.mark.parametrize("content", [b"\x00" * 64, b"not an era1 file at all" * 10, b"\xff" * 9000])
def test_other_files_are_format_errors(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "x.era1").write_bytes(content)
    with pytest.raises(Era1FormatError):
        Era1File(tmp_path / "x.era1")


def test_an_index_offset_pointing_at_another_block_fails_the_index_check(small_era1: Path) -> None:
    with Era1File(small_era1) as era:
        index_field = era._index_offset + 16 + 8 * 3  # block 3's offset
        moved = era.block_offset(4) - era._index_offset
    content = bytearray(small_era1.read_bytes())
    content[index_field : index_field + 8] = moved.to_bytes(8, "little", signed=True)
    small_era1.write_bytes(bytes(content))
    failure = verification_failure(small_era1)
    assert (failure.block_number, failure.check) == (3, "block-index")


def test_an_index_offset_outside_the_blocks_is_a_format_error(small_era1: Path) -> None:
    with Era1File(small_era1) as era:
        index_field = era._index_offset + 16 + 8 * 9
    content = bytearray(small_era1.read_bytes())
    content[index_field : index_field + 8] = (10**6).to_bytes(8, "little")
    small_era1.write_bytes(bytes(content))
    with Era1File(small_era1) as era, pytest.raises(Era1FormatError) as caught:
        era.read_block(9)
    assert caught.value.block_number == 9


def test_a_wrong_entry_type_in_a_block_tuple_names_the_block(small_era1: Path) -> None:
    with Era1File(small_era1) as era:
        offset = era.block_offset(2)
    with E2StoreReader(small_era1) as store:
        body = list(store.entries(offset))[1]
    patch_bytes(small_era1, body.offset, lambda b: 0x08)
    with Era1File(small_era1) as era, pytest.raises(Era1FormatError) as caught:
        list(era)
    assert (caught.value.block_number, caught.value.offset) == (2, body.offset)
    assert "expected an entry of type 0x0004" in caught.value.reason


def rewrite(path: Path, blocks: list[Era1Block], index: int, **changes: Any) -> None:
    changed = list(blocks)
    changed[index] = dataclasses.replace(blocks[index], **changes)
    write_era1(path, changed)


def test_swapped_uncles_fail_the_uncles_check(
    tmp_path: Path, first_blocks: list[Era1Block]
) -> None:
    # block 3 includes one uncle; give it the uncle-less body of block 2
    path = tmp_path / "uncles.era1"
    rewrite(path, first_blocks, 3, body_rlp=first_blocks[2].body_rlp)
    failure = verification_failure(path)
    assert (failure.block_number, failure.check) == (3, "uncles-hash")


def test_a_changed_header_breaks_the_next_parent_link(
    tmp_path: Path, first_blocks: list[Era1Block]
) -> None:
    header = rlp.decode(first_blocks[9].header_rlp)
    header[12] = b"changed extra data"
    path = tmp_path / "parent.era1"
    rewrite(path, first_blocks, 9, header_rlp=rlp.encode(header))
    failure = verification_failure(path)
    assert (failure.block_number, failure.check) == (10, "parent-hash")


@pytest.mark.parametrize(
    ("field", "value", "check"),
    [
        ("header_rlp", b"\xc0", "header-rlp"),
        ("header_rlp", b"\x01\x02", "header-rlp"),
        ("body_rlp", rlp.encode([[]]), "body-rlp"),
        ("body_rlp", rlp.encode([[b"\x02not-a-tx"], []]), "transactions-root"),
        ("receipts_rlp", b"\x80", "receipts-rlp"),
        ("receipts_rlp", rlp.encode([b""]), "receipts-rlp"),
        ("body_rlp", rlp.encode([[b""], []]), "body-rlp"),
        ("receipts_rlp", rlp.encode([[b"\x01", b"\x52\x08", bytes(256), []]]), "receipts-root"),
    ],
)
def test_bad_block_content_fails_the_named_check(
    tmp_path: Path, first_blocks: list[Era1Block], field: str, value: bytes, check: str
) -> None:
    path = tmp_path / "content.era1"
    rewrite(path, first_blocks, 20, **{field: value})
    failure = verification_failure(path)
    assert (failure.block_number, failure.check) == (20, check)
    assert str(path) in str(failure) and check in str(failure)


def test_a_block_under_the_wrong_number_fails_the_number_check(
    tmp_path: Path, first_blocks: list[Era1Block]
) -> None:
    path = tmp_path / "number.era1"
    rewrite(path, first_blocks, 30, header_rlp=first_blocks[31].header_rlp)
    failure = verification_failure(path)
    assert (failure.block_number, failure.check) == (30, "number")


def test_an_unindexed_block_after_the_last_fails_the_count_check(
    tmp_path: Path, first_blocks: list[Era1Block]
) -> None:
    # blocks 0..9 in the file, but the index and accumulator cover only 0..8
    write_era1(tmp_path / "ten.era1", first_blocks[:10])
    with Era1File(tmp_path / "ten.era1") as era:
        ninth = era.block_offset(9)
        offsets = [era.block_offset(n) for n in range(9)]
        blocks_end = era._accumulator_offset
    content = (tmp_path / "ten.era1").read_bytes()
    root = epoch_accumulator_root((b.block_hash, b.total_difficulty) for b in first_blocks[:9])
    body = content[:blocks_end] + encode_entry(0x07, root)
    index_at = len(body)
    index = [(0).to_bytes(8, "little")]
    index += [(o - index_at).to_bytes(8, "little", signed=True) for o in offsets]
    index.append((9).to_bytes(8, "little"))
    path = tmp_path / "nine.era1"
    path.write_bytes(body + encode_entry(0x3266, b"".join(index)))
    assert ninth < blocks_end
    with Era1File(path) as era:
        assert era.count == 9
        with pytest.raises(Era1VerificationError) as caught:
            era.verify()
    assert (caught.value.block_number, caught.value.check) == (None, "block-count")


def test_writer_refuses_gaps_and_empty_input(tmp_path: Path, first_blocks: list[Era1Block]) -> None:
    with pytest.raises(ValueError):
        write_era1(tmp_path / "gap.era1", [first_blocks[0], first_blocks[2]])
    with pytest.raises(ValueError):
        write_era1(tmp_path / "empty.era1", [])


def test_random_damage_gives_typed_errors_or_the_same_blocks(
    small_era1: Path, first_blocks: list[Era1Block]
) -> None:
    # Whatever bytes change, reading and verifying either fails with a typed error or yields
    # exactly the original blocks (snappy can encode the same bytes in more than one way: a
    # copy from a run of zeros at another offset decodes to the same header).
    original = small_era1.read_bytes()
    rng = random.Random(2124)
    outcomes = set()
    for _ in range(200):
        damaged = bytearray(original)
        for _ in range(rng.choice([1, 1, 2, 5])):
            damaged[rng.randrange(len(damaged))] ^= rng.randrange(1, 256)
        if rng.random() < 0.1:
            damaged = damaged[: rng.randrange(len(damaged))]
        small_era1.write_bytes(bytes(damaged))
        try:
            with Era1File(small_era1) as era:
                era.verify()
                assert list(era) == first_blocks
            outcomes.add("verified")
        except (Era1FormatError, Era1VerificationError) as error:
            outcomes.add(type(error).__name__)
    assert {"Era1FormatError", "Era1VerificationError"} <= outcomes


def test_the_accumulator_refuses_more_records_than_an_epoch_holds() -> None:
    record = (bytes(32), 1)
    epoch_accumulator_root([record] * EPOCH_SIZE)
    with pytest.raises(ValueError):
        epoch_accumulator_root([record] * (EPOCH_SIZE + 1))
    with pytest.raises(ValueError):
        epoch_accumulator_root([(bytes(31), 1)])
