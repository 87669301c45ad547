"""`khipu import`: import and verify geth-style .rlp exports and .era1 history files."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from khipu.config import add_chain_arguments


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "import",
        help="import and fully verify blocks from .rlp or .era1 files",
        description="Validate, execute and store every block of the files, in order. "
        "Running it again resumes after the last stored block.",
    )
    add_chain_arguments(parser)
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE")
    parser.add_argument("--json", action="store_true", help="end stdout with a JSON summary")
    parser.add_argument(
        "--no-seal-check",
        action="store_true",
        help="skip Ethash seal checks (chains made with fake seals)",
    )
    add_execution_arguments(parser)
    parser.set_defaults(handler=run_import)


def add_execution_arguments(parser: argparse.ArgumentParser) -> None:
    """--execution.parallel and --execution.workers (shared by `khipu import` and `khipu run`)."""
    group = parser.add_argument_group("execution")
    group.add_argument(
        "--execution.parallel",
        dest="execution_parallel",
        action="store_true",
        help="execute each block's transactions in worker processes (same results as serial)",
    )
    group.add_argument(
        "--execution.workers",
        dest="execution_workers",
        type=_positive,
        default=os.cpu_count() or 1,
        metavar="N",
        help="worker processes for --execution.parallel (default: the CPU count)",
    )


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def run_import(args: argparse.Namespace) -> int:
    """Import the files; exit 0 when all imported, 1 on an invalid block, 2 on bad input."""
    from khipu.chain.block_files import MalformedBlockFile
    from khipu.chain.chain import KhipuChain
    from khipu.chain.config import GenesisError
    from khipu.chain.import_job import UnsupportedBlockFile, import_files
    from khipu.chain.importer import InvalidBlock, MalformedBlock
    from khipu.chain.rules import ChainRules
    from khipu.config import select_chain
    from khipu.execution.block_executor import ParallelBlockExecutor
    from khipu.storage.chain_store import ChainStore, GenesisMismatch
    from khipu.storage.leveldb import StoreLocked

    for path in args.files:
        if not path.is_file():
            print(f"error: {path}: no such file", file=sys.stderr)
            return 2
    try:
        selection = select_chain(args)
        store = ChainStore.open(selection.datadir, selection.genesis, selection.genesis_json)
    except (GenesisError, GenesisMismatch, StoreLocked) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rules = ChainRules(selection.genesis.config)
    print(
        f"importing into {selection.datadir} (network {selection.name}, "
        f"head #{store.head().block_number})",
        file=sys.stderr,
    )
    executors: list[ParallelBlockExecutor] = []

    def parallel_executor(chain: KhipuChain) -> ParallelBlockExecutor:
        executor = ParallelBlockExecutor(chain, selection.datadir, workers=args.execution_workers)
        executors.append(executor)
        return executor

    try:
        summary = import_files(
            store,
            rules,
            args.files,
            check_seal=not args.no_seal_check,
            executor=parallel_executor if args.execution_parallel else None,
        )
    except InvalidBlock as exc:
        print(f"error: {exc}", file=sys.stderr)
        print(f"stored head is #{store.head().block_number}", file=sys.stderr)
        return 1
    except (MalformedBlock, MalformedBlockFile, UnsupportedBlockFile, GenesisError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        for executor in executors:
            executor.close()
            print(f"parallel execution: {executor.summary()}", file=sys.stderr)
        store.close()
    head = summary.head
    print(
        f"imported {summary.blocks} blocks, {summary.txs} txs, {summary.gas} gas in "
        f"{summary.seconds:.1f}s; head #{head.block_number} 0x{head.hash.hex()}",
        file=sys.stderr,
    )
    if args.json:
        print(json.dumps(summary.as_json()))
    return 0
