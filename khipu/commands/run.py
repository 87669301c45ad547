"""`khipu run`: run the node."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from khipu.config import add_chain_arguments
from khipu.logs import LOG_FORMATS


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run the node",
        description="Open the datadir, bring the chain up to date and serve until Ctrl-C. "
        "On the dev network the node generates and imports a deterministic dev chain on "
        "first start.",
    )
    add_chain_arguments(parser)
    parser.add_argument("--log.format", dest="log_format", choices=LOG_FORMATS, default="logfmt")
    parser.add_argument("--log.level", dest="log_level", default="info")
    parser.add_argument("--dev.blocks", dest="dev_blocks", type=int, default=64)
    parser.add_argument("--dev.txs", dest="dev_txs", type=int, default=50)
    parser.add_argument("--dev.profile", dest="dev_profile", default="mixed")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from khipu.chain.config import GenesisError
    from khipu.config import select_chain
    from khipu.logs import configure_logging
    from khipu.node import DevChainSpec, run_node
    from khipu.storage.chain_store import GenesisMismatch
    from khipu.storage.leveldb import StoreLocked

    configure_logging(args.log_format, args.log_level)
    try:
        selection = select_chain(args)
    except GenesisError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    dev = None
    if selection.name == "dev":
        dev = DevChainSpec(args.dev_blocks, args.dev_txs, args.dev_profile)
    try:
        return run_node(selection, dev, selection.datadir)
    except (GenesisMismatch, StoreLocked) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
