"""Differential test: random blocks of contending transactions, serial against parallel.

Hypothesis draws a fork (Shanghai, Cancun or Prague), whether the fee recipient is also a
sender, and one to three blocks of actions (see tests/conformance/contention_blocks.py): shared
senders with nonce chains, shared recipients, a hot counter slot, contracts deployed and called
in one block, CREATE2 with collisions, SELFDESTRUCT (of a genesis contract, of a child created
earlier, of one created in the same transaction, then value sent to it or re-created), REVERT
and out-of-gas, value to and BALANCE of the coinbase, inner calls short of funds, precompile
calls, access lists, EIP-1559, access-list, legacy, blob and (Prague) set-code transactions,
senders funded in the block, withdrawal and consolidation requests to the system contracts.

Each block is built by py-evm's serial `import_block`, then executed by the parallel executor
with 1, 2 and 4 workers on the same parent, and once more with speculation shares drawn at
random (each share a chain on one state, see `execute_block_in_shares`): header, receipts and
post-state must be identical and the executor must not have fallen back to serial execution.

By default a fixed (derandomized) set of DEFAULT_EXAMPLES examples; KHIPU_CONFORMANCE=full draws
FULL_EXAMPLES random ones. A CREATE2 whose child self-destructs in the same call (py-evm refused
the speculation's revert across it; the worker now starts from a fresh parent state) is among
the random actions and has its own scenario and test.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import pytest
from eth_typing import Address
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from khipu.devnet import contention
from khipu.devnet.builder import BuiltBlock
from khipu.devnet.workload import TxKind
from khipu.execution import merge as merge_module
from khipu.execution.pool import TaskError
from tests.conformance import parallel_proof
from tests.conformance.contention_blocks import (
    ACTION_KINDS,
    FORKS,
    SENDERS,
    Action,
    ContentionChain,
)
from tests.conformance.parallel_proof import (
    WORKER_COUNTS,
    ParallelMismatch,
    ProofStats,
    check_parallel,
    check_shares,
    shares_from,
)
from tests.conftest import conformance_full

pytestmark = [
    pytest.mark.conformance,
    pytest.mark.filterwarnings("ignore:SELFDESTRUCT opcode:DeprecationWarning"),
]

# True would leave the factory's create-and-destroy in one call out of the random scenarios
# (for a known bug in that area, with KNOWN_BUGS naming the scenarios that fail).
AVOID_KNOWN_BUGS = False

DEFAULT_EXAMPLES = 12
# KHIPU_CONFORMANCE=full: 300 random examples (about 15-25 minutes on a loaded 2-core machine,
# hence the longer timeout), or as many as KHIPU_DIFFERENTIAL_EXAMPLES says.
FULL_EXAMPLES = int(os.environ.get("KHIPU_DIFFERENTIAL_EXAMPLES", "300"))
FULL_TIMEOUT = 7200
TARGETS = 32  # `Action.target` range: wraps around recipients, slots, salts, precompiles

values = st.one_of(
    st.sampled_from([0, 1, 10**15, 10**18]),
    st.integers(min_value=0, max_value=10**18),
)
access_lists = st.lists(
    st.tuples(st.integers(0, TARGETS - 1), st.lists(st.integers(0, 3), max_size=2).map(tuple)),
    max_size=2,
).map(tuple)


def _without_known_bugs(action: Action) -> Action:
    if AVOID_KNOWN_BUGS and action.kind == "create2" and action.flag:
        return replace(action, flag=False)
    return action


actions = st.builds(
    Action,
    kind=st.sampled_from(ACTION_KINDS),
    sender=st.integers(0, SENDERS - 1),
    target=st.integers(0, TARGETS - 1),
    value=values,
    flag=st.booleans(),
    envelope=st.sampled_from(list(TxKind)),
    tip_gwei=st.integers(0, 3),
    access_list=access_lists,
    data=st.binary(max_size=96),
).map(_without_known_bugs)


@dataclass(frozen=True)
class Scenario:
    """A fork, who the fee recipient is, the actions of each block, and the speculation share
    of each transaction for the check with explicit shares (`shares_from`; empty: alone)."""

    fork: str
    coinbase_is_sender: bool
    blocks: tuple[tuple[Action, ...], ...]
    share_of: tuple[int, ...] = (0, 1)


scenarios = st.builds(
    Scenario,
    fork=st.sampled_from(FORKS),
    coinbase_is_sender=st.booleans(),
    blocks=st.lists(
        st.lists(actions, min_size=1, max_size=10).map(tuple), min_size=1, max_size=3
    ).map(tuple),
    share_of=st.lists(st.integers(0, 2), max_size=12).map(tuple),
)

PROFILE = settings(
    max_examples=FULL_EXAMPLES if conformance_full() else DEFAULT_EXAMPLES,
    derandomize=not conformance_full(),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def run_scenario(scenario: Scenario, report: Callable[[str], None] = print) -> int:
    """Build the scenario's blocks and check each with every worker count; returns how many
    transactions the blocks carried. Raises ParallelMismatch on any difference or fallback.
    `report` receives a line per block (hypothesis' `note` inside a hypothesis test)."""
    chain = ContentionChain(scenario.fork, scenario.coinbase_is_sender)
    transactions = 0
    for actions_of_block in scenario.blocks:
        built = chain.build(list(actions_of_block))
        block = built.block
        transactions += len(block.transactions)
        statuses = [receipt.state_root.hex() for receipt in built.receipts]
        report(f"block #{block.number}: {len(block.transactions)} txs, statuses {statuses}")
        for workers in WORKER_COUNTS:
            check_parallel(chain.builder.chain, block, block, workers, chain.addresses())
        shares = shares_from(scenario.share_of, len(block.transactions))
        check_shares(chain.builder.chain, block, block, shares, chain.addresses())
    return transactions


@pytest.mark.timeout(FULL_TIMEOUT if conformance_full() else 900)
@PROFILE
@given(scenario=scenarios)
def test_parallel_equals_serial_on_random_contention(scenario: Scenario) -> None:
    assert run_scenario(scenario, note) > 0


# Hand-picked scenarios, each a case the generator may reach only rarely; they run every time.
def _action(
    kind: str, sender: int = 0, target: int = 0, value: int = 0, flag: bool = False, **extra: Any
) -> Action:
    return Action(kind, sender, target, value, flag, **extra)


def _blocks(fork: str, *blocks: list[Action], coinbase_is_sender: bool = False) -> Scenario:
    return Scenario(fork, coinbase_is_sender, tuple(tuple(block) for block in blocks))


CHILD_SALT = 1
# Targets in ContentionChain.recipients(): an account, FRESH[0], the coinbase, contracts, a child
ACCOUNT_1, FRESH_0, COINBASE, DESTRUCTIBLE, FORWARDER, CHILD = 1, 3, 6, 8, 9, 10 + CHILD_SALT
IDENTITY = 15  # the precompile 0x04
EMPTY_REQUESTS_HASH = hashlib.sha256(b"").digest()

EXPLICIT = {
    # create and destroy a child in one transaction, send it value, re-create it, collide
    "create2-destroy-recreate": _blocks("prague", [
        _action("create2", 0, CHILD_SALT, 5, True),
        _action("transfer", 1, CHILD, 7),
        _action("create2", 2, CHILD_SALT),
        _action("create2", 3, CHILD_SALT),
        _action("destroy_child", 4, CHILD_SALT, FRESH_0),
    ]),
    # pre-Cancun, in separate transactions: create a child, destroy it (deleted, storage
    # wiped), credit the deleted address, re-create it at the same address, collide
    "shanghai-create2-destroy-recreate": _blocks("shanghai", [
        _action("create2", 0, CHILD_SALT, 5),
        _action("destroy_child", 1, CHILD_SALT, FRESH_0),
        _action("transfer", 2, CHILD, 7),
        _action("create2", 3, CHILD_SALT, 1),
        _action("create2", 4, CHILD_SALT),
        _action("read", 5, CHILD),
    ]),
    # pre-Cancun: SELFDESTRUCT deletes the genesis contract and wipes its storage, then value
    # arrives at the deleted address, a reader looks at it, a call finds no code
    "shanghai-destroy-then-credit": _blocks("shanghai", [
        _action("destroy", 0, FRESH_0),
        _action("transfer", 1, DESTRUCTIBLE, 9),
        _action("read", 2, DESTRUCTIBLE),
        _action("destroy", 3, DESTRUCTIBLE),
    ]),
    # the fee recipient sends transactions, receives value and has its balance read
    "coinbase-is-sender": _blocks("cancun", [
        _action("transfer", 1, COINBASE, 10**18),
        _action("read", 2, COINBASE),
        _action("transfer", 0, 0, 1, tip_gwei=0),
        _action("count", 3, 0),
        _action("transfer", 0, ACCOUNT_1, 2),
    ], coinbase_is_sender=True),
    # funded in the block, then spending; the forwarder short of funds, then funded
    "funded-senders-and-forward": _blocks("prague", [
        _action("forward", 0, FRESH_0, 10, True),
        _action("fund_and_spend", 1, 0, 12345),
        _action("transfer", 2, FORWARDER, 10**18),
        _action("forward", 3, FRESH_0, 10, True),
        _action("fund_and_spend", 4, 0, 777),
    ]),
    # deploy, then call the deployed contracts in the same block and the next
    "deploy-and-call": _blocks("prague", [
        _action("deploy", 0, 0),
        _action("call_created", 1, 0),
        _action("deploy", 0, 1),
        _action("deploy", 2, 2),
        _action("call_created", 3, 1),
    ], [
        _action("call_created", 4, 0),
        _action("call_created", 5, 1),
    ]),
    # reverts, out-of-gas and precompiles around a hot counter
    # account 1 delegates to the counter, is called, sends a transaction itself, clears its
    # delegation; a funded key delegates to the forwarder; requests to the system contracts
    "delegations-and-requests": _blocks("prague", [
        _action("delegate", 0, ACCOUNT_1, 0),
        _action("transfer", 2, ACCOUNT_1, 3),
        _action("count", 1, 0),
        _action("delegate", 1, ACCOUNT_1, 2),
        _action("fund_and_spend", 3, 0, 5),
        _action("delegate", 4, 3, 1),
        _action("request", 5, 0, 10**9),
        _action("request", 0, 0, 0, True),
    ]),
    # blob transactions from a nonce chain, one paying the coinbase whose balance is read
    "blobs": _blocks("cancun", [
        _action("blob", 0, FRESH_0, 1),
        _action("blob", 0, COINBASE, 10**9),
        _action("read", 1, COINBASE),
        _action("blob", 2, ACCOUNT_1, 0, data=b"x"),
    ]),
    "reverts-and-precompiles": _blocks("prague", [
        _action("count", 0, 0),
        _action("revert", 1),
        _action("count", 2, 0, flag=True),
        _action("burn", 3),
        _action("precompile", 4, 1, data=bytes(range(64))),
        _action("precompile", 5, 3, data=b"abc"),
        _action("count", 0, 0),
        _action("transfer", 1, IDENTITY, 1),
    ]),
}  # fmt: skip

KNOWN_BUGS: dict[str, str] = {}  # scenario -> bug (strict xfail); none known


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(name, marks=pytest.mark.xfail(strict=True, raises=TaskError, reason=bug))
        if (bug := KNOWN_BUGS.get(name))
        else name
        for name in sorted(EXPLICIT)
    ],
)
def test_parallel_equals_serial_on_explicit_scenario(name: str) -> None:
    assert run_scenario(EXPLICIT[name]) > 0


def test_contract_created_and_destroyed_by_one_call() -> None:
    """The minimal reproducer: one transaction whose call CREATE2s a child that self-destructs
    in the same transaction. Serial execution accepts the block; the speculation crashes."""
    scenario = _blocks("prague", [_action("create2", 0, CHILD_SALT, 0, True)])
    run_scenario(scenario)


def test_contention_contracts_behave() -> None:
    """The scenarios do what they claim: the CREATE2 collision fails and the destroyed child is
    re-created; the forwarder's call short of funds fails, and succeeds once it is funded."""
    chain = ContentionChain("prague", False)
    built = chain.build(list(EXPLICIT["create2-destroy-recreate"].blocks[0]))
    child = Address(contention.child_address(CHILD_SALT))
    assert _logged(built, contention.FACTORY) == [child, child, bytes(20)]
    state = chain.builder.chain.get_vm(built.block.header).state
    assert state.get_code(child) == contention.child_runtime()  # Cancun: not deleted by a call
    assert state.get_storage(child, 0) == 1

    chain = ContentionChain("prague", False)
    built = chain.build(list(EXPLICIT["funded-senders-and-forward"].blocks[0]))
    # short of funds: fails; the plain transfer runs it with empty calldata; funded: succeeds
    success = (1).to_bytes(20, "big")
    assert _logged(built, contention.FORWARDER) == [bytes(20), success, success]
    assert all(receipt.state_root == b"\x01" for receipt in built.receipts)


def _logged(built: BuiltBlock, address: bytes) -> list[bytes]:
    # The low 20 bytes of the data word of each log of `address`, in block order.
    return [log.data[-20:] for r in built.receipts for log in r.logs if log.address == address]


def test_delegation_and_requests_take_effect() -> None:
    """A set-code transaction delegates account 1 to the counter and calls it; a stale
    authorization is skipped; a withdrawal request reaches the block's requests."""
    chain = ContentionChain("prague", False)
    built = chain.build(
        [
            _action("delegate", 0, ACCOUNT_1, 0),  # DELEGATES[0]: the counter
            _action("delegate", 2, 0, 0, True),  # stale nonce for account 0: skipped
            _action("transfer", 3, ACCOUNT_1, 5),  # runs the counter in account 1
            _action("request", 4, 0, 10**9),
        ]
    )
    state = chain.builder.chain.get_vm(built.block.header).state
    account_1 = Address(chain.accounts[1].address)
    assert state.get_code(account_1) == b"\xef\x01\x00" + contention.COUNTER
    assert state.get_storage(account_1, 0) == 2  # incremented by the first and third tx
    assert state.get_code(Address(chain.accounts[0].address)) == b""
    assert getattr(built.block.header, "requests_hash", None) not in (None, EMPTY_REQUESTS_HASH)


def test_blob_transactions_carry_blobs() -> None:
    chain = ContentionChain("cancun", False)
    built = chain.build(list(EXPLICIT["blobs"].blocks[0]))
    assert [tx.type_id for tx in built.block.transactions] == [3, 3, 2, 3]
    # 1 + target % 2 blobs each: FRESH_0 (3) two, COINBASE (6) one, ACCOUNT_1 (1) two
    assert getattr(built.block.header, "blob_gas_used", 0) == 5 * 2**17


def test_the_proof_catches_a_merge_that_ignores_conflicts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With value validation switched off (every speculated transaction commits as it ran) the
    executor's own header check falls back to serial execution, which gives the right block:
    the proof must still fail, on the mode."""
    monkeypatch.setattr(merge_module, "read_values_changed", lambda *args: False)
    monkeypatch.setattr(parallel_proof, "PROOF_STATS", ProofStats())  # keep the summary clean
    with pytest.raises(ParallelMismatch, match="ran as serial-fallback, expected parallel"):
        run_scenario(EXPLICIT["coinbase-is-sender"])
