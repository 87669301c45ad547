"""Fork points from a geth-style genesis.json `config` section, as go-ethereum gathers them for
fork ids: every `...Block` field is a block fork and every `...Time` field a time fork.

Stop-gap until khipu.chain.genesis provides the chain configuration; then this should go.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from khipu.chain.forkid import ForkPoints
from khipu.p2p.errors import P2PError


def _as_number(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        return int(value, 16) if value.startswith("0x") else int(value)
    return None


def fork_points_from_config(
    genesis_hash: bytes, config: Mapping[str, object], genesis_time: int = 0
) -> ForkPoints:
    """ForkPoints of a chain whose genesis hash and geth `config` mapping are given."""
    blocks = [_as_number(v) for k, v in config.items() if k.endswith("Block")]
    times = [_as_number(v) for k, v in config.items() if k.endswith("Time")]
    return ForkPoints.gather(genesis_hash, blocks, times, genesis_time)


def load_genesis_json(path: Path) -> dict[str, object]:
    """Read a genesis.json; raise P2PError naming the file if it is not one."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise P2PError(f"cannot read genesis file {path}: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("config"), dict):
        raise P2PError(f"{path} has no 'config' section")
    return data


def fork_points_from_genesis_file(path: Path, genesis_hash: bytes) -> tuple[int, ForkPoints]:
    """The chain id and ForkPoints of a genesis.json, given the genesis hash computed elsewhere."""
    data = load_genesis_json(path)
    config = data["config"]
    assert isinstance(config, dict)
    genesis_time = _as_number(data.get("timestamp", 0)) or 0
    chain_id = _as_number(config.get("chainId", 1)) or 1
    return chain_id, fork_points_from_config(genesis_hash, config, genesis_time)
