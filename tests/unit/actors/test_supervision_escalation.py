"""All-for-one restarts, crash loops with backoff, escalation to the parent, the root giving up."""

from __future__ import annotations

import threading

import pytest
from actors_demo import Boom, Counter, CrashOnStart, EventLog, Store, fast_strategy

from khipu.actors import (
    ActorUnavailable,
    ChildSpec,
    ChildStartFailed,
    ChildState,
    StrategyKind,
    Supervisor,
    SupervisorGaveUp,
)
from khipu.actors.messages import ChildRestarted, ChildStopped, TreeStopped


def counter_spec(name: str, store: Store) -> ChildSpec:
    return ChildSpec(name, lambda ctx: Counter.start(ctx, store, name))


def test_all_for_one_restarts_every_sibling_in_start_order(start_tree) -> None:
    store, events = Store(), EventLog()
    names = ["Headers", "Bodies", "Receipts"]
    tree = start_tree(
        [counter_spec(n, store) for n in names],
        fast_strategy(kind=StrategyKind.ALL_FOR_ONE),
        listeners=[events],
    )
    for name in names:
        tree.handle(name).call("increment")

    with pytest.raises(Boom):
        tree.handle("Bodies").call("fail")

    restarted = events.wait_count(ChildRestarted, 3)
    assert [e.path.split("/")[-1] for e in restarted] == names
    for name in names:
        slot = tree.table.slot(name)
        assert (slot.incarnation, slot.restarts) == (2, 1)
        assert tree.handle(name).call("memory") == 0  # every sibling is a fresh incarnation
        assert tree.handle(name).call("get") == 1  # and rebuilt its count from the store
    assert tree.table.slot("Bodies").last_error == "Boom: asked to fail"
    assert tree.table.slot("Headers").last_error is None


def test_crash_loop_backs_off_then_the_root_gives_up_and_stops_the_tree(start_tree) -> None:
    store, events = Store(), EventLog()
    tree = start_tree(
        [counter_spec("StorageWriter", store), ChildSpec("Importer", CrashOnStart.start)],
        fast_strategy(max_restarts=4),
        listeners=[events],
    )
    outcome = tree.wait(10)

    assert outcome is not None and not outcome.clean
    assert "gave up on NodeSupervisor/Importer after 4 restart(s)" in outcome.reason
    assert "Boom" in outcome.reason and "cannot start" in outcome.reason
    restarts = [e for e in events.of(ChildRestarted) if e.path.endswith("/Importer")]
    assert len(restarts) == 4
    delays = [e.delay for e in restarts]
    assert delays == sorted(delays) and len(set(delays)) == len(delays)  # strictly increasing
    times = [e.at for e in restarts]
    assert times == sorted(times)
    gave_up = events.of(SupervisorGaveUp)
    assert len(gave_up) == 1 and gave_up[0].child == "NodeSupervisor/Importer"
    # The sibling was stopped cleanly before the root ended, and nothing takes work any more.
    assert any(e.path.endswith("/StorageWriter") for e in events.of(ChildStopped))
    assert tree.table.slot("StorageWriter").state is ChildState.STOPPED
    assert isinstance(events.of(TreeStopped)[0], TreeStopped)
    with pytest.raises(ActorUnavailable):
        tree.handle("StorageWriter", timeout=0.2).call("get")


def test_a_nested_supervisor_escalates_and_its_parent_restarts_the_subtree(start_tree) -> None:
    events = EventLog()
    attempts = {"n": 0}
    lock = threading.Lock()

    def flaky(ctx):  # fails its first three starts, then works
        with lock:
            attempts["n"] += 1
            failing = attempts["n"] <= 3
        if failing:
            raise Boom(f"start attempt {attempts['n']}")
        return Counter.start(ctx, Store(), "fast-sync")

    sync = ChildSpec(
        "SyncSupervisor",
        lambda ctx: Supervisor.start(
            ctx,
            "SyncSupervisor",
            [ChildSpec("FastSync", flaky)],
            fast_strategy(max_restarts=1),
            watch_interval=0.05,
        ),
    )
    tree = start_tree([sync], fast_strategy(max_restarts=5), listeners=[events])

    fast_sync = tree.handle("SyncSupervisor/FastSync", timeout=5)
    assert fast_sync.call("increment") == 1  # reached through the restarted subtree

    gave_up = events.of(SupervisorGaveUp)
    assert gave_up and gave_up[0].supervisor == "NodeSupervisor/SyncSupervisor"
    assert isinstance(gave_up[0].cause, ChildStartFailed)
    assert tree.table.slot("SyncSupervisor").restarts >= 1
    assert not tree.stopped


def test_escalate_directive_gives_up_at_once(start_tree) -> None:
    from khipu.actors import Directive, decider_from_map

    store, events = Store(), EventLog()
    decider = decider_from_map({Boom: Directive.ESCALATE})
    tree = start_tree(
        [counter_spec("StorageWriter", store)], fast_strategy(decider=decider), listeners=[events]
    )
    with pytest.raises(Boom):
        tree.handle("StorageWriter").call("fail", "store corrupted at segment 3")
    outcome = tree.wait(5)
    assert outcome is not None and not outcome.clean
    assert "after 0 restart(s)" in outcome.reason
    assert "store corrupted at segment 3" in outcome.reason
    assert not events.of(ChildRestarted)


@pytest.mark.parametrize("kind", [StrategyKind.ONE_FOR_ONE, StrategyKind.ALL_FOR_ONE])
def test_a_factory_failing_at_first_start_does_not_strand_later_children(start_tree, kind) -> None:
    store, events = Store(), EventLog()
    failures = {"left": 1}

    def flaky_factory(ctx):
        if failures["left"]:
            failures["left"] -= 1
            raise Boom("datadir locked")
        return Counter.start(ctx, store, "importer")

    tree = start_tree(
        [
            counter_spec("StorageWriter", store),
            ChildSpec("Importer", flaky_factory),
            counter_spec("RpcServer", store),
        ],
        fast_strategy(kind=kind),
        listeners=[events],
    )
    assert tree.handle("Importer").call("increment") == 1
    assert tree.handle("RpcServer").call("increment") == 1
    importer = tree.table.slot("Importer")
    assert (importer.incarnation, importer.restarts) == (2, 1)
    assert "ChildStartFailed" in (importer.last_error or "")
    assert tree.table.slot("RpcServer").incarnation == 1  # started exactly once
    writer_incarnation = 2 if kind is StrategyKind.ALL_FOR_ONE else 1
    assert tree.table.slot("StorageWriter").incarnation == writer_incarnation
