"""Shared by the node tests: a small generated chain, its uninterrupted import, a node to run."""

from __future__ import annotations

import json
import random
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from khipu.actors import ExponentialBackoff, SupervisionStrategy
from khipu.actors.health import HealthConfig
from khipu.chain.config import Genesis
from khipu.chain.import_job import import_files
from khipu.chain.rules import ChainRules
from khipu.config import ChainSelection
from khipu.devnet.generate import generate_chain
from khipu.storage.chain_store import ChainStore


@dataclass(frozen=True)
class ReferenceChain:
    """A generated chain and the head an uninterrupted `import_files` reaches."""

    genesis_path: Path
    chain_path: Path
    genesis_json: dict[str, object]
    blocks: int
    txs: int
    head_hash: bytes
    head_state_root: bytes

    def selection(self, datadir: Path) -> ChainSelection:
        genesis = Genesis.from_json(self.genesis_json)
        return ChainSelection("testchain", datadir, genesis, self.genesis_json)


def make_chain(folder: Path, blocks: int, txs_per_block: int, seed: int) -> ReferenceChain:
    """Generate a dev chain and import it once without interruption (the reference result)."""
    import json

    generated = generate_chain(folder / "chain", blocks, txs_per_block, "mixed", seed)
    genesis_json = json.loads(generated.genesis_path.read_text())
    chain = ReferenceChain(
        generated.genesis_path,
        generated.chain_path,
        genesis_json,
        blocks,
        generated.txs,
        generated.head_hash,
        generated.head_state_root,
    )
    selection = chain.selection(folder / "reference")
    store = ChainStore.open(selection.datadir, selection.genesis, genesis_json)
    try:
        summary = import_files(
            store, ChainRules(selection.genesis.config), [chain.chain_path], check_seal=False
        )
    finally:
        store.close()
    assert summary.head.hash == generated.head_hash
    assert summary.head.state_root == generated.head_state_root
    return chain


def stored_head(chain: ReferenceChain, datadir: Path) -> tuple[int, bytes, bytes]:
    """(number, hash, state root) of the head stored in `datadir` (which must be closed)."""
    selection = chain.selection(datadir)
    store = ChainStore.open(datadir, selection.genesis, chain.genesis_json)
    try:
        head = store.head()
        return head.block_number, head.hash, head.state_root
    finally:
        store.close()


def fast_strategy(max_restarts: int = 5) -> SupervisionStrategy:
    """Restarts after 10 ms, 20 ms, 40 ms ... so fault tests stay quick."""
    backoff = ExponentialBackoff(initial=0.01, maximum=0.5, jitter=0.1, rng=random.Random(7))
    return SupervisionStrategy(max_restarts=max_restarts, within_seconds=60.0, backoff=backoff)


def quick_health() -> HealthConfig:
    """Heartbeats every 0.1 s; an actor silent for two 0.5 s timeouts in a row is stalled."""
    return HealthConfig(
        heartbeat_interval=0.1, heartbeat_timeout=0.5, stall_misses=2, log_interval=0.5
    )


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `condition` until it holds; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.02)


def rpc_result(url: str, method: str, *params: object) -> Any:
    """The result of one JSON-RPC call to `url`; fails (AssertionError) with the error answer."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
    request = urllib.request.Request(
        url, data=body.encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        answer = json.loads(response.read())
    assert "result" in answer, answer
    return answer["result"]
