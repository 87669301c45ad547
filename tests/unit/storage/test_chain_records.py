"""Telling py-evm's 32-byte entries apart: headers, trie nodes, code; score and number keys."""

from __future__ import annotations

import os

import rlp
from eth.db.backends.memory import MemoryDB
from eth.db.schema import SchemaV1
from eth.rlp.headers import BlockHeader
from eth_hash.auto import keccak
from trie import HexaryTrie

from khipu.storage import chain_records as records


def sample_header(number: int = 7) -> BlockHeader:
    return BlockHeader(
        difficulty=1,
        block_number=number,
        gas_limit=30_000_000,
        timestamp=1_700_000_000,
        coinbase=b"\x11" * 20,
        parent_hash=b"\x22" * 32,
        extra_data=b"",
    )


def trie_nodes() -> list[bytes]:
    """Every node of a trie with short and long values (leaves, extensions, branches)."""
    db = MemoryDB()
    trie = HexaryTrie(db)
    for index in range(300):
        value = os.urandom(1 + index % 300) if index % 3 else rlp.encode([index, b"\x00" * 40])
        trie[keccak(index.to_bytes(4, "big"))] = value
    return list(db.kv_store.values())


def test_a_header_is_recognised_and_its_number_read() -> None:
    raw = rlp.encode(sample_header(1234))
    assert records.is_header(raw)
    fields = records.header_fields(raw)
    assert records.header_number(fields) == 1234
    assert records.header_parent_hash(raw) == b"\x22" * 32


def test_no_trie_node_looks_like_a_header_and_all_are_rlp_lists() -> None:
    nodes = trie_nodes()
    assert len(nodes) > 300
    assert not any(records.is_header(node) for node in nodes)
    assert all(records.is_rlp_list(node) for node in nodes)


def test_code_is_not_an_rlp_list() -> None:
    code = bytes.fromhex("6080604052348015600f57600080fd5b50603f80601d6000396000f3fe")
    assert not records.is_rlp_list(code)
    assert not records.is_rlp_list(b"")
    assert not records.is_rlp_list(rlp.encode([b"a", b"b"]) + b"\x00")


def test_score_and_number_keys_name_their_block() -> None:
    block_hash = keccak(b"block")
    assert records.hash_of_score_key(SchemaV1.make_block_hash_to_score_lookup_key(block_hash)) == (
        block_hash
    )
    assert records.hash_of_score_key(b"block-hash-to-score:garbage") is None
    assert records.number_of_number_key(SchemaV1.make_block_number_to_hash_lookup_key(42)) == 42
    assert records.number_of_number_key(b"v1:canonical_head_hash") is None


def test_raw_lists_encode_like_rlp() -> None:
    for items in ([], [b"x"], [b"y" * 60, [b"a", b"b"]], [[b"z" * 300] * 3]):
        assert records.encode_raw_list(rlp.encode(item) for item in items) == rlp.encode(items)
