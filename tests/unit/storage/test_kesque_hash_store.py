"""KesqueHashStore: py-evm's AtomicDatabaseAPI over a Kesque hash topic."""

from __future__ import annotations

from pathlib import Path

import pytest
from eth.abc import AtomicDatabaseAPI
from eth.db.account import AccountDB
from eth_utils import keccak
from trie import HexaryTrie

from khipu.storage.kesque import Kesque
from khipu.storage.kesque.hash_store import KesqueHashStore


def test_database_api(store_dir: Path) -> None:
    with Kesque.open(store_dir) as kq:
        db = KesqueHashStore(kq, "storage")
        assert isinstance(db, AtomicDatabaseAPI)
        db[b"a" * 32] = b"one"
        db.set(b"b" * 32, b"two")
        assert db[b"a" * 32] == b"one" and db.get(b"b" * 32) == b"two"
        assert db.exists(b"a" * 32) and b"b" * 32 in db and b"c" * 32 not in db
        with pytest.raises(KeyError):
            db[b"c" * 32]
        del db[b"b" * 32]
        assert b"b" * 32 not in db
        with pytest.raises(KeyError):
            del db[b"b" * 32]
        db.delete(b"b" * 32)  # no error for a missing key


def test_atomic_batch_all_or_nothing(store_dir: Path) -> None:
    with Kesque.open(store_dir) as kq:
        db = KesqueHashStore(kq, "evmcode")
        with db.atomic_batch() as batch:
            batch[b"x" * 32] = b"code"
            assert batch[b"x" * 32] == b"code"
            assert b"x" * 32 not in db  # not applied before the batch ends
        assert db[b"x" * 32] == b"code"
        with pytest.raises(RuntimeError), db.atomic_batch() as batch:
            batch[b"y" * 32] = b"dropped"
            raise RuntimeError("abort")
        assert b"y" * 32 not in db


def test_commit_each_batch_makes_it_visible_to_readers(store_dir: Path) -> None:
    with Kesque.open(store_dir) as kq:
        db = KesqueHashStore(kq, "evmcode", commit_each_batch=True)
        with db.atomic_batch() as batch:
            batch[b"x" * 32] = b"code"
        with Kesque.open(store_dir, readonly=True) as reader:
            assert reader.topic("evmcode").get(b"x" * 32) == b"code"


def test_trie_round_trip_through_the_store(store_dir: Path) -> None:
    items = {keccak(b"%d" % i): b"value %d" % i * (1 + i % 5) for i in range(300)}
    with Kesque.open(store_dir) as kq:
        trie = HexaryTrie(KesqueHashStore(kq, "storage"))
        for key, value in items.items():
            trie[key] = value
        root = trie.root_hash
        kq.commit()
    with Kesque.open(store_dir, readonly=True) as reader:
        readback = HexaryTrie(KesqueHashStore(reader, "storage"), root)
        assert all(readback[key] == value for key, value in items.items())


def test_py_evm_account_state(store_dir: Path) -> None:
    addresses = [keccak(b"%d" % i)[:20] for i in range(50)]
    with Kesque.open(store_dir) as kq:
        accounts = AccountDB(KesqueHashStore(kq, "account"))
        for i, address in enumerate(addresses):
            accounts.set_balance(address, 10**18 + i)
            accounts.set_storage(address, 1, i + 7)
        accounts.set_code(addresses[0], b"\x60\x00\x60\x00")
        accounts.persist()
        root = accounts.state_root
        kq.commit()
    with Kesque.open(store_dir, readonly=True) as reader:
        state = AccountDB(KesqueHashStore(reader, "account"), root)
        assert [state.get_balance(a) for a in addresses] == [10**18 + i for i in range(50)]
        assert state.get_storage(addresses[3], 1) == 10
        assert state.get_code(addresses[0]) == b"\x60\x00\x60\x00"
