"""Built-in networks: their genesis.json documents, shipped with the package."""

from __future__ import annotations

import gzip
import json
from importlib import resources
from typing import Any

from khipu.chain.config import GenesisError

NETWORKS = ("mainnet", "dev")


def genesis_json(network: str) -> dict[str, Any]:
    """The genesis.json document of a built-in network. Raises GenesisError for unknown names.

    mainnet: the allocation is the one of the `ethereum-execution` package's bundled
    mainnet.json (execution-specs, CC0), its config geth's mainnet schedule through BPO2.
    dev: generated from the deterministic dev accounts (see khipu.devnet.genesis).
    """
    if network == "mainnet":
        raw = resources.files(__name__).joinpath("mainnet-genesis.json.gz").read_bytes()
        document: dict[str, Any] = json.loads(gzip.decompress(raw))
        return document
    if network == "dev":
        from khipu.devnet.genesis import dev_genesis_json

        return dev_genesis_json()
    raise GenesisError(f"unknown network {network!r}: choose one of {', '.join(NETWORKS)}")
