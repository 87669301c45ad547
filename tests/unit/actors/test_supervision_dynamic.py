"""Children added at run time, like PeerManager's actor per connected peer."""

from __future__ import annotations

import pytest
from actors_demo import Boom, Counter, EventLog, Store, fast_strategy

from khipu.actors import (
    ActorUnavailable,
    ChildSpec,
    ChildState,
    RequestRejected,
    RestartPolicy,
    supervisor_spec,
)
from khipu.actors.health import HealthBoard, HealthConfig, HealthMonitor
from khipu.actors.messages import ChildRestarted, ChildStopped


def peer_spec(peer_id: str, store: Store) -> ChildSpec:
    return ChildSpec(
        peer_id, lambda ctx: Counter.start(ctx, store, peer_id), restart=RestartPolicy.TEMPORARY
    )


def test_peers_come_and_go_without_touching_their_siblings(start_tree) -> None:
    store, events, board = Store(), EventLog(), HealthBoard()
    config = HealthConfig(heartbeat_interval=60.0)
    tree = start_tree(
        [
            supervisor_spec("PeerManager", [], fast_strategy(), watch_interval=0.05),
            ChildSpec("HealthMonitor", lambda ctx: HealthMonitor.start(ctx, board, config)),
        ],
        fast_strategy(),
        listeners=[events],
    )
    manager = tree.handle("PeerManager")
    assert (
        manager.call("add_child", peer_spec("peer-a1", store))
        == "NodeSupervisor/PeerManager/peer-a1"
    )
    manager.call("add_child", peer_spec("peer-b2", store))
    with pytest.raises(RequestRejected, match="already exists"):
        manager.call("add_child", peer_spec("peer-a1", store))
    tree.handle("PeerManager/peer-a1").call("increment")
    tree.handle("PeerManager/peer-b2").call("increment")
    tree.handle("HealthMonitor").call("check_tree")
    assert board.get("PeerManager/peer-a1") is not None

    with pytest.raises(Boom):  # a misbehaving peer is dropped, not restarted
        tree.handle("PeerManager/peer-a1").call("fail", "bad header")
    events.wait_for(lambda e: isinstance(e, ChildStopped) and e.path.endswith("peer-a1"))
    with pytest.raises(ActorUnavailable):
        tree.handle("PeerManager/peer-a1", timeout=0.1).call("get")
    assert tree.handle("PeerManager/peer-b2").call("memory") == 1  # sibling untouched

    manager.call("remove_child", "peer-b2", "disconnected")
    stopped = events.wait_for(lambda e: isinstance(e, ChildStopped) and e.path.endswith("peer-b2"))
    assert stopped.reason == "disconnected"
    subtree = tree.table.slot("PeerManager").subtree
    assert subtree is not None and subtree.slots == []
    tree.handle("HealthMonitor").call("check_tree")
    assert board.get("PeerManager/peer-a1") is None  # left the tree, left the board
    with pytest.raises(RequestRejected, match="no child 'peer-zz'"):
        manager.call("remove_child", "peer-zz")
    assert tree.table.slot("PeerManager").incarnation == 1  # rejections are no failures
    assert not events.of(ChildRestarted)


def test_a_stopped_name_can_be_added_again(start_tree) -> None:
    store = Store()
    spec = ChildSpec(
        "peer-c3", lambda ctx: Counter.start(ctx, store, "c3"), restart=RestartPolicy.TRANSIENT
    )
    tree = start_tree([supervisor_spec("PeerManager", [], fast_strategy())], fast_strategy())
    manager = tree.handle("PeerManager")
    manager.call("add_child", spec)
    tree.handle("PeerManager/peer-c3").call("increment")
    manager.call("remove_child", "peer-c3")
    manager.call("add_child", spec)
    slot = tree.table.find("PeerManager/peer-c3")
    assert slot.state is ChildState.RUNNING and slot.incarnation == 1
    assert tree.handle("PeerManager/peer-c3").call("get") == 1  # state from the store


def test_added_children_are_started_again_when_their_supervisor_restarts(start_tree) -> None:
    store, events = Store(), EventLog()
    tree = start_tree(
        [supervisor_spec("PeerManager", [], fast_strategy())], fast_strategy(), listeners=[events]
    )
    manager = tree.handle("PeerManager")
    lasting = ChildSpec("syncer", lambda ctx: Counter.start(ctx, store, "syncer"))
    manager.call("add_child", lasting)
    manager.call("add_child", peer_spec("peer-d4", store))  # temporary: not brought back
    tree.handle("PeerManager/syncer").call("increment")
    with pytest.raises(AttributeError):
        manager.call("no_such_method")  # a bug in the supervisor: its parent restarts it
    events.wait_for(lambda e: isinstance(e, ChildRestarted) and e.path.endswith("PeerManager"))
    assert tree.handle("PeerManager/syncer", timeout=5.0).call("get") == 1  # rebuilt from store
    subtree = tree.table.slot("PeerManager").subtree
    assert subtree is not None
    assert [slot.name for slot in subtree.slots] == ["syncer"]
    manager.call("remove_child", "syncer")
    with pytest.raises(AttributeError):
        manager.call("no_such_method")
    events.wait_for(
        lambda e: (
            isinstance(e, ChildRestarted) and e.path.endswith("PeerManager") and e.restarts == 2
        )
    )
    subtree = tree.table.slot("PeerManager").subtree
    assert subtree is not None and subtree.slots == []  # removed for good stays removed
