"""Node configuration: which network, where its data lives, and command-line overrides.

A network comes from `--genesis FILE` (a geth-style genesis.json), `--network NAME` (a built-in
preset), or, when neither is given, from what the datadir was created with; a new datadir with
neither flag gets mainnet, as geth does.
"""

from __future__ import annotations

import argparse
import json
import os
import tomllib
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


class ConfigError(GenesisError):
    """A node configuration file is unreadable or has a bad value; the message says which."""


# (TOML section, key) -> argparse destination, for the settings a config file may hold.
CONFIG_KEYS: dict[tuple[str, str], str] = {
    ("node", "network"): "network",
    ("node", "genesis"): "genesis",
    ("node", "datadir"): "datadir",
    ("log", "format"): "log_format",
    ("log", "level"): "log_level",
    ("execution", "workers"): "workers",
    ("execution", "serial"): "serial",
    ("p2p", "port"): "port",
    ("p2p", "addr"): "p2p_addr",
    ("p2p", "maxpeers"): "maxpeers",
    ("p2p", "nodiscover"): "nodiscover",
    ("p2p", "nosync"): "nosync",
    ("p2p", "bootnodes"): "bootnodes",
    ("p2p", "staticnodes"): "staticnodes",
    ("p2p", "badpeer_expiry"): "p2p_badpeer_expiry",
}


def apply_config_file(args: argparse.Namespace) -> None:
    """Fill the settings not given on the command line from `--config FILE`, if given.

    Raises ConfigError for an unreadable file, an unknown key or a network and genesis both set.
    """
    path = getattr(args, "config", None)
    if path is None:
        return
    try:
        document = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from exc
    for section, values in document.items():
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: [{section}] must be a table")
        for key, value in values.items():
            destination = CONFIG_KEYS.get((section, key))
            if destination is None:
                raise ConfigError(f"{path}: unknown setting {section}.{key}")
            if getattr(args, destination, None) is None:
                if destination in ("genesis", "datadir"):
                    value = Path(os.path.expanduser(str(value)))
                setattr(args, destination, value)
    if args.network is not None and args.genesis is not None:
        raise ConfigError(f"{path}: set node.network or node.genesis, not both")


def add_chain_arguments(parser: argparse.ArgumentParser) -> None:
    """Add --config, --datadir, --network and --genesis to a sub-command's parser."""
    parser.add_argument("--config", type=Path, help="a node configuration file (TOML)")
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

    apply_config_file(args)
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
