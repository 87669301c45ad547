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
    dev: the genesis of the built-in dev chain (khipu.devnet.generate.DEV_CHAIN): deterministic
    prefunded accounts, token and pool contracts, Prague rules from block 0.
    """
    if network == "mainnet":
        raw = resources.files(__name__).joinpath("mainnet-genesis.json.gz").read_bytes()
        document: dict[str, Any] = json.loads(gzip.decompress(raw))
        return document
    if network == "dev":
        from khipu.devnet.generate import DEV_CHAIN, workload_genesis_json

        return workload_genesis_json(DEV_CHAIN.profile, DEV_CHAIN.txs_per_block, DEV_CHAIN.seed)
    raise GenesisError(f"unknown network {network!r}: choose one of {', '.join(NETWORKS)}")
