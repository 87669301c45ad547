"""The node's datadir: which chain it holds, and the chain database py-evm reads and writes.

    DATADIR/kesque/      Kesque: trie nodes, code, canonical headers, bodies, receipts, td
    DATADIR/chaindata/   LevelDB: block hash <-> number, canonical head, transaction index,
                         chain gaps, side-chain headers, genesis keys, layout marker

How py-evm's writes are routed and grouped per block: kesque_chaindb.py. Kesque's `account`
topic stays empty: py-evm keeps account-trie and storage-trie nodes in one key space, so both
go to `storage`. Other components that keep their own keys in `ChainStore.db` (sync
checkpoints, peer records) must use keys that are not 32 bytes long (e.g. `b"khipu:sync:..."`):
those land in LevelDB, 32-byte keys are taken for trie nodes, code or headers. The writer holds both
stores' locks; `ChainStore.open_readonly` opens a view of the canonical chain and its state from
any other process while the writer runs (Kesque only: LevelDB admits one process).

A datadir of the former layout (everything in one LevelDB at chaindata/) is refused with
`OldDatadirLayout`: re-import the chain into a new datadir.
"""

from __future__ import annotations

import json
from pathlib import Path

from eth.abc import BlockHeaderAPI
from eth.db.chain import ChainDB

from khipu.chain.config import Genesis
from khipu.chain.genesis import build_genesis_header, genesis_state_root, write_genesis_state
from khipu.chain.rules import ChainRules
from khipu.storage.kesque import Kesque, KesqueConfig
from khipu.storage.kesque import StoreLocked as KesqueLocked
from khipu.storage.kesque_chaindb import GENESIS_HASH_KEY, KesqueChainDatabase
from khipu.storage.leveldb import LevelDB, StoreLocked

GENESIS_SPEC_KEY = b"khipu:genesis-json"
LAYOUT_KEY = b"khipu:datadir-layout"
LAYOUT = b"kesque-1"
KESQUE_DIR = "kesque"
INDEX_DIR = "chaindata"


class StoreUnavailable(RuntimeError):
    """No store is open: the StorageWriter is restarting or the node is stopping (raised by the
    node's LiveStore to in-process readers)."""


class GenesisMismatch(RuntimeError):
    """The datadir holds another chain than the one asked for (or cannot hold one)."""


class OldDatadirLayout(GenesisMismatch):
    """The datadir was written by the former LevelDB-only layout."""


class ChainStore:
    """An open datadir: py-evm's database and ChainDB over Kesque + LevelDB, and the genesis."""

    def __init__(
        self, datadir: Path, db: KesqueChainDatabase, kesque: Kesque, genesis_hash: bytes
    ) -> None:
        self.datadir = datadir
        self.db = db
        self.kesque = kesque
        self.chaindb = ChainDB(db)
        self.genesis_hash = genesis_hash
        self.closed = False

    @classmethod
    def open(
        cls,
        datadir: Path,
        genesis: Genesis,
        genesis_json: dict[str, object],
        *,
        config: KesqueConfig | None = None,
    ) -> ChainStore:
        """Open `datadir` for writing, writing the genesis block on first use.

        Raises GenesisMismatch if the datadir was initialised with another genesis,
        OldDatadirLayout for a datadir of the LevelDB-only layout, and StoreLocked if another
        process has it open.
        """
        datadir = Path(datadir)
        datadir.mkdir(parents=True, exist_ok=True)
        index = LevelDB(datadir / INDEX_DIR)
        try:
            store = cls._open_writer(datadir, index, genesis, genesis_json, config)
        except BaseException:
            index.close()
            raise
        return store

    @classmethod
    def _open_writer(
        cls,
        datadir: Path,
        index: LevelDB,
        genesis: Genesis,
        genesis_json: dict[str, object],
        config: KesqueConfig | None,
    ) -> ChainStore:
        stored = index.get(GENESIS_HASH_KEY)
        if stored is not None and index.get(LAYOUT_KEY) != LAYOUT:
            raise OldDatadirLayout(
                f"{datadir} was written by an older khipu (everything in one LevelDB at "
                f"{datadir / INDEX_DIR}): re-import the chain into a new --datadir"
            )
        try:
            kesque = Kesque.open(datadir / KESQUE_DIR, config=config)
        except KesqueLocked as exc:
            raise StoreLocked(f"{datadir} is in use by another khipu process ({exc})") from exc
        try:
            db = KesqueChainDatabase(kesque, index)
            genesis_hash = cls._check_genesis(datadir, db, stored, genesis, genesis_json)
        except BaseException:
            kesque.close()
            raise
        return cls(datadir, db, kesque, genesis_hash)

    @staticmethod
    def _check_genesis(
        datadir: Path,
        db: KesqueChainDatabase,
        stored: bytes | None,
        genesis: Genesis,
        genesis_json: dict[str, object],
    ) -> bytes:
        rules = ChainRules(genesis.config)
        assert db.index is not None
        if stored is None:
            state_root = write_genesis_state(genesis, db)
            header = build_genesis_header(genesis, rules, state_root)
            ChainDB(db).persist_header(header)
            db.index.write_changes(
                {
                    GENESIS_SPEC_KEY: json.dumps(genesis_json).encode(),
                    GENESIS_HASH_KEY: header.hash,
                    LAYOUT_KEY: LAYOUT,
                },
                sync=True,
            )
            return header.hash
        if db.canonical_hash(0) != stored:
            raise GenesisMismatch(
                f"{datadir / KESQUE_DIR} does not hold the genesis block 0x{stored.hex()} that "
                f"{datadir / INDEX_DIR} names: the datadir is damaged, re-import into a new one"
            )
        check_stored_genesis(datadir, stored, db.index.get(GENESIS_SPEC_KEY), genesis, genesis_json)
        return stored

    @classmethod
    def open_readonly(cls, datadir: Path, *, config: KesqueConfig | None = None) -> ChainStore:
        """A read-only view of `datadir`'s canonical chain and state, from any process, also
        while the writer runs; it follows the writer's commits block by block.

        Hash lookups reach the latest blocks only and there is no transaction index (see
        kesque_chaindb.py). Raises kesque's StoreMissing if the datadir has no store, and
        GenesisMismatch if it has no genesis block yet.
        """
        datadir = Path(datadir)
        kesque = Kesque.open(datadir / KESQUE_DIR, readonly=True, config=config)
        db = KesqueChainDatabase(kesque, None)
        genesis_hash = db.canonical_hash(0)
        if genesis_hash is None:
            kesque.close()
            raise GenesisMismatch(f"{datadir} holds no chain yet")
        return cls(datadir, db, kesque, genesis_hash)

    @staticmethod
    def stored_genesis_json(datadir: Path) -> dict[str, object] | None:
        """The genesis.json a datadir was created with, or None for a new datadir.

        Raises StoreLocked while another process has the datadir open.
        """
        path = Path(datadir) / INDEX_DIR
        if not path.exists():
            return None
        db = LevelDB(path, create=False)
        try:
            raw = db.get(GENESIS_SPEC_KEY)
        finally:
            db.close()
        return None if raw is None else dict(json.loads(raw))

    @property
    def readonly(self) -> bool:
        return self.db.readonly

    def head(self) -> BlockHeaderAPI:
        """The canonical head header (a read-only view: the last block the writer committed)."""
        return self.chaindb.get_canonical_head()

    def sync(self) -> None:
        """Make everything written so far durable."""
        self.db.sync()

    def close(self) -> None:
        """Commit, flush and close both stores; closing twice is harmless."""
        if self.closed:
            return
        self.closed = True
        if self.db.index is not None:
            self.db.sync()
            self.db.index.close()
        self.kesque.close()


def check_stored_genesis(
    datadir: Path,
    stored_hash: bytes,
    stored_json: bytes | None,
    genesis: Genesis,
    genesis_json: dict[str, object],
) -> None:
    """Raise GenesisMismatch unless the datadir's genesis is the one of `genesis`.

    The same genesis.json document needs no work; another document (reformatted, or a preset
    grown in a later version) is compared by the genesis hash it yields.
    """
    if stored_json == json.dumps(genesis_json).encode():
        return
    rules = ChainRules(genesis.config)
    expected = build_genesis_header(genesis, rules, genesis_state_root(genesis)).hash
    if stored_hash != expected:
        raise GenesisMismatch(
            f"{datadir} holds the chain with genesis 0x{stored_hash.hex()}, "
            f"not 0x{expected.hex()}: use another --datadir"
        )
