"""The struct logger against geth-style traces of real mainnet transactions (Nimbus TracerTests):
each block is replayed on its parent state, rebuilt from the recorded witness."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import rlp
from eth.db.atomic import AtomicDB
from eth.db.chain import ChainDB
from eth.db.schema import SchemaV1
from eth.rlp.headers import BlockHeader
from eth_hash.auto import keccak

from khipu.chain.config import Genesis
from khipu.chain.presets import genesis_json
from khipu.chain.rules import ChainRules
from khipu.rpc.chain_view import ChainView
from khipu.rpc.replay import replay_block
from khipu.rpc.tracers import StructLogger
from tests.conftest import require_testdata

BLOCKS_WITH_STEPS = ("block46402.json", "block48915.json", "block49018.json")


@cache
def mainnet_rules() -> ChainRules:
    return ChainRules(Genesis.from_json(genesis_json("mainnet")).config)


def witness_chain(path: Path) -> tuple[ChainView, Any, list[dict[str, Any]]]:
    """A view over the witness of one block, that block's header, and its recorded traces."""
    document = json.loads(path.read_text())
    db = AtomicDB()
    headers = []
    for key, value in document["state"].items():
        raw_key = bytes.fromhex(key.removeprefix("0x"))
        raw_value = bytes.fromhex(value.removeprefix("0x"))
        if len(raw_key) == 32:
            db[raw_key] = raw_value
        elif len(raw_key) == 33 and raw_key[0] == 0 and keccak(raw_value) == raw_key[1:]:
            try:
                headers.append(rlp.decode(raw_value, sedes=BlockHeader))
            except rlp.DecodingError:
                continue
    for header in headers:
        db[header.hash] = rlp.encode(header)
        number_key = SchemaV1.make_block_number_to_hash_lookup_key(header.block_number)
        db[number_key] = rlp.encode(header.hash)
    number = int(document["blockNumber"], 16)
    target = next(h for h in headers if h.block_number == number)
    store = SimpleNamespace(db=db, chaindb=ChainDB(db))
    return ChainView(store, mainnet_rules()), target, document["txTraces"]  # type: ignore[arg-type]


def _step(entry: dict[str, Any]) -> tuple[Any, ...]:
    stack = tuple(int(v, 16) for v in entry.get("stack", []))
    cost = None if "error" in entry else entry["gasCost"]
    op = "KECCAK256" if entry["op"] == "SHA3" else entry["op"]  # geth renamed it since
    return (entry["pc"], op, entry["gas"], cost, entry["depth"], stack, "error" in entry)


@pytest.mark.parametrize("name", BLOCKS_WITH_STEPS)
def test_struct_logs_match_geth_style_traces(name: str) -> None:
    view, header, expected = witness_chain(require_testdata("mainnet", "nimbus-tracer", name))
    loggers: dict[int, StructLogger] = {}

    def hook_for(index: int) -> StructLogger:
        loggers[index] = StructLogger({})
        return loggers[index]

    replayed = list(replay_block(view, header, hook_for))
    assert len(replayed) == len(expected)
    for tx, trace in zip(replayed, expected, strict=True):
        result = loggers[tx.index].result(tx.computation, tx.gas_used)
        assert (result["gas"], result["failed"]) == (trace["gas"], trace["failed"])
        ours = [_step(step) for step in result["structLogs"]]
        theirs = [_step(step) for step in trace["structLogs"]]
        assert ours == theirs
