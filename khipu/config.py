"""Node configuration: which network, where its data lives, and command-line overrides.

A network comes from `--genesis FILE` (a geth-style genesis.json), `--network NAME` (a built-in
preset), or, when neither is given, from what the datadir was created with; a new datadir with
neither flag gets mainnet, as geth does.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from khipu.chain.config import Genesis, GenesisError
from khipu.chain.presets import NETWORKS, genesis_json

DEFAULT_NETWORK = "mainnet"


def default_datadir(network: str) -> Path:
    """~/.khipu/NETWORK, or $KHIPU_DATADIR when set."""
    configured = os.environ.get("KHIPU_DATADIR")
    if configured:
        return Path(configured)
    return Path.home() / ".khipu" / network


def add_chain_arguments(parser: argparse.ArgumentParser) -> None:
    """Add --datadir, --network and --genesis to a sub-command's parser."""
    parser.add_argument("--datadir", type=Path, help="data directory (default ~/.khipu/NETWORK)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--network", choices=NETWORKS, help="a built-in network")
    group.add_argument("--genesis", type=Path, help="a geth-style genesis.json")


@dataclass(frozen=True)
class ChainSelection:
    """The chain a command works on and the datadir holding it."""

    name: str
    datadir: Path
    genesis: Genesis
    genesis_json: dict[str, Any]


def select_chain(args: argparse.Namespace) -> ChainSelection:
    """Resolve --datadir/--network/--genesis. Raises GenesisError with a clear message."""
    from khipu.storage.chain_store import ChainStore

    if args.genesis is not None:
        try:
            document = json.loads(Path(args.genesis).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise GenesisError(f"cannot read genesis file {args.genesis}: {exc}") from exc
        name = Path(args.genesis).stem
        datadir = args.datadir or default_datadir(name)
    elif args.network is not None:
        name = args.network
        document = genesis_json(name)
        datadir = args.datadir or default_datadir(name)
    else:
        datadir = args.datadir or default_datadir(DEFAULT_NETWORK)
        stored = ChainStore.stored_genesis_json(datadir)
        name = datadir.name if stored is not None else DEFAULT_NETWORK
        document = stored if stored is not None else genesis_json(DEFAULT_NETWORK)
    return ChainSelection(name, Path(datadir), Genesis.from_json(document), document)
