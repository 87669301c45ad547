"""`khipu devnet generate`: write a dev chain's genesis.json and chain.rlp.

The output is a function of the arguments alone: timestamps are fixed (block i at 12 * i after
the genesis at time 0), keys are derived from account indexes and every choice comes from one
`random.Random(seed)`. The same arguments give byte-identical files.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import rlp
from eth.abc import ReceiptAPI

from khipu.chain.progress import ImportProgress
from khipu.devnet.builder import DevChainBuilder, GenerationError, receipt_succeeded
from khipu.devnet.genesis import dev_genesis_json
from khipu.devnet.workload import Books, PlannedTx, Workload

GENESIS_FILE = "genesis.json"
CHAIN_FILE = "chain.rlp"
MANIFEST_FILE = "devnet.json"
# Raised whenever the same arguments would give other bytes, so stale dev chains are rebuilt.
GENERATOR_VERSION = 1


@dataclass(frozen=True)
class GeneratedChain:
    """What `generate_chain` wrote, and the state its books predict at the head."""

    genesis_path: Path
    chain_path: Path
    blocks: int
    txs: int
    failed_txs: int  # transactions that revert, on purpose
    gas: int
    head_hash: bytes
    head_state_root: bytes
    books: Books

    def as_json(self) -> dict[str, object]:
        """The `--json` summary of `khipu devnet generate`."""
        return {
            "genesis": str(self.genesis_path),
            "chain": str(self.chain_path),
            **self._counts(),
        }

    def _counts(self) -> dict[str, object]:
        return {
            "blocks": self.blocks,
            "txs": self.txs,
            "failedTxs": self.failed_txs,
            "gas": self.gas,
            "head": {
                "hash": "0x" + self.head_hash.hex(),
                "stateRoot": "0x" + self.head_state_root.hex(),
            },
        }


@dataclass(frozen=True)
class DevChainSpec:
    """The shape of a generated dev chain."""

    blocks: int = 32
    txs_per_block: int = 40
    profile: str = "mixed"
    seed: int = 1


# The chain of the built-in `dev` network: `khipu run --network dev` generates it on first start.
DEV_CHAIN = DevChainSpec()


def workload_genesis_json(profile: str, txs_per_block: int, seed: int) -> dict[str, Any]:
    """The genesis.json of the dev chain that `generate_chain` writes for these arguments."""
    workload = Workload(profile, txs_per_block, seed)
    return dev_genesis_json(
        account_count=len(workload.accounts), extra_alloc=workload.genesis_alloc()
    )


def generate_chain(
    out_dir: Path | str,
    blocks: int,
    txs_per_block: int,
    profile: str,
    seed: int,
    *,
    progress: ImportProgress | None = None,
) -> GeneratedChain:
    """Write OUT_DIR/genesis.json and OUT_DIR/chain.rlp (blocks 1..`blocks`) of a dev chain.

    OUT_DIR/devnet.json, written last, records the arguments and the head (see `read_manifest`).
    Files appear complete or not at all (written beside, then renamed). Raises ValueError for an
    unknown profile or a negative count, and GenerationError if a block cannot be built as planned
    (too many transactions for the gas limit, or a receipt contradicting the workload's books).
    """
    if blocks < 0:
        raise ValueError(f"blocks must be >= 0, not {blocks}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    workload = Workload(profile, txs_per_block, seed)
    genesis_json = workload_genesis_json(profile, txs_per_block, seed)
    builder = DevChainBuilder(genesis_json)
    if progress is None:
        progress = ImportProgress(blocks, label="generate")
    genesis_path, chain_path = out / GENESIS_FILE, out / CHAIN_FILE
    (out / MANIFEST_FILE).unlink(missing_ok=True)  # until the new chain is complete
    _write_atomically(genesis_path, (json.dumps(genesis_json, indent=2) + "\n").encode())
    txs = failed = gas = 0
    partial = chain_path.with_name(chain_path.name + ".partial")
    try:
        with partial.open("wb") as chain_file:
            for _ in range(blocks):
                template = builder.next_header()
                planned = workload.plan_block()
                signed = [
                    builder.sign(template, tx, workload.accounts[tx.sender]) for tx in planned
                ]
                built = builder.build_block(template, signed, workload.plan_withdrawals())
                _check_outcomes(template.block_number, planned, built.receipts)
                failed += sum(1 for tx in planned if not tx.succeeds)
                txs += len(planned)
                gas += built.block.header.gas_used
                chain_file.write(rlp.encode(built.block))
                progress.advance(template.block_number, len(planned), built.block.header.gas_used)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, chain_path)
    head = builder.head
    chain = GeneratedChain(
        genesis_path, chain_path, blocks, txs, failed, gas, head.hash, head.state_root,
        workload.books,
    )  # fmt: skip
    arguments = {"blocks": blocks, "txsPerBlock": txs_per_block, "profile": profile, "seed": seed}
    manifest = {"generator": GENERATOR_VERSION, "arguments": arguments, **chain._counts()}
    _write_atomically(out / MANIFEST_FILE, (json.dumps(manifest, indent=2) + "\n").encode())
    return chain


def read_manifest(out_dir: Path | str) -> dict[str, Any] | None:
    """The manifest of the dev chain in `out_dir`, or None if there is none or it is unreadable.

    It holds "generator" (GENERATOR_VERSION), "arguments" (blocks, txsPerBlock, profile, seed),
    the counts and the head; a caller reuses the chain when both the version and the arguments
    match what it wants, and otherwise generates it again.
    """
    path = Path(out_dir) / MANIFEST_FILE
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict):
        return None
    if not (Path(out_dir) / GENESIS_FILE).is_file() or not (Path(out_dir) / CHAIN_FILE).is_file():
        return None
    return manifest


def _check_outcomes(
    number: int, planned: Sequence[PlannedTx], receipts: Sequence[ReceiptAPI]
) -> None:
    # The books are only right if every transaction did what the workload expected.
    for index, (tx, receipt) in enumerate(zip(planned, receipts, strict=True)):
        if receipt_succeeded(receipt) != tx.succeeds:
            outcome = "reverted" if tx.succeeds else "succeeded"
            raise GenerationError(number, f"transaction {index} {outcome} unexpectedly")


def _write_atomically(path: Path, content: bytes) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(content)
    os.replace(partial, path)


__all__ = [
    "GeneratedChain", "GenerationError", "generate_chain", "read_manifest",
]  # fmt: skip
