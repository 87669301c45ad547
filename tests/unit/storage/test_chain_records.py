"""Telling py-evm's 32-byte entries apart: headers, trie nodes, code; score and number keys."""

from __future__ import annotations

import os

import pytest
import rlp
from eth.db.backends.memory import MemoryDB
from eth.db.chain import ChainDB
from eth.db.schema import SchemaV1
from eth.rlp.headers import BlockHeader
from eth_hash.auto import keccak
from hypothesis import given, settings
from hypothesis import strategies as st
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


def ordered_trie(values: list[bytes]) -> tuple[bytes, MemoryDB]:
    """py-evm's trie of a block's items: value i under rlp(i)."""
    db = MemoryDB()
    trie = HexaryTrie(db)
    for index, value in enumerate(values):
        trie[rlp.encode(index)] = value
    return trie.root_hash, db


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.one_of(st.binary(min_size=1, max_size=8), st.binary(min_size=30, max_size=120)),
        max_size=300,
    )
)
def test_an_ordered_trie_reads_back_as_py_evm_reads_it(values: list[bytes]) -> None:
    # short values make embedded nodes; more than 128 items make two-byte keys
    root, db = ordered_trie(values)
    read = records.ordered_trie_values(db.__getitem__, root)
    assert read == values
    if values:
        assert read == list(ChainDB._get_block_data_from_root_hash(db, root))  # type: ignore[arg-type]


def test_an_ordered_trie_with_a_hole_or_a_lost_node_is_refused() -> None:
    values = [os.urandom(40) for _ in range(20)]
    root, db = ordered_trie(values)
    holed = HexaryTrie(db, root)
    del holed[rlp.encode(7)]
    with pytest.raises(ValueError, match=r"indices are not 0\.\.18"):
        records.ordered_trie_values(db.__getitem__, holed.root_hash)
    for node in [key for key in db.kv_store if key != root]:  # the root's children are lost
        del db.kv_store[node]
    with pytest.raises(KeyError):
        records.ordered_trie_values(db.__getitem__, root)


def test_a_block_body_is_rebuilt_from_its_tries() -> None:
    transactions = [rlp.encode([index, b"\x01" * 30]) for index in range(150)]
    transactions.append(b"\x02" + rlp.encode([1, 2, 3]))  # a typed transaction: a byte string
    root, db = ordered_trie(transactions)
    fields = rlp.decode(rlp.encode(sample_header()))
    fields[4] = root
    body = rlp.decode(records.body_record(db, fields))
    assert body[0][:150] == [rlp.decode(item) for item in transactions[:150]]
    assert body[0][150] == transactions[150]
    assert body[1] == []
