"""One-for-one supervision: failures restart a fresh incarnation, the rest of the tree goes on."""

from __future__ import annotations

import threading

import pytest
from actors_demo import (
    WAIT,
    Boom,
    Counter,
    EventLog,
    PlainActor,
    Store,
    fast_strategy,
    get_call,
    hang_call,
)

from khipu.actors import (
    ActorDied,
    ActorRestarted,
    ActorUnavailable,
    ChildSpec,
    ChildState,
    Directive,
    RestartPolicy,
    decider_from_map,
)
from khipu.actors.messages import ChildFailed, ChildRestarted, ChildStopped


def counter_spec(name: str, store: Store, **kwargs: object) -> ChildSpec:
    return ChildSpec(name, lambda ctx: Counter.start(ctx, store, name), **kwargs)  # type: ignore[arg-type]


def test_failure_in_ask_restarts_a_fresh_incarnation_from_storage(start_tree) -> None:
    store, events = Store(), EventLog()
    tree = start_tree(
        [counter_spec("Writer", store), counter_spec("Reader", store)],
        fast_strategy(),
        listeners=[events],
    )
    writer, reader = tree.handle("Writer"), tree.handle("Reader")
    assert writer.call("increment") == 1
    assert writer.call("increment") == 2
    reader.call("increment")

    with pytest.raises(Boom, match="asked to fail"):
        writer.call("fail")

    restarted = events.wait_for(lambda e: isinstance(e, ChildRestarted))
    assert restarted.path == "NodeSupervisor/Writer"
    assert restarted.incarnation == 2
    assert writer.call("get") == 2  # rebuilt from the store
    assert writer.call("memory") == 0  # nothing carried over from the dead actor's memory
    slot_w, slot_r = tree.table.slot("Writer"), tree.table.slot("Reader")
    assert (slot_w.restarts, slot_w.incarnation) == (1, 2)
    assert "Boom: asked to fail" in (slot_w.last_error or "")
    assert (slot_r.restarts, slot_r.incarnation) == (0, 1)
    assert reader.call("memory") == 1  # the sibling kept its memory


def test_failure_in_tell_restarts_the_child(start_tree) -> None:
    store, events = Store(), EventLog()
    tree = start_tree([counter_spec("Writer", store)], fast_strategy(), listeners=[events])
    handle = tree.handle("Writer")
    handle.call("increment")
    handle.tell("fail")
    events.wait_for(lambda e: isinstance(e, ChildRestarted))
    assert handle.call("get") == 1
    failed = events.of(ChildFailed)[0]
    assert isinstance(failed.error, Boom) and failed.directive is Directive.RESTART


def test_resume_keeps_the_actor_and_its_memory(start_tree) -> None:
    store, events = Store(), EventLog()
    decider = decider_from_map({Boom: Directive.RESUME})
    tree = start_tree(
        [counter_spec("Writer", store)], fast_strategy(decider=decider), listeners=[events]
    )
    handle = tree.handle("Writer")
    handle.call("increment")
    with pytest.raises(Boom):
        handle.call("fail")
    assert handle.call("memory") == 1
    assert tree.table.slot("Writer").incarnation == 1
    assert events.wait_for(lambda e: isinstance(e, ChildFailed)).directive is Directive.RESUME
    assert not events.of(ChildRestarted)


def test_stop_directive_stops_only_that_child(start_tree) -> None:
    store, events = Store(), EventLog()
    decider = decider_from_map({Boom: Directive.STOP})
    tree = start_tree(
        [counter_spec("Writer", store), counter_spec("Reader", store)],
        fast_strategy(decider=decider),
        listeners=[events],
    )
    with pytest.raises(Boom):
        tree.handle("Writer").call("fail")
    events.wait_for(lambda e: isinstance(e, ChildStopped))
    assert tree.table.slot("Writer").state is ChildState.STOPPED
    with pytest.raises(ActorUnavailable, match="Writer"):
        tree.handle("Writer", timeout=0.5).call("get")
    assert tree.handle("Reader").call("increment") == 1


def test_asks_waiting_behind_a_failure_get_actor_restarted_or_are_retried(start_tree) -> None:
    store, events = Store(), EventLog()
    tree = start_tree([counter_spec("Writer", store)], fast_strategy(), listeners=[events])
    handle = tree.handle("Writer")
    handle.call("increment")
    release = threading.Event()
    ref = tree.table.slot("Writer").runtime.ref  # type: ignore[union-attr]
    ref.ask(hang_call(release), block=False)
    ref.tell("fail")  # handled after the hang, kills the incarnation
    results: dict[str, object] = {}

    def ask(key: str, retry: bool) -> None:
        try:
            results[key] = handle.ask(get_call(), retry=retry)
        except Exception as error:  # recorded for the assertions below
            results[key] = error

    threads = [threading.Thread(target=ask, args=(k, k == "retried")) for k in ("plain", "retried")]
    for thread in threads:
        thread.start()
    while ref.actor_inbox.qsize() < 3:  # type: ignore[attr-defined]
        threading.Event().wait(0.005)
    release.set()
    for thread in threads:
        thread.join(WAIT)
    assert isinstance(results["plain"], ActorRestarted)
    assert results["plain"].incarnation == 1  # type: ignore[union-attr]
    assert results["retried"] == 1  # answered by incarnation 2, which read the store


def test_tells_left_in_a_dead_mailbox_are_redelivered_when_allowed(start_tree) -> None:
    store, events = Store(), EventLog()
    tree = start_tree(
        [counter_spec("Writer", store, redeliver=True)], fast_strategy(), listeners=[events]
    )
    handle = tree.handle("Writer")
    release = threading.Event()
    ref = tree.table.slot("Writer").runtime.ref  # type: ignore[union-attr]
    ref.ask(hang_call(release), block=False)
    ref.tell("fail")
    ref.tell(("block", 7))
    ref.tell(("block", 8))
    release.set()
    events.wait_for(lambda e: isinstance(e, ChildRestarted))
    assert handle.call("seen") == [("block", 7), ("block", 8)]


def test_a_dead_plain_pykka_actor_is_found_and_restarted(start_tree) -> None:
    events = EventLog()
    tree = start_tree(
        [ChildSpec("Plain", lambda ctx: PlainActor.start())], fast_strategy(), listeners=[events]
    )
    handle = tree.handle("Plain")
    assert handle.ask("ping") == "pong"
    handle.tell("explode")  # Pykka stops it silently; only its dead ref tells
    failed = events.wait_for(lambda e: isinstance(e, ChildFailed))
    assert isinstance(failed.error, ActorDied)
    events.wait_for(lambda e: isinstance(e, ChildRestarted))
    assert handle.ask("ping") == "pong"


@pytest.mark.parametrize(
    ("policy", "restarted"),
    [
        (RestartPolicy.PERMANENT, True),
        (RestartPolicy.TRANSIENT, False),
        (RestartPolicy.TEMPORARY, False),
    ],
)
def test_restart_policy_decides_after_a_normal_stop(start_tree, policy, restarted) -> None:
    store, events = Store(), EventLog()
    tree = start_tree(
        [counter_spec("Writer", store, restart=policy)], fast_strategy(), listeners=[events]
    )
    tree.table.slot("Writer").runtime.ref.stop()  # type: ignore[union-attr]
    if restarted:
        events.wait_for(lambda e: isinstance(e, ChildRestarted))
        assert tree.handle("Writer").call("get") == 0
    else:
        stopped = events.wait_for(lambda e: isinstance(e, ChildStopped))
        assert stopped.reason == "normal exit"
        if policy is RestartPolicy.TEMPORARY:  # forgotten once it ends
            assert [slot.name for slot in tree.table.slots] == []
        else:
            assert tree.table.slot("Writer").state is ChildState.STOPPED


def test_temporary_child_is_not_restarted_after_a_failure(start_tree) -> None:
    store, events = Store(), EventLog()
    tree = start_tree(
        [counter_spec("Writer", store, restart=RestartPolicy.TEMPORARY)],
        fast_strategy(),
        listeners=[events],
    )
    with pytest.raises(Boom):
        tree.handle("Writer").call("fail")
    events.wait_for(lambda e: isinstance(e, ChildStopped))
    assert not events.of(ChildRestarted)


def test_shutdown_stops_children_in_reverse_start_order_and_refuses_work(start_tree) -> None:
    store, events = Store(), EventLog()
    names = ["StorageWriter", "ExecutionSupervisor", "RpcServer"]
    tree = start_tree([counter_spec(n, store) for n in names], fast_strategy(), listeners=[events])
    handle = tree.handle("RpcServer")
    handle.call("increment")
    outcome = tree.shutdown("test shutdown")
    assert outcome.clean and outcome.reason == "test shutdown"
    stopped = [e.path.split("/")[-1] for e in events.of(ChildStopped)]
    assert stopped == list(reversed(names))
    with pytest.raises(ActorUnavailable, match="shutting down"):
        handle.call("get")


def test_an_ask_right_after_a_failure_waits_for_the_next_incarnation(start_tree) -> None:
    store, events = Store(), EventLog()
    tree = start_tree([counter_spec("Writer", store)], fast_strategy(), listeners=[events])
    handle = tree.handle("Writer")
    handle.call("increment")
    with pytest.raises(Boom):
        handle.call("fail")
    # Never sent to the dead incarnation, so no retry is needed and no ActorRestarted is raised.
    assert handle.call("get") == 1
    assert tree.table.slot("Writer").incarnation == 2


def test_a_tell_right_after_a_failure_reaches_the_next_incarnation(start_tree) -> None:
    store, events = Store(), EventLog()
    tree = start_tree([counter_spec("Writer", store)], fast_strategy(), listeners=[events])
    handle = tree.handle("Writer")
    with pytest.raises(Boom):
        handle.call("fail")
    handle.tell(("block", 1))  # the dead incarnation refuses it; the handle waits for the next
    assert handle.call("seen") == [("block", 1)]
    assert tree.table.slot("Writer").incarnation == 2


def test_tells_left_in_a_dead_mailbox_are_reported_when_not_redelivered(start_tree, caplog) -> None:
    store, events = Store(), EventLog()
    tree = start_tree([counter_spec("Writer", store)], fast_strategy(), listeners=[events])
    release = threading.Event()
    ref = tree.table.slot("Writer").runtime.ref  # type: ignore[union-attr]
    ref.ask(hang_call(release), block=False)
    ref.tell("fail")
    ref.tell(("block", 7))
    with caplog.at_level("WARNING", logger="khipu.actors"):
        release.set()
        events.wait_for(lambda e: isinstance(e, ChildRestarted))
    dropped = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert dropped == [
        "NodeSupervisor/Writer: 1 told message(s) to a dead incarnation dropped: tuple"
    ]
    assert tree.handle("Writer").call("seen") == []
