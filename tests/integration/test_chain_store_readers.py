"""Read-only views of the chain store in other processes while `khipu import` writes it.

The reader (this module run as `python -m tests.integration.test_chain_store_readers DATADIR
LAST GENESIS`) opens `ChainStore.open_readonly`, follows the head and, at every head it sees,
reads the whole state of the genesis accounts, the header chain back to the parent and the
block's body: it must never meet a missing trie node or a half-written block.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.chain_helpers import read_blocks
from tests.conftest import require_testdata


@pytest.fixture(scope="module")
def suite() -> Path:
    return require_testdata("rpc-compat-prague")


def test_readers_in_other_processes_see_only_complete_blocks(suite: Path, tmp_path: Path) -> None:
    datadir = tmp_path / "data"
    last = len(read_blocks(suite / "chain.rlp"))
    writer = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "khipu.cli",
            "import",
            "--datadir",
            str(datadir),
            "--genesis",
            str(suite / "genesis.json"),
            "--no-seal-check",
            "--json",
            "--serial",
            str(suite / "chain.rlp"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    reader_command = [
        sys.executable, "-m", "tests.integration.test_chain_store_readers",
        str(datadir), str(last), str(suite / "genesis.json"),
    ]  # fmt: skip
    readers = [
        subprocess.Popen(reader_command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    written, writer_err = writer.communicate(timeout=300)
    assert writer.returncode == 0, writer_err
    final = json.loads(written.strip().splitlines()[-1])["head"]
    for reader in readers:
        out, err = reader.communicate(timeout=120)
        assert reader.returncode == 0, err
        seen = json.loads(out.strip().splitlines()[-1])
        heads = seen["heads"]
        assert heads == sorted(set(heads)) and heads[-1] == last
        assert seen["last_hash"] == final["hash"]
        assert seen["last_state_root"] == final["stateRoot"]


def follow(datadir: Path, last: int, genesis_path: Path) -> dict[str, object]:
    """Follow the writer until block `last`; check every head seen. Raises on any problem."""
    import rlp
    from eth.db.account import AccountDB

    from khipu.storage.chain_store import ChainStore, GenesisMismatch
    from khipu.storage.kesque import StoreMissing

    alloc = json.loads(genesis_path.read_text())["alloc"]
    addresses = [bytes.fromhex(key.removeprefix("0x")) for key in alloc]
    deadline = time.monotonic() + 240
    store = None
    while store is None:
        try:
            store = ChainStore.open_readonly(datadir)
        except (StoreMissing, GenesisMismatch):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    heads: list[int] = []
    try:
        while True:
            head = store.head()
            if not heads or head.block_number != heads[-1]:
                heads.append(head.block_number)
                state = AccountDB(store.db, head.state_root)
                for address in addresses:
                    state.get_balance(address)
                    state.get_code(address)
                if head.block_number > 0:
                    parent = store.chaindb.get_block_header_by_hash(head.parent_hash)
                    assert parent.block_number == head.block_number - 1
                body = store.kesque.number_topic("body").get_at(head.block_number)
                receipts = store.kesque.number_topic("receipts").get_at(head.block_number)
                assert body is not None and receipts is not None, head.block_number
                assert len(rlp.decode(body)[0]) == len(rlp.decode(receipts))
            if head.block_number >= last:
                return {
                    "heads": heads,
                    "last_hash": "0x" + head.hash.hex(),
                    "last_state_root": "0x" + head.state_root.hex(),
                }
            if time.monotonic() > deadline:
                raise TimeoutError(f"the head stayed at {head.block_number}")
            time.sleep(0.01)
    finally:
        store.close()


if __name__ == "__main__":
    result = follow(Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]))
    print(json.dumps(result))
