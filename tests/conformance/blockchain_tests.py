"""Runs ethereum/tests BlockchainTest fixtures through khipu's genesis builder and block importer.

A fixture names a `network` (a fork or a fork transition), a genesis header with its allocation
(`pre`), a list of RLP blocks and the expected head (`lastblockhash`) and state (`postState`, or
only `postStateHash`). A block with no `blockHeader` in the fixture is one the filler expected to
be rejected (geth's rule; such blocks carry `expectException...`), every other block must import.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from eth.abc import AtomicDatabaseAPI, BlockHeaderAPI
from eth.db.account import AccountDB
from eth.db.atomic import AtomicDB
from eth.db.chain import ChainDB
from eth_typing import Address

from khipu.chain.chain import KhipuChain, open_chain
from khipu.chain.config import Genesis
from khipu.chain.genesis import build_genesis_header, write_genesis_state
from khipu.chain.importer import (
    BlockExecutor,
    BlockImporter,
    InvalidBlock,
    MalformedBlock,
    decode_block,
)
from khipu.chain.rules import ChainRules

# The fork activations of each fixture network, as go-ethereum's tests/init.go `Forks` table
# (and ethereum/tests' retesteth configs) define them; all use chain id 1.
_FRONTIER: dict[str, Any] = {"chainId": 1}
_HOMESTEAD = {**_FRONTIER, "homesteadBlock": 0}
_EIP150 = {**_HOMESTEAD, "eip150Block": 0}
_EIP158 = {**_EIP150, "eip155Block": 0, "eip158Block": 0}
_BYZANTIUM = {**_EIP158, "daoForkBlock": 0, "byzantiumBlock": 0}
_CONSTANTINOPLE = {**_BYZANTIUM, "constantinopleBlock": 0, "petersburgBlock": 10_000_000}
_CONSTANTINOPLE_FIX = {**_BYZANTIUM, "constantinopleBlock": 0, "petersburgBlock": 0}
_ISTANBUL = {**_CONSTANTINOPLE_FIX, "istanbulBlock": 0}
_BERLIN = {**_ISTANBUL, "muirGlacierBlock": 0, "berlinBlock": 0}
_LONDON = {**_BERLIN, "londonBlock": 0}
_ARROW_GLACIER = {**_LONDON, "arrowGlacierBlock": 0}
_PARIS = {**_ARROW_GLACIER, "mergeNetsplitBlock": 0, "terminalTotalDifficulty": 0}
_SHANGHAI = {**_PARIS, "shanghaiTime": 0}
_CANCUN = {**_SHANGHAI, "cancunTime": 0}
_ARROW_GLACIER_TO_PARIS = {
    **_ARROW_GLACIER,
    "grayGlacierBlock": 0,
    "mergeNetsplitBlock": 0,
    "terminalTotalDifficulty": 0xC0000,
}
_PARIS_TO_SHANGHAI = {**_PARIS, "shanghaiTime": 15_000}
_PRAGUE = {
    **_CANCUN,
    "pragueTime": 0,
    "depositContractAddress": "0x00000000219ab540356cbb839cbe05303d7705fa",
}

NETWORK_CONFIGS: Mapping[str, Mapping[str, Any]] = {
    "Frontier": _FRONTIER,
    "Homestead": _HOMESTEAD,
    "EIP150": _EIP150,
    "EIP158": _EIP158,
    "Byzantium": _BYZANTIUM,
    "Constantinople": _CONSTANTINOPLE,
    "ConstantinopleFix": _CONSTANTINOPLE_FIX,
    "Istanbul": _ISTANBUL,
    "Berlin": _BERLIN,
    "London": _LONDON,
    "ArrowGlacier": _ARROW_GLACIER,
    "GrayGlacier": {**_ARROW_GLACIER, "grayGlacierBlock": 0},
    "Paris": _PARIS,
    "Merge": _PARIS,
    "Shanghai": _SHANGHAI,
    "Cancun": _CANCUN,
    "Prague": _PRAGUE,
    "EIP2384": {**_ISTANBUL, "muirGlacierBlock": 0},
    "MuirGlacier": {**_ISTANBUL, "muirGlacierBlock": 0},
    "FrontierToHomesteadAt5": {**_FRONTIER, "homesteadBlock": 5},
    "HomesteadToDaoAt5": {**_HOMESTEAD, "daoForkBlock": 5, "daoForkSupport": True},
    "HomesteadToEIP150At5": {**_HOMESTEAD, "eip150Block": 5},
    "EIP158ToByzantiumAt5": {**_EIP158, "byzantiumBlock": 5},
    "ByzantiumToConstantinopleAt5": {**_BYZANTIUM, "constantinopleBlock": 5},
    "ByzantiumToConstantinopleFixAt5": {
        **_BYZANTIUM,
        "constantinopleBlock": 5,
        "petersburgBlock": 5,
    },
    "ConstantinopleFixToIstanbulAt5": {**_CONSTANTINOPLE_FIX, "istanbulBlock": 5},
    "BerlinToLondonAt5": {**_BERLIN, "londonBlock": 5},
    "ArrowGlacierToParisAtDiffC0000": _ARROW_GLACIER_TO_PARIS,
    "ArrowGlacierToMergeAtDiffC0000": _ARROW_GLACIER_TO_PARIS,  # its older name
    "ParisToShanghaiAtTime15k": _PARIS_TO_SHANGHAI,
    "MergeToShanghaiAtTime15k": _PARIS_TO_SHANGHAI,  # its older name
    "ShanghaiToCancunAtTime15k": {**_SHANGHAI, "cancunTime": 15_000},
    "CancunToPragueAtTime15k": {**_PRAGUE, "pragueTime": 15_000},
}

# Genesis header fields of a fixture that a geth genesis.json holds under the same names.
_GENESIS_FIELDS = (
    "nonce",
    "timestamp",
    "extraData",
    "gasLimit",
    "difficulty",
    "mixHash",
    "coinbase",
    "number",
    "gasUsed",
    "parentHash",
    "baseFeePerGas",
    "excessBlobGas",
    "blobGasUsed",
)


@dataclass(frozen=True)
class FixtureCase:
    """One test of a fixture file: where it is and which network it was filled for."""

    name: str
    path: Path
    network: str
    seal_engine: str  # "NoProof", or "Ethash" where seals are checked
    # The folder of the fixture below the suite root, e.g. "Cancun/.../bcStateTests".
    category: str = field(compare=False)


@lru_cache(maxsize=2)
def discover_cases(root: Path) -> tuple[FixtureCase, ...]:
    """Every test of every fixture file under `root`, sorted by file path, then test name."""
    cases = []
    for path in sorted(root.rglob("*.json")):
        document = json.loads(path.read_text())
        category = str(path.parent.relative_to(root))
        for name, test in sorted(document.items()):
            cases.append(FixtureCase(name, path, test["network"], test["sealEngine"], category))
    return tuple(cases)


@lru_cache(maxsize=4)
def _load_file(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(path.read_text())
    return document


def load_fixture(case: FixtureCase) -> dict[str, Any]:
    """The JSON object of one fixture test."""
    fixture: dict[str, Any] = _load_file(case.path)[case.name]
    return fixture


def genesis_document(fixture: Mapping[str, Any]) -> dict[str, Any]:
    """A geth-style genesis.json for the fixture's network, genesis header and `pre` state.

    Raises KeyError for a network that NETWORK_CONFIGS does not know.
    """
    header = fixture["genesisBlockHeader"]
    document: dict[str, Any] = {"config": dict(NETWORK_CONFIGS[fixture["network"]])}
    document.update({name: header[name] for name in _GENESIS_FIELDS if name in header})
    document["alloc"] = fixture["pre"]
    return document


class ConformanceFailure(AssertionError):
    """The importer's result disagrees with the fixture; the message says where."""


@dataclass
class RunResult:
    """What importing a fixture's blocks did."""

    accepted: int = 0
    rejected: int = 0
    head: BlockHeaderAPI | None = None
    problems: list[str] = field(default_factory=list)
    # (block index, failed check) of each rejected block; "malformed" if it did not decode.
    rejections: list[tuple[int, str]] = field(default_factory=list)


def run_fixture(
    fixture: Mapping[str, Any],
    executor_factory: Callable[[KhipuChain], BlockExecutor] | None = None,
) -> RunResult:
    """Build the genesis, import every block and check head and post state.

    With `executor_factory`, blocks are executed by the executor it makes for the chain
    (`BlockImporter(executor=...)`) instead of py-evm's serial import. Raises ConformanceFailure
    listing every disagreement with the fixture.
    """
    genesis = Genesis.from_json(genesis_document(fixture))
    rules = ChainRules(genesis.config)
    db = AtomicDB()
    state_root = write_genesis_state(genesis, db)
    genesis_header = build_genesis_header(genesis, rules, state_root)
    expected_genesis = _hash(fixture["genesisBlockHeader"]["hash"])
    if genesis_header.hash != expected_genesis:
        raise ConformanceFailure(
            f"genesis hash 0x{genesis_header.hash.hex()} != fixture 0x{expected_genesis.hex()}"
            f" (state root 0x{state_root.hex()},"
            f" fixture {fixture['genesisBlockHeader']['stateRoot']})"
        )
    ChainDB(db).persist_header(genesis_header)
    chain = open_chain(rules, db)
    executor = None if executor_factory is None else executor_factory(chain)
    importer = BlockImporter(
        chain, check_seal=fixture["sealEngine"] != "NoProof", executor=executor
    )

    result = RunResult()
    for index, entry in enumerate(fixture["blocks"]):
        should_import = "blockHeader" in entry
        try:
            block = decode_block(bytes.fromhex(entry["rlp"][2:]), rules)
            importer.import_block(block)
        except (InvalidBlock, MalformedBlock) as exc:
            result.rejected += 1
            check = exc.check if isinstance(exc, InvalidBlock) else "malformed"
            result.rejections.append((index, check))
            if should_import:
                result.problems.append(f"block {index} rejected: {exc}")
            continue
        result.accepted += 1
        if not should_import:
            expected = {k: v for k, v in entry.items() if k.startswith("expectException")}
            result.problems.append(f"block {index} accepted, expected {expected}")

    head = chain.chaindb.get_canonical_head()
    result.head = head
    last = _hash(fixture["lastblockhash"])
    if head.hash != last:
        result.problems.append(
            f"head #{head.block_number} 0x{head.hash.hex()} != lastblockhash 0x{last.hex()}"
        )
    result.problems.extend(_compare_post_state(fixture, head, db))
    if result.problems:
        raise ConformanceFailure("\n".join(result.problems))
    return result


def _compare_post_state(
    fixture: Mapping[str, Any], head: BlockHeaderAPI, db: AtomicDatabaseAPI
) -> Iterator[str]:
    if "postState" not in fixture:
        expected_root = _hash(fixture["postStateHash"])
        if head.state_root != expected_root:
            yield f"state root 0x{head.state_root.hex()} != postStateHash 0x{expected_root.hex()}"
        return
    post = fixture["postState"]
    state = AccountDB(db, head.state_root)
    for address_hex, account in post.items():
        address = Address(bytes.fromhex(address_hex[2:]))
        actual = {
            "balance": state.get_balance(address),
            "nonce": state.get_nonce(address),
            "code": state.get_code(address),
        }
        expected = {
            "balance": int(account["balance"], 16),
            "nonce": int(account["nonce"], 16),
            "code": bytes.fromhex(account["code"][2:]),
        }
        for key in actual:
            if actual[key] != expected[key]:
                yield f"{address_hex} {key}: {_show(actual[key])} != {_show(expected[key])}"
        for slot_hex, value_hex in account.get("storage", {}).items():
            slot, value = int(slot_hex, 16), int(value_hex, 16)
            actual_value = state.get_storage(address, slot)
            if actual_value != value:
                yield f"{address_hex} storage[{slot_hex}]: {actual_value:#x} != expected {value:#x}"
    # The root of exactly the listed accounts: equal only if the head has no extra account
    # or storage slot (their per-field values were compared above).
    expected_root = write_genesis_state(
        Genesis.from_json({"config": {"chainId": 1}, "alloc": post}), AtomicDB()
    )
    if head.state_root != expected_root:
        yield (
            f"head state root 0x{head.state_root.hex()} != root of postState"
            f" 0x{expected_root.hex()} (extra or missing accounts or slots)"
        )


def _hash(text: str) -> bytes:
    return bytes.fromhex(text[2:])


def _show(value: object) -> str:
    return "0x" + value.hex() if isinstance(value, bytes) else hex(value)  # type: ignore[arg-type]


# Tests that take 10-30 s each on their own (heavy EVM loops); the full run includes them,
# the default sample leaves them out.
SLOW_CASES = frozenset(
    {
        "randomStatetest94_Byzantium",
        "randomStatetest94_Constantinople",
        "randomStatetest94_ConstantinopleFix",
        "randomStatetest94_Homestead",
        "21_tstoreCannotBeDosdOOO_d0g0v0_Cancun",
    }
)


def sample_cases(cases: Sequence[FixtureCase], every: int = 8) -> list[FixtureCase]:
    """A deterministic sample without SLOW_CASES: every `every`-th case, plus the first case of
    each network and of each seal engine that the stride missed."""
    fast = [case for case in cases if case.name not in SLOW_CASES]
    chosen = {case.name for case in fast[::every]}
    for attribute in ("network", "seal_engine"):
        covered = {getattr(case, attribute) for case in fast if case.name in chosen}
        for case in fast:
            if getattr(case, attribute) not in covered:
                covered.add(getattr(case, attribute))
                chosen.add(case.name)
    return [case for case in fast if case.name in chosen]
