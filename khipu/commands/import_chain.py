"""`khipu import`: import and verify geth-style .rlp exports and .era1 history files."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from khipu.config import add_chain_arguments, add_storage_arguments


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "import",
        help="import and fully verify blocks from .rlp or .era1 files",
        description="Validate, execute and store every block of the files, in order. "
        "Running it again resumes after the last stored block.",
    )
    add_chain_arguments(parser)
    add_storage_arguments(parser)
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
    """--workers, --serial and --no-adaptive (shared by `khipu import` and `khipu run`)."""
    group = parser.add_argument_group("execution")
    group.add_argument(
        "--workers",
        type=_positive,
        default=None,
        metavar="N",
        help="worker processes that run each block's transactions in parallel "
        "(default: the CPU count; config execution.workers)",
    )
    group.add_argument(
        "--serial",
        action="store_const",
        const=True,
        default=None,
        help="execute every block serially in this process, with no workers "
        "(config execution.serial)",
    )
    group.add_argument(
        "--no-adaptive",
        dest="always_parallel",
        action="store_true",
        help="run every block that can run in parallel in parallel, even where the adaptive "
        "choice would run it serially (tests and benchmarks)",
    )


def execution_workers(args: argparse.Namespace) -> int | None:
    """The worker count the arguments (and config file) ask for, or None for serial execution.

    Raises ValueError for a config file's workers that is not a positive integer or serial that
    is not true or false.
    """
    serial = getattr(args, "serial", None)
    if serial is not None and not isinstance(serial, bool):
        raise ValueError(f"execution.serial must be true or false, not {serial!r}")
    if serial:
        return None
    workers = getattr(args, "workers", None)
    if workers is None:
        return os.cpu_count() or 1
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"execution.workers must be a positive integer, not {workers!r}")
    return workers


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
        workers = execution_workers(args)
        store = ChainStore.open(
            selection.datadir, selection.genesis, selection.genesis_json, config=selection.storage
        )
    except (GenesisError, GenesisMismatch, StoreLocked, ValueError) as exc:
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
        assert workers is not None
        executor = ParallelBlockExecutor.with_own_pool(
            chain, selection.datadir, workers=workers, always_parallel=args.always_parallel
        )
        executors.append(executor)
        return executor

    block_lines = BlockLines()
    try:
        summary = import_files(
            store,
            rules,
            args.files,
            check_seal=not args.no_seal_check,
            executor=None if workers is None else parallel_executor,
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
        block_lines.close()
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


class BlockLines:
    """Sends the executor's per-block lines ('block executed ...', logfmt) to stderr while
    `khipu import` runs, without touching the process's other logging."""

    def __init__(self) -> None:
        import logging

        from khipu.logs import LogfmtFormatter

        self.logger = logging.getLogger("khipu.execution")
        self.handler = logging.StreamHandler(sys.stderr)
        self.handler.setFormatter(LogfmtFormatter())
        self.level, self.propagate = self.logger.level, self.logger.propagate
        self.logger.addHandler(self.handler)
        self.logger.setLevel(logging.INFO)
        self.logger.propagate = False

    def close(self) -> None:
        """Put the logger back as it was."""
        self.logger.removeHandler(self.handler)
        self.logger.setLevel(self.level)
        self.logger.propagate = self.propagate
