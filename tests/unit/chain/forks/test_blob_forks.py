"""with_blob_schedule: a fork's VM with the blob numbers of a genesis blobSchedule entry."""

from __future__ import annotations

import pickle
from types import SimpleNamespace
from typing import Any

import pytest
from eth.vm.forks.cancun import CancunVM
from eth.vm.forks.london import LondonVM
from eth.vm.forks.prague import PragueVM
from osaka_fixtures import eip4844_fake_exponential, run_code, vm_at_genesis

from khipu.chain.forks import (
    FORK_VM_CLASSES,
    BlobScheduleVM,
    InvalidBlobSchedule,
    OsakaVM,
    with_blob_schedule,
)
from khipu.chain.forks.errors import InvalidBlobGas

BLOB = 2**17
BLOBBASEFEE_RETURNED = bytes.fromhex("4a5f5260205ff3")  # BLOBBASEFEE, MSTORE, RETURN 32


def test_fork_table_runs_frontier_to_osaka_in_order() -> None:
    names = list(FORK_VM_CLASSES)
    assert names[0] == "frontier"
    assert names[-3:] == ["cancun", "prague", "osaka"]
    assert FORK_VM_CLASSES["osaka"] is OsakaVM
    assert issubclass(OsakaVM, PragueVM)
    assert len(set(FORK_VM_CLASSES.values())) == len(names)


def test_scheduled_class_keeps_the_fork_and_changes_the_numbers() -> None:
    bpo1 = with_blob_schedule(OsakaVM, 10, 15, 8_346_193, fork_name="bpo1")
    assert issubclass(bpo1, OsakaVM)
    assert bpo1.fork == "bpo1"
    assert bpo1.blob_schedule.max_blobs_per_block == 15  # type: ignore[attr-defined]
    state_class: Any = bpo1.get_state_class()
    assert state_class.blob_schedule.target_blobs_per_block == 10
    assert state_class.computation_class is OsakaVM.get_state_class().computation_class
    # OsakaVM itself keeps its own numbers
    assert OsakaVM.blob_schedule.max_blobs_per_block == 9


def test_same_arguments_same_class_and_it_pickles() -> None:
    first = with_blob_schedule(PragueVM, 6, 9, 5_007_716)
    assert with_blob_schedule(PragueVM, 6, 9, 5_007_716) is first
    assert with_blob_schedule(PragueVM, 6, 10, 5_007_716) is not first
    assert pickle.loads(pickle.dumps(first)) is first
    assert pickle.loads(pickle.dumps(first.get_state_class())) is first.get_state_class()


def test_two_configurations_of_one_vm_pickle_as_themselves() -> None:
    plain = with_blob_schedule(OsakaVM, 3, 6, 3_338_477, fork_name="twin")
    configured = with_blob_schedule(
        OsakaVM.configure(extra_data_max_bytes=64), 3, 6, 3_338_477, fork_name="twin"
    )
    assert plain is not configured
    assert pickle.loads(pickle.dumps(plain)) is plain
    assert pickle.loads(pickle.dumps(configured)) is configured
    # both share the one state class of Osaka with these numbers
    assert plain.get_state_class() is configured.get_state_class()


def test_forks_without_blobs_and_impossible_numbers_are_refused() -> None:
    with pytest.raises(TypeError):
        with_blob_schedule(LondonVM, 3, 6, 3_338_477)
    with pytest.raises(InvalidBlobSchedule):
        with_blob_schedule(CancunVM, 7, 6, 3_338_477)


def test_excess_blob_gas_of_a_new_header_follows_the_schedule() -> None:
    # genesis with 10 blobs of excess and none used: the child drains one target (Osaka too,
    # at a base fee of 1 wei, where the EIP-7918 reserve price does not bind)
    genesis_excess = 10 * BLOB
    for vm_class, target in [
        (with_blob_schedule(CancunVM, 3, 6, 3_338_477), 3),
        (with_blob_schedule(CancunVM, 1, 2, 3_338_477), 1),
        (with_blob_schedule(OsakaVM, 4, 8, 5_007_716), 4),
    ]:
        vm = vm_at_genesis(
            vm_class, base_fee_per_gas=1, excess_blob_gas=genesis_excess, blob_gas_used=0
        )
        assert vm.get_header().excess_blob_gas == genesis_excess - target * BLOB


def test_blob_base_fee_and_blobbasefee_opcode_use_the_fraction() -> None:
    excess = 40 * BLOB
    for fraction in (3_338_477, 1_000_000):
        vm_class = with_blob_schedule(CancunVM, 1, 2, fraction)
        vm = vm_at_genesis(vm_class, excess_blob_gas=excess + BLOB, blob_gas_used=0)
        assert vm.get_header().excess_blob_gas == excess
        expected = eip4844_fake_exponential(1, excess, fraction)
        assert vm.state.blob_base_fee == expected
        computation = vm.execute_bytecode(
            origin=b"\x00" * 20,
            gas_price=0,
            gas=100_000,
            to=b"\x11" * 20,
            sender=b"\x00" * 20,
            value=0,
            data=b"",
            code=BLOBBASEFEE_RETURNED,
        )
        assert int.from_bytes(computation.output, "big") == expected
    assert eip4844_fake_exponential(1, excess, 1_000_000) > eip4844_fake_exponential(
        1, excess, 3_338_477
    )


def test_osaka_vm_applies_the_reserve_price_to_new_headers() -> None:
    # parent: 6 blobs of excess, 6 used, base fee 1 gwei: the reserve price binds (EIP-7918)
    fields = {"excess_blob_gas": 6 * BLOB, "blob_gas_used": 6 * BLOB}
    osaka = vm_at_genesis(OsakaVM, base_fee_per_gas=10**9, **fields)
    assert osaka.get_header().excess_blob_gas == 8 * BLOB
    prague = vm_at_genesis(PragueVM, base_fee_per_gas=10**9, **fields)
    assert prague.get_header().excess_blob_gas == 6 * BLOB


def fake_block(vm: Any, blob_counts: list[int], **header_changes: Any) -> Any:
    transactions = [
        SimpleNamespace(blob_versioned_hashes=[b"\x01" * 32] * count) for count in blob_counts
    ]
    header = vm.get_header().copy(blob_gas_used=sum(blob_counts) * BLOB, **header_changes)
    return SimpleNamespace(header=header, transactions=transactions)


def test_block_blob_checks_follow_the_schedule() -> None:
    bpo1: Any = vm_at_genesis(with_blob_schedule(OsakaVM, 10, 15, 8_346_193))
    bpo1.validate_block_blobs(fake_block(bpo1, [6, 6, 3]))  # 15 blobs: allowed in BPO1
    osaka: Any = vm_at_genesis(OsakaVM)
    with pytest.raises(InvalidBlobGas, match="over the limit of 1179648"):
        osaka.validate_block_blobs(fake_block(osaka, [6, 6, 3]))


def test_block_with_wrong_excess_or_used_blob_gas_is_refused() -> None:
    vm: Any = vm_at_genesis(OsakaVM)
    assert isinstance(vm, BlobScheduleVM)
    excess = vm.get_header().excess_blob_gas
    with pytest.raises(InvalidBlobGas, match="excess blob gas") as refused:
        vm.validate_block_blobs(fake_block(vm, [1], excess_blob_gas=excess + BLOB))
    assert refused.value.block_number == 1
    block = fake_block(vm, [2])
    wrong_used = SimpleNamespace(
        header=block.header.copy(blob_gas_used=BLOB), transactions=block.transactions
    )
    with pytest.raises(InvalidBlobGas, match="blob gas used"):
        vm.validate_block_blobs(wrong_used)


def test_code_runs_the_same_on_a_scheduled_osaka() -> None:
    bpo2 = with_blob_schedule(OsakaVM, 14, 21, 11_684_671, fork_name="bpo2")
    clz_of_one = bytes.fromhex("60011e5f5260205ff3")
    assert int.from_bytes(run_code(bpo2, clz_of_one).output, "big") == 255
