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
    parser.add_argument("--log.format", dest="log_format", choices=LOG_FORMATS)
    parser.add_argument("--log.level", dest="log_level")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from khipu.chain.config import GenesisError
    from khipu.config import select_chain
    from khipu.devnet.generate import DEV_CHAIN
    from khipu.logs import configure_logging
    from khipu.node import run_node
    from khipu.storage.chain_store import GenesisMismatch
    from khipu.storage.leveldb import StoreLocked

    try:
        selection = select_chain(args)
    except GenesisError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    configure_logging(args.log_format or "logfmt", args.log_level or "info")
    dev = DEV_CHAIN if selection.name == "dev" else None
    try:
        return run_node(selection, dev, selection.datadir)
    except (GenesisMismatch, StoreLocked) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
