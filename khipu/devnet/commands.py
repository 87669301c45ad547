"""`khipu devnet generate`: write a deterministic dev chain (genesis.json and chain.rlp)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

PROFILE_NAMES = ("transfers", "erc20", "amm", "mixed")  # khipu.devnet.workload.PROFILES


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "devnet",
        help="dev chains: generate a deterministic chain of signed transactions",
        description="Tools for the dev network (chain id 1337, every fork through Prague at 0).",
    )
    commands = parser.add_subparsers(dest="devnet_command", metavar="COMMAND", required=True)
    generate = commands.add_parser(
        "generate",
        help="write DIR/genesis.json and DIR/chain.rlp",
        description="Build a valid post-merge chain of signed transactions. The same arguments "
        "always give byte-identical files; import them with "
        "`khipu import --genesis DIR/genesis.json --no-seal-check DIR/chain.rlp`.",
    )
    generate.add_argument("--out", type=Path, required=True, metavar="DIR")
    generate.add_argument("--blocks", type=_non_negative, default=100, metavar="N")
    generate.add_argument("--txs-per-block", type=_non_negative, default=100, metavar="M")
    generate.add_argument("--profile", choices=PROFILE_NAMES, default="mixed")
    generate.add_argument("--seed", type=int, default=0)
    generate.add_argument("--json", action="store_true", help="end stdout with a JSON summary")
    generate.set_defaults(handler=run_generate)


def run_generate(args: argparse.Namespace) -> int:
    """Generate the chain; exit 0 on success, 1 if a block could not be built, 2 on bad input."""
    # pysha3 hashes several times faster than pycryptodome, which eth-hash prefers otherwise.
    os.environ.setdefault("ETH_HASH_BACKEND", "pysha3")
    from khipu.devnet.builder import GenerationError
    from khipu.devnet.generate import generate_chain

    try:
        chain = generate_chain(args.out, args.blocks, args.txs_per_block, args.profile, args.seed)
    except GenerationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"generated {chain.blocks} blocks, {chain.txs} txs ({chain.failed_txs} reverting), "
        f"{chain.gas} gas: {chain.genesis_path} {chain.chain_path}",
        file=sys.stderr,
    )
    if args.json:
        print(json.dumps(chain.as_json()))
    return 0


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, not {value}")
    return value
