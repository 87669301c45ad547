"""Import and state reads on the node's store (Kesque + LevelDB) vs the former LevelDB-only one.

Each chain is imported by khipu's importer into a fresh datadir of each store, then the store
is reopened and accounts are looked up at random at the head state (a fresh py-evm AccountDB
per lookup, so every lookup walks the trie through the store).

    python -m benchmarks.import_storage [--blocks 20] [--txs 100] [--lookups 5000]

Stores: `leveldb` (one LevelDB, as before), `kesque` (the node's store, fsync per block),
`kesque-nosync` (the same without fsync: what a killed process keeps, not a power cut).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth.db.account import AccountDB
from eth_typing import Address

from khipu.chain.block_files import iter_rlp_blocks
from khipu.chain.chain import open_chain
from khipu.chain.config import Genesis
from khipu.chain.importer import BlockImporter, decode_block
from khipu.chain.rules import ChainRules
from khipu.storage.chain_store import ChainStore
from khipu.storage.kesque import KesqueConfig
from khipu.storage.leveldb_chain_store import LevelDBChainStore

StoreOpener = Callable[[Path, Genesis, dict[str, Any]], Any]

STORES: dict[str, StoreOpener] = {
    "leveldb": LevelDBChainStore.open,
    "kesque": ChainStore.open,
    "kesque-nosync": lambda datadir, genesis, document: ChainStore.open(
        datadir, genesis, document, config=KesqueConfig(fsync=False)
    ),
}


@dataclass(frozen=True)
class Measurement:
    """Wall-clock and CPU seconds (this process) of an import and of the lookups after it."""

    blocks: int
    import_seconds: float
    import_cpu: float
    lookups: int
    lookup_seconds: float
    lookup_cpu: float

    def row(self) -> str:
        return (
            f"import {self.blocks / self.import_seconds:6.1f} blk/s "
            f"({self.import_seconds:5.1f}s wall, {self.import_cpu:5.1f}s cpu)   "
            f"lookups {self.lookups / self.lookup_seconds:6.0f}/s "
            f"({self.lookup_seconds:4.1f}s wall, {self.lookup_cpu:4.1f}s cpu)"
        )


def measure(
    open_store: StoreOpener, genesis_path: Path, chain_path: Path, lookups: int
) -> Measurement:
    """Import `chain_path` into a fresh datadir, then time `lookups` random account reads."""
    document = json.loads(genesis_path.read_text())
    genesis = Genesis.from_json(document)
    rules = ChainRules(genesis.config)
    blocks = [decode_block(raw, rules) for raw in iter_rlp_blocks(chain_path)]
    addresses = _addresses(document, blocks)
    with tempfile.TemporaryDirectory() as folder:
        datadir = Path(folder)
        store = open_store(datadir, genesis, document)
        importer = BlockImporter(open_chain(rules, store.db), check_seal=False)
        started, started_cpu = time.perf_counter(), time.process_time()
        for block in blocks:
            importer.import_block(block)
        store.db.sync()
        import_seconds = time.perf_counter() - started
        import_cpu = time.process_time() - started_cpu
        store.close()

        store = open_store(datadir, genesis, document)
        state_root = store.head().state_root
        rng = random.Random(1)
        picks = [rng.choice(addresses) for _ in range(lookups)]
        started, started_cpu = time.perf_counter(), time.process_time()
        for address in picks:
            AccountDB(store.db, state_root).get_balance(address)
        lookup_seconds = time.perf_counter() - started
        lookup_cpu = time.process_time() - started_cpu
        store.close()
    return Measurement(len(blocks), import_seconds, import_cpu, lookups, lookup_seconds, lookup_cpu)


def _addresses(document: dict[str, Any], blocks: list[Any]) -> list[Address]:
    found = {Address(bytes.fromhex(key.removeprefix("0x"))) for key in document["alloc"]}
    for block in blocks:
        found.add(Address(block.header.coinbase))
        for transaction in block.transactions:
            found.add(Address(transaction.sender))
            if transaction.to:
                found.add(Address(transaction.to))
    return sorted(found)


def chains(blocks: int, txs: int) -> dict[str, tuple[Path, Path]]:
    """ethtest from the shared test data (if present) and a generated erc20 chain."""
    from khipu.devnet.generate import generate_chain
    from tests.conftest import testdata_root

    found: dict[str, tuple[Path, Path]] = {}
    ethtest = testdata_root() / "ethtest"
    if ethtest.is_dir():
        found["ethtest (600 blocks)"] = (ethtest / "genesis.json", ethtest / "chain.rlp")
    else:
        print(f"skipping ethtest: {ethtest} not found (set KHIPU_TESTDATA)", file=sys.stderr)
    folder = Path(tempfile.mkdtemp(prefix="khipu-bench-erc20-"))
    generated = generate_chain(folder, blocks, txs, "erc20", 1)
    found[f"erc20 (generated {blocks}x{txs})"] = (generated.genesis_path, generated.chain_path)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--blocks", type=int, default=20)
    parser.add_argument("--txs", type=int, default=100)
    parser.add_argument("--lookups", type=int, default=5000)
    parser.add_argument(
        "--stores", default="leveldb,kesque", help=f"comma-separated, of: {', '.join(STORES)}"
    )
    args = parser.parse_args(argv)
    names = args.stores.split(",")
    print("import and random account reads: Kesque + LevelDB store vs LevelDB-only store")
    for chain_name, (genesis_path, chain_path) in chains(args.blocks, args.txs).items():
        print(f"  {chain_name}")
        results = {}
        for name in names:
            results[name] = measure(STORES[name], genesis_path, chain_path, args.lookups)
            print(f"    {name:14} {results[name].row()}", flush=True)
        if "leveldb" in results:
            base = results["leveldb"]
            for name, result in results.items():
                if name != "leveldb":
                    print(
                        f"    {name} / leveldb speed: import "
                        f"{base.import_seconds / result.import_seconds:.2f}x wall "
                        f"{base.import_cpu / result.import_cpu:.2f}x cpu, lookups "
                        f"{base.lookup_seconds / result.lookup_seconds:.2f}x wall "
                        f"{base.lookup_cpu / result.lookup_cpu:.2f}x cpu"
                    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
