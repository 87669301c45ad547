"""Node configuration: which network, where its data lives, and command-line overrides.

A network comes from `--genesis FILE` (a geth-style genesis.json), `--network NAME` (a built-in
preset), or, when neither is given, from what the datadir was created with; a new datadir with
neither flag gets mainnet, as geth does.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from khipu.chain.config import Genesis, GenesisError
from khipu.chain.presets import NETWORKS, genesis_json

if TYPE_CHECKING:
    from khipu.storage.kesque import KesqueConfig

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
    ("storage", "cache_mib"): "storage_cache_mib",
    ("storage", "index_sync_mib"): "storage_index_sync_mib",
    ("storage", "index_background_entries"): "storage_index_background_entries",
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


def add_storage_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the Kesque settings of the node's store ([storage] in the config file)."""
    parser.add_argument(
        "--storage.cache-mib",
        dest="storage_cache_mib",
        type=parse_topic_sizes,
        metavar="TOPIC=MIB[,...]",
        help="LRU value cache per Kesque topic, in MiB (account, storage, evmcode, header, "
        "body, receipts, td; default 64, 64, 16, 8, 8, 8, 1; topics not named keep theirs)",
    )
    parser.add_argument(
        "--storage.index-sync-mib",
        dest="storage_index_sync_mib",
        type=int,
        metavar="MIB",
        help="fsync a hash index every MIB of records (default 256; a crash re-reads at most "
        "this much at the next open)",
    )
    parser.add_argument(
        "--storage.index-background-entries",
        dest="storage_index_background_entries",
        type=int,
        metavar="N",
        help="a hash index of at least N entries grows in a child process (default 200000)",
    )


def parse_topic_sizes(text: str) -> dict[str, int]:
    """`account=64,storage=128` -> {"account": 64, "storage": 128}. Raises
    argparse.ArgumentTypeError for a malformed item (names are checked by storage_config)."""
    sizes: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        topic, equals, size = item.partition("=")
        if not equals or not size.strip().isdigit():
            raise argparse.ArgumentTypeError(f"expected TOPIC=MIB, not {item!r}")
        sizes[topic.strip()] = int(size)
    return sizes


def storage_config(args: argparse.Namespace) -> KesqueConfig:
    """The store's KesqueConfig from the storage settings in `args` (the defaults for those not
    given). Raises ConfigError for an unknown topic or a value out of range."""
    from khipu.storage.kesque import KesqueConfig

    default = KesqueConfig()
    changes: dict[str, Any] = {}
    sizes = getattr(args, "storage_cache_mib", None)
    if sizes is not None:
        if not isinstance(sizes, dict):
            raise ConfigError(f"storage.cache_mib must be a table of topic = MiB, not {sizes!r}")
        topics = (*default.hash_topics, *default.number_topics)
        cache_bytes = dict(default.cache_bytes)
        for topic, size in sizes.items():
            if topic not in topics:
                raise ConfigError(f"storage.cache_mib: no topic {topic!r} (topics: {topics})")
            cache_bytes[topic] = whole_number(f"storage.cache_mib.{topic}", size, 0, "MiB ") << 20
        changes["cache_bytes"] = cache_bytes
    sync_mib = getattr(args, "storage_index_sync_mib", None)
    if sync_mib is not None:
        changes["index_sync_bytes"] = whole_number("storage.index_sync_mib", sync_mib, 1) << 20
    entries = getattr(args, "storage_index_background_entries", None)
    if entries is not None:
        name = "storage.index_background_entries"
        changes["hash_index_background_entries"] = whole_number(name, entries, 0)
    return dataclasses.replace(default, **changes)


def whole_number(name: str, value: object, minimum: int, unit: str = "") -> int:
    """`value` if it is an integer of at least `minimum`; raises ConfigError naming `name`."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"{name} must be {unit}>= {minimum}, not {value!r}")
    return value


@dataclass(frozen=True)
class ChainSelection:
    """The chain a command works on, the datadir holding it and its store's settings."""

    name: str
    datadir: Path
    genesis: Genesis
    genesis_json: dict[str, Any]
    storage: KesqueConfig | None = None
    """Kesque's settings for the writer (None: the defaults)."""


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
    storage = storage_config(args)
    return ChainSelection(name, Path(datadir), Genesis.from_json(document), document, storage)
