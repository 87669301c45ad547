"""The former datadir layout, kept as the baseline of `benchmarks.import_storage`.

Layout: DATADIR/chaindata is one LevelDB holding py-evm's whole chain schema (headers, bodies,
receipts, canonical index, transaction index, state trie nodes) and khipu's genesis keys. The
node's store is `khipu.storage.chain_store.ChainStore` (Kesque + LevelDB); this one has the
same face.
"""

from __future__ import annotations

import json
from pathlib import Path

from eth.abc import BlockHeaderAPI
from eth.db.chain import ChainDB

from khipu.chain.config import Genesis
from khipu.chain.genesis import build_genesis_header, write_genesis_state
from khipu.chain.rules import ChainRules
from khipu.storage.chain_store import GENESIS_SPEC_KEY, GenesisMismatch, check_stored_genesis
from khipu.storage.kesque_chaindb import GENESIS_HASH_KEY
from khipu.storage.leveldb import LevelDB


class LevelDBChainStore:
    """An open LevelDB-only datadir: its LevelDB, py-evm's ChainDB over it, the genesis."""

    def __init__(self, datadir: Path, db: LevelDB, genesis_hash: bytes) -> None:
        self.datadir = datadir
        self.db = db
        self.chaindb = ChainDB(db)
        self.genesis_hash = genesis_hash

    @classmethod
    def open(
        cls, datadir: Path, genesis: Genesis, genesis_json: dict[str, object]
    ) -> LevelDBChainStore:
        """Open `datadir`, writing the genesis block on first use.

        Raises GenesisMismatch if the datadir was initialised with another genesis, and
        StoreLocked if another process has it open.
        """
        datadir = Path(datadir)
        datadir.mkdir(parents=True, exist_ok=True)
        db = LevelDB(datadir / "chaindata")
        rules = ChainRules(genesis.config)
        stored = db.get(GENESIS_HASH_KEY)
        if stored is None:
            state_root = write_genesis_state(genesis, db)
            header = build_genesis_header(genesis, rules, state_root)
            ChainDB(db).persist_header(header)
            with db.atomic_batch() as batch:
                batch[GENESIS_SPEC_KEY] = json.dumps(genesis_json).encode()
                batch[GENESIS_HASH_KEY] = header.hash
            db.sync()
            return cls(datadir, db, header.hash)
        try:
            check_stored_genesis(datadir, stored, db.get(GENESIS_SPEC_KEY), genesis, genesis_json)
        except GenesisMismatch:
            db.close()
            raise
        return cls(datadir, db, stored)

    def head(self) -> BlockHeaderAPI:
        """The canonical head header."""
        return self.chaindb.get_canonical_head()

    def close(self) -> None:
        """Flush and close the database."""
        self.db.sync()
        self.db.close()
