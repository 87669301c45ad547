"""The `khipu` command line: one sub-command per job, each registered by the package that owns it.

Heavy imports (py-evm costs about a second) happen inside the handlers, so `khipu --help` is quick.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from khipu import __version__

# Each module exposes `register(subparsers)`, adding its parsers with a `handler` default.
COMMAND_MODULES: tuple[str, ...] = ("khipu.p2p.commands",)


def build_parser() -> argparse.ArgumentParser:
    """Return the parser for every sub-command."""
    parser = argparse.ArgumentParser(
        prog="khipu", description="A sync-only Ethereum archive node in Python."
    )
    parser.add_argument("--version", action="version", version=f"khipu {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return the process exit code."""
    args = build_parser().parse_args(argv)
    try:
        code: int = args.handler(args)
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
