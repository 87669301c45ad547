"""StoreChainReader: the node's datadir seen as devp2p serves it, checked against the chain file
it was imported from (headers and bodies byte for byte, receipts against the receipts roots)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth.db.trie import _make_trie_root_and_nodes

from khipu.chain.config import Genesis
from khipu.chain.genesis import chain_identity
from khipu.chain.import_job import import_files
from khipu.chain.progress import ImportProgress
from khipu.chain.rules import ChainRules
from khipu.p2p import wire
from khipu.p2p.eth import messages as eth
from khipu.p2p.eth import serving
from khipu.p2p.eth.peer import LocalChain
from khipu.p2p.store_reader import StoreChainReader
from khipu.storage.chain_store import ChainStore
from tests.conftest import require_testdata
from tests.unit.p2p.chainfile import MemoryChain


@pytest.fixture(scope="module")
def reader(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StoreChainReader]:
    folder = require_testdata("rpc-compat-prague")
    genesis_json = __import__("json").loads((folder / "genesis.json").read_text())
    genesis = Genesis.from_json(genesis_json)
    store = ChainStore.open(tmp_path_factory.mktemp("store-reader"), genesis, genesis_json)
    try:
        rules = ChainRules(genesis.config)
        progress = ImportProgress(45, io.StringIO())
        import_files(store, rules, [folder / "chain.rlp"], check_seal=False, progress=progress)
        yield StoreChainReader(store, genesis)
    finally:
        store.close()


def test_identity_is_the_genesis_chain(reader: StoreChainReader) -> None:
    folder: Path = require_testdata("rpc-compat-prague")
    identity = chain_identity(Genesis.load(folder / "genesis.json"))
    assert reader.network_id() == identity.chain_id
    assert reader.genesis_hash() == identity.genesis.hash
    assert reader.fork_points() == identity.fork_points
    # the Status we would send: the fork id of the head under the chain's fork points
    local = LocalChain.from_reader(reader)
    assert local.head_number == 45
    assert local.status().fork_id == identity.fork_points.fork_id(45, local.head_time)


def test_headers_and_bodies_are_the_imported_ones(
    reader: StoreChainReader, prague_chain: MemoryChain
) -> None:
    assert reader.head_header() == prague_chain.head_header()
    assert reader.head_total_difficulty() == prague_chain.head_total_difficulty()
    for number, header in prague_chain.headers.items():
        block_hash = prague_chain.hashes[number]
        assert reader.header_by_number(number) == header
        assert reader.header_by_hash(block_hash) == header
        assert reader.body_by_hash(block_hash) == prague_chain.bodies[block_hash], number
    assert eth.header_facts(reader.header_by_number(0) or b"").block_hash == (reader.genesis_hash())


def test_receipts_match_the_receipts_roots(
    reader: StoreChainReader, prague_chain: MemoryChain
) -> None:
    with_receipts = 0
    for number, header in prague_chain.headers.items():
        receipts = reader.receipts_by_hash(prague_chain.hashes[number])
        assert receipts is not None
        items = wire.as_list(wire.decode(receipts), "receipts")
        encoded = tuple(wire.encode(i) if isinstance(i, list) else i for i in items)
        root, _ = _make_trie_root_and_nodes(encoded)
        receipts_root = wire.as_list(wire.decode(header), "header")[5]
        assert root == receipts_root, f"block {number}"
        with_receipts += bool(items)
    assert with_receipts > 10


def test_unknown_blocks_are_none(reader: StoreChainReader) -> None:
    assert reader.header_by_number(46) is None
    assert reader.header_by_number(-1) is None
    for unknown in (b"\x01" * 32, b"\x01" * 5):
        assert reader.header_by_hash(unknown) is None
        assert reader.body_by_hash(unknown) is None
        assert reader.receipts_by_hash(unknown) is None


def test_serving_walks_the_store(reader: StoreChainReader, prague_chain: MemoryChain) -> None:
    request = eth.HeaderRequest(prague_chain.hashes[44], 5, 9, True)
    headers = serving.select_headers(reader, request)
    assert [eth.header_facts(h).number for h in headers] == [44, 34, 24, 14, 4]
    past_head = serving.select_headers(reader, eth.HeaderRequest(40, 10))
    assert [eth.header_facts(h).number for h in past_head] == list(range(40, 46))
