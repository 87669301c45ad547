"""ChainStore on Kesque + LevelDB: where each kind of data lands, reopening, side headers,
a crash between the Kesque commit and the LevelDB write, the old layout, read-only views."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import rlp
from eth.db.account import AccountDB
from eth_hash.auto import keccak

from khipu.chain.config import Genesis
from khipu.chain.import_job import import_files
from khipu.chain.rules import ChainRules
from khipu.storage.chain_store import ChainStore, GenesisMismatch, OldDatadirLayout
from khipu.storage.kesque import KesqueConfig
from khipu.storage.leveldb import LevelDB
from khipu.storage.leveldb_chain_store import LevelDBChainStore
from tests.chain_helpers import read_blocks
from tests.conftest import require_testdata

BLOCKS = 12
FAST = KesqueConfig(fsync=False)


@pytest.fixture(scope="module")
def suite() -> Path:
    return require_testdata("rpc-compat-prague")


@pytest.fixture(scope="module")
def document(suite: Path) -> dict[str, Any]:
    return dict(json.loads((suite / "genesis.json").read_text()))


@pytest.fixture
def first_blocks(suite: Path, tmp_path: Path) -> Path:
    path = tmp_path / "first.rlp"
    path.write_bytes(b"".join(read_blocks(suite / "chain.rlp")[:BLOCKS]))
    return path


def open_store(datadir: Path, document: dict[str, Any]) -> ChainStore:
    return ChainStore.open(datadir, Genesis.from_json(document), document, config=FAST)


def import_into(store: ChainStore, document: dict[str, Any], path: Path) -> None:
    rules = ChainRules(Genesis.from_json(document).config)
    import_files(store, rules, [path], check_seal=False)


def fixture_result(suite: Path, method: str, name: str) -> Any:
    text = (suite / method / name).read_text()
    return json.loads(re.findall(r"^<< (.*)$", text, re.M)[0])["result"]


def test_each_kind_of_data_lands_in_its_topic(
    suite: Path, document: dict[str, Any], first_blocks: Path, tmp_path: Path
) -> None:
    store = open_store(tmp_path / "data", document)
    try:
        import_into(store, document, first_blocks)
        head = store.head()
        assert head.block_number == BLOCKS
        headers = store.kesque.number_topic("header")
        assert headers.last_offset() == BLOCKS
        for number in range(BLOCKS + 1):
            header = store.chaindb.get_canonical_block_header_by_number(number)
            assert keccak(headers.get_at(number)) == header.hash
            score = store.kesque.number_topic("td").get_at(number)
            assert rlp.decode(score, sedes=rlp.sedes.big_endian_int) == store.chaindb.get_score(
                header.hash
            )
        # block 3's body and receipts are what geth serves for it
        raw_block = rlp.decode(
            bytes.fromhex(fixture_result(suite, "debug_getRawBlock", "get-block-n.io")[2:])
        )
        body = rlp.decode(store.kesque.number_topic("body").get_at(3))
        assert body == raw_block[1:]
        receipts = rlp.decode(store.kesque.number_topic("receipts").get_at(3))
        expected = fixture_result(suite, "debug_getRawReceipts", "get-block-n.io")
        assert [_receipt_hex(item) for item in receipts] == expected
        # state: the state root in `storage`, contract code in `evmcode`
        assert store.kesque.hash_topic("storage").get(head.state_root) is not None
        code = next(
            bytes.fromhex(a["code"][2:]) for a in document["alloc"].values() if a.get("code")
        )
        assert store.kesque.hash_topic("evmcode").get(keccak(code)) == code
        assert store.kesque.hash_topic("storage").get(keccak(code)) is None
        leveldb_keys = _leveldb_keys(store)
    finally:
        store.close()
    assert not [key for key in leveldb_keys if len(key) == 32], "trie nodes or headers in LevelDB"
    assert any(key.startswith(b"transaction-hash-to-block:") for key in leveldb_keys)


def _receipt_hex(item: bytes | list[Any]) -> str:
    return "0x" + (item if isinstance(item, bytes) else rlp.encode(item)).hex()


def _leveldb_keys(store: ChainStore) -> list[bytes]:
    assert store.db.index is not None
    return [bytes(key) for key, _ in store.db.index._db]


def test_reopening_keeps_the_head_and_resumes(
    document: dict[str, Any], first_blocks: Path, suite: Path, tmp_path: Path
) -> None:
    store = open_store(tmp_path / "data", document)
    import_into(store, document, first_blocks)
    head = store.head()
    store.close()
    store.close()  # harmless
    store = open_store(tmp_path / "data", document)
    try:
        assert store.head() == head
        assert store.genesis_hash == store.chaindb.get_canonical_block_hash(0)
        import_into(store, document, suite / "chain.rlp")
        assert store.head().block_number == len(read_blocks(suite / "chain.rlp"))
    finally:
        store.close()


def test_a_side_header_goes_to_leveldb_and_leaves_the_header_topic_alone(
    document: dict[str, Any], first_blocks: Path, tmp_path: Path
) -> None:
    store = open_store(tmp_path / "data", document)
    try:
        import_into(store, document, first_blocks)
        canonical = store.chaindb.get_canonical_block_header_by_number(5)
        side = canonical.copy(extra_data=b"side block")
        store.chaindb.persist_header(side)
        assert store.chaindb.get_block_header_by_hash(side.hash) == side
        assert store.chaindb.get_canonical_block_hash(5) == canonical.hash
        assert keccak(store.kesque.number_topic("header").get_at(5)) == canonical.hash
        assert side.hash in _leveldb_keys(store)
    finally:
        store.close()


def test_killed_between_kesque_commit_and_leveldb_write_imports_the_block_again(
    document: dict[str, Any], first_blocks: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(tmp_path / "data", document)
    real_write = LevelDB.write_changes
    calls = {"blocks": 0}

    def write_changes(
        self: LevelDB, changes: dict[bytes, bytes | None], sync: bool = False
    ) -> None:
        if b"v1:canonical_head_hash" in changes:
            calls["blocks"] += 1
            if calls["blocks"] == 6:
                raise OSError("killed")
        real_write(self, changes, sync)

    monkeypatch.setattr(LevelDB, "write_changes", write_changes)
    with pytest.raises(OSError, match="killed"):
        import_into(store, document, first_blocks)
    monkeypatch.setattr(LevelDB, "write_changes", real_write)
    headers = store.kesque.number_topic("header")
    assert headers.last_offset() == store.head().block_number + 1 == 6
    store.db.index.close()  # type: ignore[union-attr]
    store.kesque.close()

    store = open_store(tmp_path / "data", document)
    try:
        assert store.head().block_number == 5
        import_into(store, document, first_blocks)
        assert store.head().block_number == BLOCKS
        assert store.kesque.number_topic("header").last_offset() == BLOCKS
        assert keccak(store.kesque.number_topic("header").get_at(6)) == (
            store.chaindb.get_canonical_block_hash(6)
        )
    finally:
        store.close()


def test_a_datadir_of_the_old_layout_is_refused(document: dict[str, Any], tmp_path: Path) -> None:
    old = LevelDBChainStore.open(tmp_path / "old", Genesis.from_json(document), document)
    old.close()
    with pytest.raises(OldDatadirLayout, match="re-import the chain into a new --datadir"):
        open_store(tmp_path / "old", document)
    assert ChainStore.stored_genesis_json(tmp_path / "old") == document


def test_another_genesis_is_refused(document: dict[str, Any], tmp_path: Path) -> None:
    open_store(tmp_path / "data", document).close()
    other = json.loads(require_testdata("ethtest", "genesis.json").read_text())
    with pytest.raises(GenesisMismatch, match="use another --datadir"):
        open_store(tmp_path / "data", other)
    assert ChainStore.stored_genesis_json(tmp_path / "data") == document


def test_a_readonly_view_follows_the_writer(
    document: dict[str, Any], first_blocks: Path, suite: Path, tmp_path: Path
) -> None:
    writer = open_store(tmp_path / "data", document)
    try:
        import_into(writer, document, first_blocks)
        reader = ChainStore.open_readonly(tmp_path / "data", config=FAST)
        try:
            assert reader.readonly and reader.genesis_hash == writer.genesis_hash
            assert reader.head() == writer.head()
            import_into(writer, document, suite / "chain.rlp")
            reader.kesque.refresh()
            head = writer.head()
            assert reader.head() == head
            parent = reader.chaindb.get_block_header_by_hash(head.parent_hash)
            assert parent.block_number == head.block_number - 1
            assert reader.chaindb.get_score(head.hash) == writer.chaindb.get_score(head.hash)
            for address_hex in document["alloc"]:
                address = bytes.fromhex(address_hex.removeprefix("0x"))
                assert AccountDB(reader.db, head.state_root).get_balance(address) == (
                    AccountDB(writer.db, head.state_root).get_balance(address)
                )
            with pytest.raises(PermissionError):
                reader.db[b"k"] = b"v"
        finally:
            reader.close()
    finally:
        writer.close()


def test_a_datadir_in_use_is_refused_with_store_locked(
    document: dict[str, Any], tmp_path: Path
) -> None:
    from khipu.storage.kesque import Kesque
    from khipu.storage.leveldb import StoreLocked

    store = open_store(tmp_path / "data", document)
    try:
        with pytest.raises(StoreLocked, match="in use"):
            open_store(tmp_path / "data", document)
    finally:
        store.close()
    only_kesque = Kesque.open(tmp_path / "data" / "kesque", config=FAST)
    try:
        with pytest.raises(StoreLocked, match="in use by another khipu process"):
            open_store(tmp_path / "data", document)
    finally:
        only_kesque.close()
    open_store(tmp_path / "data", document).close()


def test_db_commands_look_after_the_chain_datadir(
    document: dict[str, Any],
    first_blocks: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from khipu.cli import main

    store = open_store(tmp_path / "data", document)
    import_into(store, document, first_blocks)
    head = store.head()
    store.close()
    capsys.readouterr()
    assert main(["db", "stats", "--datadir", str(tmp_path / "data")]) == 0
    stats = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()}
    assert stats["header"][2] == stats["body"][2] == stats["td"][2] == str(BLOCKS + 1)
    assert int(stats["storage"][2]) > 0 and int(stats["evmcode"][2]) > 0
    assert main(["db", "check", "--datadir", str(tmp_path / "data")]) == 0
    assert main(["db", "repair", "--datadir", str(tmp_path / "data")]) == 0
    store = open_store(tmp_path / "data", document)
    try:
        assert store.head() == head
        assert AccountDB(store.db, head.state_root).get_balance(head.coinbase) >= 0
    finally:
        store.close()


def test_a_readonly_view_finds_recent_block_hashes_only(
    document: dict[str, Any], first_blocks: Path, tmp_path: Path
) -> None:
    from khipu.storage.kesque import Kesque
    from khipu.storage.kesque_chaindb import KesqueChainDatabase

    writer = open_store(tmp_path / "data", document)
    try:
        import_into(writer, document, first_blocks)
        with Kesque.open(tmp_path / "data" / "kesque", readonly=True, config=FAST) as kesque:
            view = KesqueChainDatabase(kesque, None, recent_window=4)
            assert view.block_number_of(writer.chaindb.get_canonical_block_hash(BLOCKS - 3)) == (
                BLOCKS - 3
            )
            assert view.block_number_of(writer.chaindb.get_canonical_block_hash(2)) is None
            assert view[b"block-number-to-hash:2"] == rlp.encode(
                writer.chaindb.get_canonical_block_hash(2)
            )
            with pytest.raises(KeyError):
                view[b"transaction-hash-to-block:" + b"x"]
    finally:
        writer.close()


def test_a_block_that_fails_while_stored_leaves_no_kesque_records(
    document: dict[str, Any], first_blocks: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from khipu.storage import chain_records

    store = open_store(tmp_path / "data", document)
    try:
        real_body = chain_records.body_record

        def body_record(db: Any, fields: list[bytes]) -> bytes:
            if chain_records.header_number(fields) == 6:
                raise RuntimeError("disk trouble")
            return real_body(db, fields)

        monkeypatch.setattr(chain_records, "body_record", body_record)
        with pytest.raises(RuntimeError, match="disk trouble"):
            import_into(store, document, first_blocks)
        assert store.head().block_number == 5
        assert store.kesque.number_topic("header").last_offset() == 5
        assert store.kesque.number_topic("td").last_offset() == 5
        monkeypatch.setattr(chain_records, "body_record", real_body)
        import_into(store, document, first_blocks)
        assert store.head().block_number == BLOCKS
        assert store.kesque.number_topic("body").last_offset() == BLOCKS
    finally:
        store.close()


def test_reader_threads_read_the_writers_store_while_it_imports(
    document: dict[str, Any], suite: Path, tmp_path: Path
) -> None:
    """What the JSON-RPC server does: read heads, headers and state from threads."""
    import threading

    store = open_store(tmp_path / "data", document)
    addresses = [bytes.fromhex(key.removeprefix("0x")) for key in document["alloc"]]
    stop = threading.Event()
    seen: list[list[int]] = [[], []]
    errors: list[BaseException] = []

    def read_until_stopped(heads: list[int]) -> None:
        try:
            while not stop.is_set():
                head = store.head()
                state = AccountDB(store.db, head.state_root)
                for address in addresses:
                    state.get_balance(address)
                    state.get_code(address)
                assert store.chaindb.get_block_header_by_hash(head.hash) == head
                if not heads or heads[-1] != head.block_number:
                    heads.append(head.block_number)
        except BaseException as error:
            errors.append(error)

    readers = [threading.Thread(target=read_until_stopped, args=(heads,)) for heads in seen]
    try:
        for reader in readers:
            reader.start()
        import_into(store, document, suite / "chain.rlp")
    finally:
        stop.set()
        for reader in readers:
            reader.join()
        final = store.head()
        store.close()
    assert errors == []
    assert final.block_number > BLOCKS
    for heads in seen:
        assert heads and heads == sorted(heads) and heads[-1] <= final.block_number
