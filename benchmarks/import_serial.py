"""Serial import speed: khipu's importer against plain py-evm `Chain.import_block`.

Both run in this process on the same chain file and the same libraries (py-evm, pysha3 keccak,
coincurve), each on a fresh datadir: the baseline on a LevelDB-only store (py-evm's schema, as
py-evm users run it), khipu on its own store (Kesque + LevelDB indexes). The ratio is the whole
import path: validation, execution and storage.

    python -m benchmarks.import_serial [--chain NAME=GENESIS:CHAIN ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from eth._utils.rlp import validate_imported_block_unchanged
from eth.abc import BlockAPI

from khipu.chain.block_files import iter_rlp_blocks
from khipu.chain.chain import KhipuChain, open_chain
from khipu.chain.config import Genesis
from khipu.chain.importer import BlockImporter, decode_block
from khipu.chain.rules import ChainRules
from khipu.storage.chain_store import ChainStore
from khipu.storage.leveldb_chain_store import LevelDBChainStore


@dataclass(frozen=True)
class Rate:
    """Throughput of one import of one chain."""

    blocks: int
    txs: int
    gas: int
    seconds: float

    def row(self) -> str:
        s = self.seconds
        return (
            f"{self.blocks / s:8.1f} blk/s {self.txs / s:9.1f} tx/s "
            f"{self.gas / s / 1e6:7.2f} Mgas/s ({s:.1f}s)"
        )


def _timed_import(
    genesis_path: Path,
    chain_path: Path,
    import_one: Callable[[KhipuChain, BlockAPI], None],
    store_class: type[ChainStore] | type[LevelDBChainStore],
) -> Rate:
    document = json.loads(genesis_path.read_text())
    genesis = Genesis.from_json(document)
    rules = ChainRules(genesis.config)
    blocks = [decode_block(raw, rules) for raw in iter_rlp_blocks(chain_path)]
    with tempfile.TemporaryDirectory() as datadir:
        store = store_class.open(Path(datadir), genesis, document)
        chain = open_chain(rules, store.db)
        started = time.perf_counter()
        for block in blocks:
            import_one(chain, block)
        seconds = time.perf_counter() - started
        store.close()
    txs = sum(len(block.transactions) for block in blocks)
    gas = sum(block.header.gas_used for block in blocks)
    return Rate(len(blocks), txs, gas, seconds)


ROUNDS = 2  # alternating rounds after a discarded warm-up; each side reports its best


def measure(genesis_path: Path, chain_path: Path) -> tuple[Rate, Rate]:
    """(py-evm baseline, khipu) best rates for one chain.

    The first import in a process is slower whichever importer runs it (module and cache
    warm-up), so one discarded warm-up comes first, then the two alternate for ROUNDS rounds.
    """

    def py_evm(chain: KhipuChain, block: BlockAPI) -> None:
        # py-evm's Chain.import_block step by step; only the VM is chosen from the header,
        # since py-evm alone picks it by number and cannot follow timestamp forks.
        parent = chain.get_block_header_by_hash(block.header.parent_hash)
        vm_class = chain.get_vm_class(block.header)
        base = vm_class.create_header_from_parent(parent, timestamp=block.header.timestamp)
        vm = chain.get_vm(base.copy(gas_used=block.header.gas_used))
        imported = vm.import_block(block).block
        validate_imported_block_unchanged(imported, block)
        chain.persist_block(imported)

    def khipu(chain: KhipuChain, block: BlockAPI) -> None:
        BlockImporter(chain, check_seal=False).import_block(block)

    _timed_import(genesis_path, chain_path, khipu, ChainStore)
    baseline: list[Rate] = []
    ours: list[Rate] = []
    for _round in range(ROUNDS):
        baseline.append(_timed_import(genesis_path, chain_path, py_evm, LevelDBChainStore))
        ours.append(_timed_import(genesis_path, chain_path, khipu, ChainStore))

    def best(rates: list[Rate]) -> Rate:
        return min(rates, key=lambda rate: rate.seconds)

    return best(baseline), best(ours)


def default_chains() -> dict[str, tuple[Path, Path]]:
    """ethtest from the shared test data, and a generated erc20 chain."""
    from tests.conftest import testdata_root

    chains: dict[str, tuple[Path, Path]] = {}
    ethtest = testdata_root() / "ethtest"
    if ethtest.is_dir():
        chains["ethtest"] = (ethtest / "genesis.json", ethtest / "chain.rlp")
    else:
        print(f"skipping ethtest: {ethtest} not found (set KHIPU_TESTDATA)", file=sys.stderr)
    from khipu.devnet.generate import generate_chain

    folder = Path(tempfile.mkdtemp(prefix="khipu-bench-erc20-"))
    generated = generate_chain(folder, 20, 100, "erc20", 1)
    chains["erc20 (generated 20x100)"] = (generated.genesis_path, generated.chain_path)
    return chains


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chain", action="append", default=[], metavar="NAME=GENESIS:CHAIN")
    args = parser.parse_args(argv)
    chains = default_chains()
    for spec in args.chain:
        name, paths = spec.split("=", 1)
        genesis, chain = paths.split(":", 1)
        chains[name] = (Path(genesis), Path(chain))
    print(
        "serial import: khipu importer vs py-evm Chain.import_block steps "
        "(py-evm on LevelDB, khipu on its Kesque store; "
        f"best of {ROUNDS} alternating rounds after a warm-up)"
    )
    for name, (genesis_path, chain_path) in chains.items():
        baseline, khipu = measure(genesis_path, chain_path)
        print(f"  {name}")
        print(f"    py-evm  {baseline.row()}")
        print(f"    khipu   {khipu.row()}")
        print(f"    ratio   {baseline.seconds / khipu.seconds:.2f}x (khipu speed / py-evm speed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
