"""Chained speculation with value validation, on contention the share plan makes on purpose.

Each share of a block is speculated as a chain (block order, one state keeping every write);
the merge commits a transaction iff every key it read still holds the pre-value it saw. These
blocks put dependent transactions into the same share or into different ones and check, besides
the result equal to serial execution's, exactly which transactions the merge re-executed: a
later transaction of a chain whose earlier one was re-executed with other values, a value a
chain inherited from a write the merge does not repeat, a key written in another share between
two transactions of one chain, a delegation and its use, the coinbase balance read inside a
chain. (A transaction reading a key it wrote first: tests/unit/execution/test_validation.py;
in these contracts every storage and code write is preceded by a read of the key.)
"""

from __future__ import annotations

import pytest

from khipu.devnet.builder import BuiltBlock
from khipu.execution.executor import BlockExecution
from tests.conformance.contention_blocks import Action, ContentionChain
from tests.conformance.parallel_proof import check_shares
from tests.conformance.test_parallel_differential import EXPLICIT, run_scenario

pytestmark = [
    pytest.mark.conformance,
    pytest.mark.filterwarnings("ignore:SELFDESTRUCT opcode:DeprecationWarning"),
]

# Targets in ContentionChain.recipients()
ACCOUNT_1, FRESH_0, FRESH_1, COINBASE, COUNTER, FORWARDER = 1, 3, 4, 6, 7, 9


def count(sender: int, slot: int) -> Action:
    return Action("count", sender, slot, 0, False)


def build(actions: list[Action], fork: str = "cancun") -> tuple[ContentionChain, BuiltBlock]:
    chain = ContentionChain(fork, False)
    return chain, chain.build(actions)


def run(chain: ContentionChain, built: BuiltBlock, *shares: tuple[int, ...]) -> BlockExecution:
    """The block executed with `shares`, proved equal to serial; its re-executions."""
    return check_shares(chain.builder.chain, built.block, built.block, shares, chain.addresses())


def test_a_chain_whose_early_transaction_is_re_executed_re_executes_the_later_one() -> None:
    # three increments of one counter slot by three senders
    chain, built = build([count(0, 0), count(1, 0), count(2, 0)])
    # 1 saw the slot at 0 (the parent), 2 saw 1's increment: both stale once 0 commits
    assert run(chain, built, (0,), (1, 2)).reexecuted_indices == (1, 2)
    # one chain: every transaction saw exactly what serial execution sees
    assert run(chain, built, (0, 1, 2)).reexecuted_indices == ()
    assert run(chain, built, (0, 1), (2,)).reexecuted_indices == (2,)


def test_a_value_inherited_from_a_write_the_merge_does_not_repeat() -> None:
    """1's inner call (the forwarder paying the counter more than 1 brings: the counter then
    increments slot 0) succeeds on the parent but fails after 0 drained the forwarder; 2 read
    slot 0 as 1 had left it in their chain. In the merge nobody writes that slot: only its
    inherited value tells 2 (which logs the slot) is stale."""
    chain = ContentionChain("cancun", False)
    chain.build([Action("transfer", 3, FORWARDER, 1000, False)])  # the forwarder holds 1000
    drain = Action("forward", 0, FRESH_0, 600, True)  # forwards 1201 of 1000 + 600
    pay = Action("forward", 1, COUNTER, 500, True)  # 1001 of 1000 + 500, or of 399 + 500
    peek = Action("count", 2, 0, 0, True)  # logs slot 0
    built = chain.build([drain, pay, peek])
    assert built.receipts[2].logs[0].data != built.receipts[1].logs[0].data  # sanity: logs
    assert run(chain, built, (0,), (1, 2)).reexecuted_indices == (1, 2)


def test_a_key_written_in_another_share_between_two_of_a_chain() -> None:
    chain, built = build([count(0, 1), count(1, 1), count(2, 1)])
    # 2 saw 0's write (inherited in its chain), but 1 wrote the slot in between
    assert run(chain, built, (0, 2), (1,)).reexecuted_indices == (1, 2)
    # the same plan when 1 increments another slot: 2's inherited value still holds
    chain, built = build([count(0, 1), count(1, 2), count(2, 1)])
    assert run(chain, built, (0, 2), (1,)).reexecuted_indices == ()


def test_a_delegation_and_a_call_of_the_delegated_account() -> None:
    # 0 delegates account 1 to the counter (writes its code and nonce), then calls it (reads
    # that code again); 1 sends value to account 1, which runs the counter in its storage
    delegate = Action("delegate", 0, ACCOUNT_1, 0, False)
    transfer = Action("transfer", 2, ACCOUNT_1, 3, False)
    chain, built = build([delegate, transfer], fork="prague")
    # alone, 0 commits (what it read of account 1 is recorded as the parent had it); 1 ran on
    # the parent (no code at account 1) and is stale
    assert run(chain, built, (0,), (1,)).reexecuted_indices == (1,)
    assert run(chain, built, (0, 1)).reexecuted_indices == ()


def test_the_coinbase_balance_read_inside_a_chain() -> None:
    pay = Action("transfer", 0, FRESH_0, 1, False)
    read = Action("read", 1, COINBASE, 0, False)
    later = Action("transfer", 2, FRESH_1, 1, False)
    chain, built = build([pay, read, later])
    # the reader saw the coinbase credited with 0's fee in its chain: what the merge holds
    assert run(chain, built, (0, 1), (2,)).reexecuted_indices == ()
    # without 0 in its chain it saw the parent's coinbase balance: stale
    assert run(chain, built, (1,), (0, 2)).reexecuted_indices == (1,)


PLANS = {
    "one chain": lambda count: [tuple(range(count))],
    "each alone": lambda count: [(index,) for index in range(count)],
    "alternating": lambda count: [tuple(range(0, count, 2)), tuple(range(1, count, 2))],
    "halves": lambda count: [tuple(range(count // 2)), tuple(range(count // 2, count))],
}


@pytest.mark.parametrize("plan", sorted(PLANS))
@pytest.mark.parametrize("name", sorted(EXPLICIT))
def test_explicit_scenarios_with_share_plans(name: str, plan: str) -> None:
    """Every hand-picked differential scenario (self-destructs, CREATE2 collisions, funded
    senders, delegations, blobs...) proved with a fixed share plan for every block."""
    scenario = EXPLICIT[name]
    chain = ContentionChain(scenario.fork, scenario.coinbase_is_sender)
    for actions in scenario.blocks:
        built = chain.build(list(actions))
        shares = [share for share in PLANS[plan](len(built.block.transactions)) if share]
        check_shares(chain.builder.chain, built.block, built.block, shares, chain.addresses())


def test_run_scenario_checks_the_scenario_share_plan() -> None:
    assert run_scenario(EXPLICIT["coinbase-is-sender"], report=lambda _line: None) == 5
