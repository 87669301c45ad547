"""The byte-level pieces of the merge: receipts with their cumulative gas, partial blocks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import rlp
from eth.rlp.logs import Log
from eth.rlp.receipts import Receipt
from eth.vm.forks.frontier import FrontierVM
from eth.vm.forks.prague import PragueVM
from hypothesis import given
from hypothesis import strategies as st

from khipu.chain.importer import decode_block
from khipu.devnet.generate import generate_chain
from khipu.execution.executor import partial_block
from khipu.execution.merge import PLACEHOLDER_STATE_ROOT
from khipu.execution.merged_receipt import MergedReceipt, ReceiptEncodingError
from khipu.execution.rlp_items import RlpItemError, encode_list, list_items
from tests.chain_helpers import memory_chain, read_blocks

logs = st.lists(
    st.builds(
        Log,
        address=st.binary(min_size=20, max_size=20),
        topics=st.lists(st.integers(0, 2**256 - 1), max_size=3),
        data=st.binary(max_size=300),
    ),
    max_size=4,
)


@given(
    status=st.sampled_from([b"", b"\x01"]),
    own_gas=st.integers(0, 2**40),
    before=st.integers(0, 2**40),
    entries=logs,
    typed=st.sampled_from([None, 1, 2, 3, 4]),
)
def test_merged_receipt_equals_pyevm_copy(
    status: bytes, own_gas: int, before: int, entries: list[Log], typed: int | None
) -> None:
    builder = PragueVM.get_receipt_builder()
    bloom = int.from_bytes(bytes(range(256)), "big")
    inner = Receipt(state_root=status, gas_used=own_gas, bloom=bloom, logs=entries)
    speculative = (bytes([typed]) if typed else b"") + rlp.encode(inner)
    expected = builder.decode(speculative)
    expected = expected.copy(gas_used=before + own_gas)

    merged = MergedReceipt(speculative, before)

    assert merged.encode() == expected.encode()
    assert merged.gas_used == before + own_gas and merged.own_gas == own_gas
    assert merged.bloom == bloom
    assert merged.decoded(builder).logs == expected.logs


@given(
    root=st.binary(min_size=32, max_size=32),
    own_gas=st.integers(0, 2**40),
    before=st.integers(0, 2**40),
    entries=logs,
)
def test_merged_receipt_patches_the_state_root_of_a_frontier_receipt(
    root: bytes, own_gas: int, before: int, entries: list[Log]
) -> None:
    bloom = int.from_bytes(bytes(range(256)), "big")
    placeholder = Receipt(state_root=PLACEHOLDER_STATE_ROOT, gas_used=own_gas, bloom=bloom,
                          logs=entries)  # fmt: skip
    expected = Receipt(state_root=root, gas_used=before + own_gas, bloom=bloom, logs=entries)

    merged = MergedReceipt(rlp.encode(placeholder), before, root)

    assert merged.encode() == rlp.encode(expected)
    assert merged.gas_used == before + own_gas and merged.bloom == bloom
    assert merged.decoded(FrontierVM.get_receipt_builder()).state_root == root


def test_merged_receipt_refuses_a_root_for_a_status_receipt() -> None:
    encoded = rlp.encode(Receipt(state_root=b"\x01", gas_used=21000, bloom=0, logs=[]))
    with pytest.raises(ReceiptEncodingError, match="no state root"):
        MergedReceipt(encoded, 0, b"\x11" * 32)


def test_merged_receipt_rejects_truncated_bytes() -> None:
    encoded = rlp.encode(Receipt(state_root=b"\x01", gas_used=21000, bloom=0, logs=[]))
    with pytest.raises(ReceiptEncodingError):
        MergedReceipt(encoded[:-10], 0)


def test_rlp_items_round_trip_and_errors() -> None:
    items = [rlp.encode(b"x" * n) for n in (0, 1, 55, 56, 300)] + [rlp.encode([b"a", [b"b"]])]
    encoded = encode_list(items)
    assert encoded == rlp.encode([rlp.decode(item) for item in items])
    assert list_items(encoded) == items
    with pytest.raises(RlpItemError):
        list_items(encoded[:-1])
    with pytest.raises(RlpItemError):
        list_items(rlp.encode(b"not a list"))


def test_partial_blocks_hold_exactly_their_transactions(tmp_path: Path) -> None:
    generate_chain(tmp_path, 1, 9, "mixed", seed=4)
    _chain, rules = memory_chain(json.loads((tmp_path / "genesis.json").read_text()))
    raw = read_blocks(tmp_path / "chain.rlp")[0]
    block = decode_block(raw, rules)
    runs = [(0, 1, 2), (3, 4), (5, 6, 7, 8)]
    for run, partial in zip(runs, partial_block(raw, runs), strict=True):
        part = decode_block(partial, rules)
        assert part.header == block.header
        assert [tx.hash for tx in part.transactions] == [block.transactions[i].hash for i in run]
        assert part.withdrawals == block.withdrawals
