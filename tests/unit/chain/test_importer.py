"""Block import on the rpc-compat-prague chain: valid blocks in, the first invalid one stops it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import rlp

from khipu.chain.importer import InvalidBlock, MalformedBlock, decode_block
from tests.chain_helpers import memory_importer, read_blocks
from tests.conftest import require_testdata


@pytest.fixture(scope="module")
def suite() -> Path:
    return require_testdata("rpc-compat-prague")


def tampered(raw: bytes, field: int, value: bytes) -> bytes:
    """`raw` with header field number `field` replaced."""
    block = rlp.decode(raw)
    block[0][field] = value
    return bytes(rlp.encode(block))


def test_whole_chain_imports_to_the_forkchoice_head(suite: Path) -> None:
    importer = memory_importer(suite / "genesis.json")
    for raw in read_blocks(suite / "chain.rlp"):
        importer.import_block(decode_block(raw, importer.rules))
    head = importer.chain.chaindb.get_canonical_head()
    fcu = json.loads((suite / "headfcu.json").read_text())
    assert "0x" + head.hash.hex() == fcu["params"][0]["headBlockHash"]
    assert head.block_number == 45


@pytest.mark.parametrize(
    ("field", "value", "check"),
    [
        (3, b"\x11" * 32, "state root"),
        (5, b"\x22" * 32, "receipts root"),
        (10, b"\x01", "gas used"),
        (6, b"\x00" * 255 + b"\x01", "logs bloom"),
        (4, b"\x33" * 32, "transactions root"),
    ],
)
def test_first_invalid_block_names_number_hash_and_check(
    suite: Path, field: int, value: bytes, check: str
) -> None:
    importer = memory_importer(suite / "genesis.json")
    blocks = read_blocks(suite / "chain.rlp")
    for raw in blocks[:9]:
        importer.import_block(decode_block(raw, importer.rules))
    bad = decode_block(tampered(blocks[9], field, value), importer.rules)
    with pytest.raises(InvalidBlock) as caught:
        importer.import_block(bad)
    assert caught.value.number == 10
    assert caught.value.block_hash == bad.hash
    assert caught.value.check == check
    assert f"#10 0x{bad.hash.hex()}" in str(caught.value)
    assert importer.chain.chaindb.get_canonical_head().block_number == 9


def test_fake_seals_fail_the_seal_check(suite: Path) -> None:
    importer = memory_importer(suite / "genesis.json", check_seal=True)
    first = decode_block(read_blocks(suite / "chain.rlp")[0], importer.rules)
    with pytest.raises(InvalidBlock) as caught:
        importer.import_block(first)
    assert caught.value.check == "seal"


def test_unknown_parent_is_rejected(suite: Path) -> None:
    importer = memory_importer(suite / "genesis.json")
    orphan = decode_block(read_blocks(suite / "chain.rlp")[4], importer.rules)
    with pytest.raises(InvalidBlock) as caught:
        importer.import_block(orphan)
    assert caught.value.check == "parent"


def test_importing_a_stored_block_again_is_a_no_op(suite: Path) -> None:
    importer = memory_importer(suite / "genesis.json")
    block = decode_block(read_blocks(suite / "chain.rlp")[0], importer.rules)
    assert not importer.import_block(block).already_known
    assert importer.import_block(block).already_known


@pytest.mark.parametrize(
    "raw",
    [b"\xc0", b"\x83abc", rlp.encode([[b"\x01"] * 3, [], []]), rlp.encode([b"x", [], []])],
)
def test_malformed_blocks_raise_a_clear_error(raw: bytes, suite: Path) -> None:
    importer = memory_importer(suite / "genesis.json")
    with pytest.raises(MalformedBlock, match="not a valid block"):
        decode_block(raw, importer.rules)
