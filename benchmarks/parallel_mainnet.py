"""Serial against parallel execution on real mainnet blocks: the Nimbus persist-block witnesses.

Each of the 33 blocks of mainnet/nimbus-persist-block (blocks 97 .. 2,675,000: Frontier,
Homestead, the DAO fork, Tangerine Whistle, Spurious Dragon; read via $KHIPU_TESTDATA) is
imported once into a database holding only its witness (its parent state); then every block is
executed on that parent in each mode, interleaved block by block, `rounds` times, keeping each
block's best time: serial (py-evm's `import_block`), batched (in order on the merging VM), and
each worker count (0: speculated here, then merged). Blocks of one transaction go through
speculation too; blocks without transactions run serially in every mode.

The blocks are small (a few transactions, 0.02-2 Mgas), so the fixed cost of a block (handing
it to the workers, the merge's VM, per-transaction state roots before Byzantium) dominates:
the rows say what parallel execution costs on such blocks, not what it gains on full ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.parallel_execution import (
    MemoryChainSpeculator,
    ModeResult,
    _line,
    measure_block,
    new_results,
)
from khipu.execution.pool import PoolLimits, WorkerPool

SUITE = ("mainnet", "nimbus-persist-block")


def witness_paths() -> list[Path]:
    """The witness files in block order, or [] if the test data is absent."""
    from tests.conftest import testdata_root

    folder = testdata_root().joinpath(*SUITE)
    return sorted(folder.glob("block*.json"), key=lambda path: int(path.stem[len("block") :]))


def witness_chain(path: Path) -> tuple[Any, Any]:
    """(chain, block): the block of the witness at `path` imported once (serially) into a
    database holding its witness, so its parent state is there to execute it again.

    Raises WitnessError if the witness is incomplete, InvalidBlock if the block is rejected.
    """
    from khipu.chain.config import ChainConfig
    from khipu.chain.presets import genesis_json
    from khipu.chain.rules import ChainRules
    from khipu.execution.executor import execute_block_serial
    from tests.conformance.nimbus_witness import (
        import_witness_block,
        load_witness,
        rebuild_block,
    )
    from tests.conformance.test_nimbus_persist_block import UNREAD_CODE

    rules = ChainRules(ChainConfig.from_json(genesis_json("mainnet")["config"]))
    witness = load_witness(path)
    held: dict[str, Any] = {}

    def executor(chain: Any) -> Any:
        held["chain"] = chain
        return lambda block: execute_block_serial(chain, block)

    import_witness_block(witness, rules, UNREAD_CODE.get(witness.number, frozenset()), executor)
    return held["chain"], rebuild_block(witness, rules).block


def bench_mainnet_blocks(worker_counts: Sequence[int], rounds: int) -> list[str]:
    """Result lines (serial, batched, one per worker count) over all the witness blocks, or
    one line saying why there are none."""
    paths = witness_paths()
    if not paths:
        return ["mainnet    skipped: mainnet/nimbus-persist-block not found (set KHIPU_TESTDATA)"]
    loaded = [witness_chain(path) for path in paths]
    counts = list(worker_counts)
    results = new_results(counts, len(loaded))
    for position, (chain, block) in enumerate(loaded):
        pools: dict[int, Any] = {
            n: WorkerPool(MemoryChainSpeculator(chain), PoolLimits(workers=n)) if n else None
            for n in counts
        }
        try:
            for _round in range(rounds):
                measure_block(chain, block, pools, results, position)
        finally:
            for pool in pools.values():
                if pool is not None:
                    pool.close()
    blocks = [block for _chain, block in loaded]
    txs = sum(len(block.transactions) for block in blocks)
    gas = sum(block.header.gas_used for block in blocks)
    label = "mainnet"
    serial = sum(results["serial"].seconds)
    lines = [_line(label, "serial", len(blocks), txs, serial, serial, results["serial"], gas)]
    for mode in ["batched", *counts]:
        result: ModeResult = results[mode]
        name = mode if isinstance(mode, str) else f"{mode} worker{'s' if mode != 1 else ''}"
        seconds = sum(result.seconds)
        lines.append(_line(label, name, len(blocks), txs, seconds, serial, result, gas))
    return lines
