"""Test helpers: in-memory chains built from genesis documents, block files on disk."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from eth.db.atomic import AtomicDB
from eth.db.chain import ChainDB

from khipu.chain.block_files import iter_rlp_blocks
from khipu.chain.chain import KhipuChain, open_chain
from khipu.chain.config import Genesis
from khipu.chain.genesis import build_genesis_header, write_genesis_state
from khipu.chain.importer import BlockImporter
from khipu.chain.rules import ChainRules


def memory_chain(genesis_document: dict[str, Any]) -> tuple[KhipuChain, ChainRules]:
    """A chain in memory holding only the genesis of `genesis_document`."""
    genesis = Genesis.from_json(genesis_document)
    rules = ChainRules(genesis.config)
    db = AtomicDB()
    header = build_genesis_header(genesis, rules, write_genesis_state(genesis, db))
    ChainDB(db).persist_header(header)
    return open_chain(rules, db), rules


def memory_importer(genesis_path: Path, check_seal: bool = False) -> BlockImporter:
    """An importer over an in-memory chain from a genesis.json file."""
    chain, _rules = memory_chain(json.loads(Path(genesis_path).read_text()))
    return BlockImporter(chain, check_seal=check_seal)


def read_blocks(path: Path) -> list[bytes]:
    """The raw RLP blocks of a geth-style export."""
    return list(iter_rlp_blocks(path))
