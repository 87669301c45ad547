"""Blocks before Byzantium through speculation and the merge: receipts with intermediate roots.

A chain of Frontier, Homestead, Spurious Dragon (EIP-158) or Homestead with the DAO fork rules
is built by py-evm's own `import_block`; its blocks hold several transactions per block that
touch the same and different accounts: a hot counter slot, per-sender slots, a shared
recipient, a sender's nonce chain, zero-value calls to a fresh and to an existing empty account
(created before Spurious Dragon, deleted from it on), a contract creation. Each block is then
executed in parallel on its parent state and must give py-evm's header, receipts (each with the
state root after its transaction) and post-state, without falling back to serial execution.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import rlp
from eth.abc import BlockAPI, SignedTransactionAPI
from eth.constants import BLANK_ROOT_HASH
from eth.db.atomic import AtomicDB
from eth.vm.chain_context import ChainContext
from eth.vm.forks.homestead.headers import dao_drain_list, dao_refund_contract
from eth_hash.auto import keccak
from eth_keys import keys
from eth_typing import Address
from eth_utils import decode_hex
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from khipu.chain.chain import KhipuChain, open_chain
from khipu.execution import executor as executor_module
from khipu.execution.executor import (
    execute_block_batched,
    execute_block_in_shares,
    execute_block_parallel,
    execute_block_serial,
    supports_parallel,
)
from khipu.execution.intermediate_root import child_hashes
from khipu.execution.merge import PLACEHOLDER_STATE_ROOT, receipts_carry_state_root
from tests.chain_helpers import memory_chain
from tests.conftest import conformance_full

COUNTER = b"\xc0" * 20  # slot 0 += 1 on every call: every caller reads what the last wrote
PER_CALLER = b"\xc1" * 20  # SSTORE(CALLER, CALLER): a slot of each caller's own
EMPTY = b"\xe0" * 20  # an existing empty account (nonce 0, balance 0, no code)
FRESH = b"\xf0" * 20  # no account at genesis
RECIPIENT = b"\xaa" * 20
DESTRUCTIBLE = b"\xd0" * 20  # SELFDESTRUCT to the caller
BALANCE_READER = b"\xb0" * 20  # SSTORE(1, BALANCE(RECIPIENT)): an absolute balance read
COUNTER_CODE = bytes.fromhex("600054600101600055")
PER_CALLER_CODE = bytes.fromhex("333355")
# init code returning COUNTER_CODE as the runtime
DEPLOY_CODE = bytes.fromhex("6009600c60003960096000f3") + COUNTER_CODE
GAS_PRICE = 10**9
DAO_FORK_BLOCK = 2

FORKS: dict[str, dict[str, Any]] = {
    "frontier": {"chainId": 1},
    "homestead": {"chainId": 1, "homesteadBlock": 0},
    "dao": {"chainId": 1, "homesteadBlock": 0, "daoForkBlock": DAO_FORK_BLOCK,
            "daoForkSupport": True},
    "spurious-dragon": {"chainId": 1, "homesteadBlock": 0, "eip150Block": 0, "eip155Block": 0,
                        "eip158Block": 0},
}  # fmt: skip

SENDER_KEYS = [keys.PrivateKey(keccak(b"pre-byzantium sender " + bytes([i]))) for i in range(4)]


@dataclass
class Call:
    sender: int
    to: bytes
    value: int = 0
    data: bytes = b""
    gas: int = 100_000


def genesis(fork: str) -> dict[str, Any]:
    alloc: dict[str, Any] = {
        "0x" + key.public_key.to_canonical_address().hex(): {"balance": hex(10**20)}
        for key in SENDER_KEYS
    }
    alloc["0x" + COUNTER.hex()] = {"balance": "0x0", "code": "0x" + COUNTER_CODE.hex()}
    alloc["0x" + PER_CALLER.hex()] = {"balance": "0x0", "code": "0x" + PER_CALLER_CODE.hex()}
    alloc["0x" + EMPTY.hex()] = {"balance": "0x0"}
    alloc["0x" + DESTRUCTIBLE.hex()] = {"balance": hex(10**15), "code": "0x33ff"}
    reader_code = "0x73" + RECIPIENT.hex() + "31600155"
    alloc["0x" + BALANCE_READER.hex()] = {"balance": "0x0", "code": reader_code}
    if fork == "dao":  # something for the DAO fork block to drain into the refund contract
        for index, drained in enumerate(dao_drain_list[:3]):
            alloc[drained] = {"balance": hex(10**18 * (index + 1))}
    return {
        "config": FORKS[fork],
        "difficulty": "0x20000",
        "gasLimit": hex(8_000_000),
        "extraData": "0x",
        "alloc": alloc,
    }


BLOCKS: list[list[Call]] = [
    [
        Call(0, COUNTER),
        Call(1, COUNTER),  # reads the slot tx 0 wrote: re-executed
        Call(2, RECIPIENT, 1000),
        Call(3, RECIPIENT, 500),  # a shared recipient: a commutative credit
        Call(0, FRESH),  # zero value to no account: Frontier creates an empty one
        Call(1, EMPTY),  # zero value to an empty account: Spurious Dragon deletes it
        Call(2, PER_CALLER),
        Call(3, b"", data=DEPLOY_CODE),
    ],
    [
        Call(0, PER_CALLER),
        Call(1, PER_CALLER),
        Call(2, dao_refund_contract, 7),
        Call(3, FRESH, 3),
        Call(0, COUNTER),
        Call(1, RECIPIENT, 1),
    ],
    [Call(3, COUNTER), Call(2, PER_CALLER), Call(1, FRESH), Call(0, RECIPIENT, 2)],
]


def build_chain(
    fork: str, planned: list[list[Call]] | None = None
) -> tuple[KhipuChain, list[BlockAPI]]:
    """The chain of `planned` blocks (BLOCKS by default) built by py-evm on `fork`, each block
    persisted."""
    chain, rules = memory_chain(genesis(fork))
    nonces = [0] * len(SENDER_KEYS)
    parent = chain.chaindb.get_canonical_head()
    blocks = []
    for calls in BLOCKS if planned is None else planned:
        number = parent.block_number + 1
        vm_class = rules.vm_class(number, parent.timestamp + 15, 0)
        extra = b"dao-hard-fork" if fork == "dao" and number == DAO_FORK_BLOCK else b""
        template = vm_class.create_header_from_parent(
            parent, timestamp=parent.timestamp + 15, gas_limit=parent.gas_limit,
            coinbase=b"\xcb" * 20, extra_data=extra,
        )  # fmt: skip
        transactions: list[SignedTransactionAPI] = []
        builder = vm_class.get_transaction_builder()
        for call in calls:
            unsigned = builder.create_unsigned_transaction(
                nonce=nonces[call.sender], gas_price=GAS_PRICE, gas=call.gas,
                to=Address(call.to), value=call.value, data=call.data,
            )  # fmt: skip
            nonces[call.sender] += 1
            transactions.append(unsigned.as_signed_transaction(SENDER_KEYS[call.sender]))
        proposal = vm_class.get_block_class()(template, transactions=transactions, uncles=[])
        vm = vm_class(
            header=template,
            chaindb=chain.chaindb,
            chain_context=ChainContext(rules.config.chain_id),
            consensus_context=chain.consensus_context,
        )
        block = vm.import_block(proposal).block
        chain.chaindb.persist_block(block)
        blocks.append(block)
        parent = block.header
    return chain, blocks


@pytest.fixture(scope="module", params=list(FORKS))
def built(request: pytest.FixtureRequest) -> tuple[str, KhipuChain, list[BlockAPI]]:
    chain, blocks = build_chain(request.param)
    return request.param, chain, blocks


def test_the_forks_are_pre_byzantium_and_handled(
    built: tuple[str, KhipuChain, list[BlockAPI]],
) -> None:
    _fork, chain, blocks = built
    vm_class = chain.rules.vm_class_for_header(blocks[0].header)
    assert receipts_carry_state_root(vm_class)
    assert supports_parallel(vm_class)
    receipts = blocks[0].get_receipts(chain.chaindb)
    roots = [receipt.state_root for receipt in receipts]
    assert len(set(roots)) == len(roots)  # every transaction changed the state
    assert PLACEHOLDER_STATE_ROOT not in roots


@pytest.mark.parametrize("workers", [0, 1, 2])
def test_parallel_equals_pyevm_with_intermediate_roots(
    built: tuple[str, KhipuChain, list[BlockAPI]], workers: int
) -> None:
    fork, chain, blocks = built
    for block in blocks:
        execution = execute_block_parallel(chain, block, workers=workers, min_transactions=1)
        assert execution.mode == "parallel", (fork, block.number)
        assert execution.block.header == block.header, (fork, block.number)
        ours = execution.block.get_receipts(chain.chaindb)
        theirs = block.get_receipts(chain.chaindb)
        assert [r.state_root for r in ours] == [r.state_root for r in theirs]
        assert [r.gas_used for r in ours] == [r.gas_used for r in theirs]
        assert execution.reexecuted < len(block.transactions)


def test_intermediate_roots_of_committed_and_re_executed_transactions(
    built: tuple[str, KhipuChain, list[BlockAPI]],
) -> None:
    """Every transaction alone on the parent state (no chains): the hot counter's later callers
    are re-executed (py-evm's root) between ones committed as they ran (root patched in)."""
    fork, chain, blocks = built
    reexecuted = 0
    for block in blocks:
        alone = [[index] for index in range(len(block.transactions))]
        execution = execute_block_in_shares(chain, block, alone)
        assert execution.block.header == block.header, (fork, block.number)
        ours = execution.block.get_receipts(chain.chaindb)
        theirs = block.get_receipts(chain.chaindb)
        assert [r.state_root for r in ours] == [r.state_root for r in theirs]
        assert execution.reexecuted < len(block.transactions)
        reexecuted += execution.reexecuted
    assert reexecuted >= 1  # the hot counter slot


def test_batched_equals_pyevm(built: tuple[str, KhipuChain, list[BlockAPI]]) -> None:
    fork, chain, blocks = built
    for block in blocks:
        execution = execute_block_batched(chain, block)
        assert execution.mode == "batched", (fork, block.number)
        assert execution.block.header == block.header, (fork, block.number)


def test_empty_account_semantics_follow_the_fork(
    built: tuple[str, KhipuChain, list[BlockAPI]],
) -> None:
    fork, chain, blocks = built
    state = chain.get_vm(blocks[0].header).state
    spurious_dragon = fork == "spurious-dragon"
    assert state.account_exists(Address(FRESH)) is not spurious_dragon
    assert state.account_exists(Address(EMPTY)) is not spurious_dragon


def test_dao_block_drains_into_the_refund_contract() -> None:
    chain, blocks = build_chain("dao")
    fork_block = blocks[DAO_FORK_BLOCK - 1]
    state = chain.get_vm(fork_block.header).state
    drained = sum(10**18 * (index + 1) for index in range(3))
    assert state.get_balance(Address(decode_hex(dao_drain_list[0]))) == 0
    assert state.get_balance(Address(dao_refund_contract)) == drained + 7
    execution = execute_block_parallel(chain, fork_block, workers=1, min_transactions=1)
    assert (execution.mode, execution.block.header) == ("parallel", fork_block.header)


def test_pre_byzantium_can_be_forced_serial(
    built: tuple[str, KhipuChain, list[BlockAPI]], monkeypatch: pytest.MonkeyPatch
) -> None:
    _fork, chain, blocks = built
    monkeypatch.setattr(executor_module, "PARALLEL_PRE_BYZANTIUM", False)
    execution = execute_block_parallel(chain, blocks[0], workers=1, min_transactions=1)
    assert execution.mode == "serial"
    assert execution.block.header == execute_block_serial(chain, blocks[0]).header


# Differential: random blocks of these calls on every fork, parallel (speculated in this
# process, then merged) against py-evm; 12 fixed examples, 200 random ones with
# KHIPU_CONFORMANCE=full. The devnet contention generator builds post-merge
# chains only (PUSH0, CREATE2, blob and set-code transactions), so the pre-Byzantium rule sets
# get this generator of their own.
TARGETS = (COUNTER, PER_CALLER, EMPTY, FRESH, RECIPIENT, DESTRUCTIBLE, BALANCE_READER,
           dao_refund_contract, b"")  # fmt: skip
calls = st.builds(
    lambda sender, target, value: Call(
        sender, TARGETS[target], value, DEPLOY_CODE if TARGETS[target] == b"" else b""
    ),
    st.integers(0, len(SENDER_KEYS) - 1),
    st.integers(0, len(TARGETS) - 1),
    st.sampled_from([0, 0, 1, 10**15]),
)


@settings(max_examples=200 if conformance_full() else 12, deadline=None,
          derandomize=not conformance_full(),
          suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
@given(
    fork=st.sampled_from(list(FORKS)),
    planned=st.lists(st.lists(calls, min_size=1, max_size=8), min_size=1, max_size=3),
)
def test_random_blocks_parallel_equals_pyevm(fork: str, planned: list[list[Call]]) -> None:
    chain, blocks = build_chain(fork, planned)
    for block in blocks:
        execution = execute_block_parallel(chain, block, workers=0, min_transactions=1)
        assert execution.mode == "parallel", (fork, block.number)
        assert execution.block.header == block.header, (fork, block.number)


def missing_nodes(store: dict[bytes, bytes], state_root: bytes) -> set[bytes]:
    """Hashes of the account-trie and storage-trie nodes under `state_root` not in `store`."""
    missing: set[bytes] = set()
    seen: set[bytes] = set()
    pending = [(state_root, True)]  # (node hash, in the account trie)
    while pending:
        node_hash, accounts = pending.pop()
        if node_hash in seen or node_hash == BLANK_ROOT_HASH:
            continue
        if node_hash not in store:
            missing.add(node_hash)
            continue
        seen.add(node_hash)
        pending.extend((child, accounts) for child in child_hashes(store[node_hash]))
        if accounts:
            roots = storage_roots(rlp.decode(store[node_hash]))
            pending.extend((root, False) for root in roots)
    return missing


def storage_roots(node: Any) -> list[bytes]:
    """The storage roots of the accounts in the leaves of an account-trie node."""
    if len(node) == 17:
        return [
            root for item in node[:16] if isinstance(item, list) for root in storage_roots(item)
        ]
    if len(node) == 2 and node[0][0] >> 4 in (2, 3):
        return [rlp.decode(node[1])[2]]
    if len(node) == 2 and isinstance(node[1], list):
        return storage_roots(node[1])
    return []


@pytest.mark.parametrize("fork", ["frontier", "spurious-dragon"])
def test_intermediate_roots_store_the_post_state_and_drop_replaced_nodes(fork: str) -> None:
    # Block 2 on a parent that has never seen its nodes: executed serially on one copy of
    # the store, in parallel (per-transaction roots batched, replaced nodes dropped) on another.
    _chain, blocks = build_chain(fork)
    parent_chain, _ = build_chain(fork, BLOCKS[:1])
    stores = {}
    for name, execute in [
        ("serial", lambda chain, block: execute_block_serial(chain, block)),
        (
            "parallel",
            lambda c, b: execute_block_parallel(c, b, workers=0, min_transactions=1).block,
        ),
    ]:
        parent = dict(parent_chain.chaindb.db.wrapped_db.kv_store)
        db = AtomicDB()
        db.wrapped_db.kv_store.update(parent)
        result = execute(open_chain(parent_chain.rules, db), blocks[1])
        assert result.header == blocks[1].header
        stores[name] = (parent, db.wrapped_db.kv_store)
    for name, (_parent, store) in stores.items():
        assert not missing_nodes(store, blocks[1].header.state_root), name
    serial_new = stores["serial"][1].keys() - stores["serial"][0].keys()
    parallel_new = stores["parallel"][1].keys() - stores["parallel"][0].keys()
    # py-evm keeps a few replaced nodes; nothing the per-transaction roots made is left over
    assert len(parallel_new) <= len(serial_new) + 1
