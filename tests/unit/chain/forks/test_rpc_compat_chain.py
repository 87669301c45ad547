"""The rpc-compat test chain (54 blocks, Osaka at 48, BPO1 at 51, BPO2 at 54) on our VM classes.

A stand-in for the integrator's importer: the fork schedule is read from genesis.json here, just
well enough for this chain (timestamp forks start at the first block at or past their time), and
proof-of-work seals are not checked. Everything else is py-evm's block import: every transaction
executed, and state root, receipts, bloom, gas used, blob gas and requests hash compared to the
header of each block.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
import rlp  # type: ignore[import-untyped]
from eth.abc import BlockHeaderAPI
from eth.chains.base import Chain
from eth.db.atomic import AtomicDB
from eth.vm.base import VM
from eth.vm.forks.prague.blocks import PragueBackwardsHeader
from eth_utils import decode_hex, keccak, to_canonical_address
from osaka_fixtures import rpc_compat_path

from khipu.chain.forks import (
    FORK_VM_CLASSES,
    OsakaVM,
    blob_schedules_from_genesis,
    with_blob_schedule,
)
from khipu.chain.forks.osaka import OsakaBlock

pytestmark = pytest.mark.conformance

OSAKA_BLOCK, BPO1_BLOCK, BPO2_BLOCK = 48, 51, 54

BLOCK_FORKS = [
    ("homesteadBlock", "homestead"),
    ("eip150Block", "tangerine_whistle"),
    ("eip155Block", "spurious_dragon"),
    ("byzantiumBlock", "byzantium"),
    ("constantinopleBlock", "constantinople"),
    ("petersburgBlock", "petersburg"),
    ("istanbulBlock", "istanbul"),
    ("muirGlacierBlock", "muir_glacier"),
    ("berlinBlock", "berlin"),
    ("londonBlock", "london"),
    ("arrowGlacierBlock", "arrow_glacier"),
    ("grayGlacierBlock", "gray_glacier"),
    ("mergeNetsplitBlock", "paris"),
]
TIME_FORKS = ["shanghai", "cancun", "prague", "osaka", "bpo1", "bpo2"]


def split_blocks(data: bytes) -> list[bytes]:
    """The RLP items of a concatenated chain file, one per block."""
    blocks = []
    position = 0
    while position < len(data):
        _, _, length, payload_start = rlp.codec.consume_length_prefix(data, position)
        blocks.append(data[position : payload_start + length])
        position = payload_start + length
    return blocks


def load_chain() -> tuple[dict[str, Any], list[bytes], list[BlockHeaderAPI]]:
    genesis = json.loads(rpc_compat_path("genesis.json").read_text())
    raw_blocks = split_blocks(rpc_compat_path("chain.rlp").read_bytes())
    headers = [
        rlp.decode(raw, sedes=rlp.sedes.List([PragueBackwardsHeader], strict=False))[0]
        for raw in raw_blocks
    ]
    return genesis, raw_blocks, headers


def without_seal_check(vm_class: type[VM]) -> type[VM]:
    def no_check(cls: type[VM], *args: object) -> None:
        return None

    return type(
        vm_class.__name__,
        (vm_class,),
        {
            "validate_seal": classmethod(no_check),
            "validate_seal_extension": classmethod(no_check),
        },
    )


def vm_schedule(
    genesis: dict[str, Any], headers: list[BlockHeaderAPI]
) -> tuple[tuple[int, type[VM]], ...]:
    """(first block, VM class) pairs for this chain, blob forks with their blobSchedule."""
    config = genesis["config"]
    blob_schedules = blob_schedules_from_genesis(config)
    schedule: list[tuple[int, type[VM]]] = [
        (0, FORK_VM_CLASSES["homestead"].configure(support_dao_fork=False))
    ]
    for key, fork in BLOCK_FORKS[1:]:
        schedule.append((config[key], FORK_VM_CLASSES[fork]))
    for fork in TIME_FORKS:
        first = next(h.block_number for h in headers if h.timestamp >= config[f"{fork}Time"])
        vm_class = FORK_VM_CLASSES.get(fork, OsakaVM)
        if fork in blob_schedules:
            blobs = blob_schedules[fork]
            vm_class = with_blob_schedule(
                vm_class,
                blobs.target_blobs_per_block,
                blobs.max_blobs_per_block,
                blobs.base_fee_update_fraction,
                fork_name=fork,
            )
        schedule.append((first, vm_class))
    return tuple((number, without_seal_check(vm_class)) for number, vm_class in schedule)


def genesis_chain(genesis: dict[str, Any], headers: list[BlockHeaderAPI]) -> Chain:
    chain_class = Chain.configure(
        vm_configuration=vm_schedule(genesis, headers), chain_id=genesis["config"]["chainId"]
    )
    state = {
        to_canonical_address(address): {
            "balance": int(account.get("balance", "0x0"), 16),
            "nonce": int(account.get("nonce", "0x0"), 16),
            "code": decode_hex(account.get("code", "0x")),
            "storage": {
                int(slot, 16): int(value, 16) for slot, value in account.get("storage", {}).items()
            },
        }
        for address, account in genesis["alloc"].items()
    }
    params = {
        "difficulty": int(genesis["difficulty"], 16),
        "gas_limit": int(genesis["gasLimit"], 16),
        "extra_data": decode_hex(genesis["extraData"]),
        "timestamp": int(genesis["timestamp"], 16),
        "nonce": int(genesis["nonce"], 16).to_bytes(8, "big"),
        "mix_hash": decode_hex(genesis["mixHash"]),
        "coinbase": decode_hex(genesis["coinbase"]),
    }
    return chain_class.from_genesis(AtomicDB(), params, state)


def test_fork_schedule_puts_osaka_and_bpos_where_the_suite_says() -> None:
    genesis, _, headers = load_chain()
    schedule = dict(vm_schedule(genesis, headers))
    assert schedule[OSAKA_BLOCK].fork == "osaka"
    assert schedule[BPO1_BLOCK].fork == "bpo1"
    assert schedule[BPO2_BLOCK].fork == "bpo2"
    assert schedule[BPO1_BLOCK].blob_schedule.max_blobs_per_block == 15  # type: ignore[attr-defined]
    assert schedule[BPO2_BLOCK].blob_schedule.target_blobs_per_block == 14  # type: ignore[attr-defined]


def test_osaka_blocks_decode_and_link_by_header_hash() -> None:
    _, raw_blocks, headers = load_chain()
    assert len(raw_blocks) == 54
    for parent, child in itertools.pairwise(headers):
        assert keccak(rlp.encode(parent)) == child.parent_hash
    for number in range(OSAKA_BLOCK, BPO2_BLOCK + 1):
        raw = raw_blocks[number - 1]
        block = rlp.decode(raw, sedes=OsakaBlock)
        assert block.number == number
        assert rlp.encode(block) == raw
        assert block.header.hash == headers[number - 1].hash
        for transaction in block.transactions:
            transaction.check_signature_validity()
            assert len(transaction.sender) == 20


def test_excess_blob_gas_of_every_blob_block_follows_its_fork() -> None:
    genesis, _, headers = load_chain()
    schedule = vm_schedule(genesis, headers)
    for parent, header in itertools.pairwise(headers):
        vm_class = next(v for first, v in reversed(schedule) if first <= header.block_number)
        if not hasattr(vm_class, "compute_excess_blob_gas"):
            continue
        assert header.excess_blob_gas == vm_class.compute_excess_blob_gas(parent)


def test_chain_executes_to_the_bpo2_head() -> None:
    genesis, raw_blocks, headers = load_chain()
    chain = genesis_chain(genesis, headers)
    assert chain.get_canonical_head().hash == headers[0].parent_hash
    for raw, header in zip(raw_blocks, headers, strict=True):
        vm_class = chain.get_vm_class_for_block_number(header.block_number)
        block = rlp.decode(raw, sedes=vm_class.get_block_class())
        chain.import_block(block)
        assert chain.get_canonical_head().hash == header.hash
    osaka_vm = chain.get_vm(headers[BPO2_BLOCK - 1])
    assert osaka_vm.fork == "bpo2"


def test_precompiles_are_those_eth_config_lists_for_bpo2() -> None:
    exchange = rpc_compat_path("eth_config/get-config.io").read_text().splitlines()
    response = json.loads(next(line[3:] for line in exchange if line.startswith("<< ")))
    listed = {bytes.fromhex(a[2:]) for a in response["result"]["current"]["precompiles"].values()}
    genesis, _, headers = load_chain()
    bpo2 = dict(vm_schedule(genesis, headers))[BPO2_BLOCK]
    computation_class = bpo2.get_state_class().computation_class
    assert set(computation_class.get_precompiles()) == listed
    assert len(listed) == 18
