"""HealthMonitor: heartbeats, the health board and snapshot, health lines, stalled actors."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from actors_demo import WAIT, Boom, Counter, EventLog, Store, fast_strategy, hang_call

from khipu.actors import ActorStalled, ChildSpec
from khipu.actors.health import (
    ActorHealth,
    HealthBoard,
    HealthConfig,
    HealthMonitor,
    format_health_line,
    logfmt_value,
)
from khipu.actors.messages import ChildFailed, ChildRestarted

FIXED_NOW = 1_800_000_000.25  # 2027-01-15T08:00:00.250Z


def monitored_tree(start_tree, store: Store, events: EventLog, **config: Any):
    lines: list[str] = []
    board = HealthBoard(clock=lambda: FIXED_NOW)
    # A long interval: the tests drive check_tree themselves, so nothing depends on timing.
    settings = {
        "heartbeat_interval": 60.0,
        "heartbeat_timeout": 0.2,
        "stall_misses": 2,
        "log_interval": 60.0,
    }
    settings.update(config)
    health_config = HealthConfig(**settings)
    children = [
        ChildSpec("StorageWriter", lambda ctx: Counter.start(ctx, store, "writer")),
        ChildSpec("RpcServer", lambda ctx: Counter.start(ctx, store, "rpc")),
        ChildSpec(
            "HealthMonitor",
            lambda ctx: HealthMonitor.start(ctx, board, health_config, emit=lines.append),
        ),
    ]
    tree = start_tree(children, fast_strategy(), listeners=[events])
    return tree, board, lines


def parse_logfmt(line: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    rest = line
    while rest:
        key, _, rest = rest.partition("=")
        if rest.startswith('"'):
            end = 1
            while rest[end] != '"' or rest[end - 1] == "\\":
                end += 1
            fields[key] = rest[1:end].replace('\\"', '"')
            rest = rest[end + 1 :].lstrip()
        else:
            value, _, rest = rest.partition(" ")
            fields[key] = value
    return fields


def test_heartbeats_fill_the_board_with_work_done_and_restarts(start_tree) -> None:
    store, events = Store(), EventLog()
    tree, board, _ = monitored_tree(start_tree, store, events)
    writer, monitor = tree.handle("StorageWriter"), tree.handle("HealthMonitor")
    for _ in range(3):
        writer.call("increment")
    monitor.call("check_tree")
    health = board.get("StorageWriter")
    assert health is not None
    assert (health.state, health.processed, health.restarts, health.mailbox) == ("running", 3, 0, 0)
    assert health.last_error is None and health.last_heartbeat_at == FIXED_NOW

    with pytest.raises(Boom):
        writer.call("fail", "disk full")
    events.wait_for(lambda e: isinstance(e, ChildRestarted))
    monitor.call("check_tree")
    health = board.get("StorageWriter")
    assert health is not None
    assert (health.restarts, health.incarnation, health.processed) == (1, 2, 0)
    assert health.last_error == "Boom: disk full"
    assert board.get("RpcServer").restarts == 0  # type: ignore[union-attr]


def test_snapshot_is_json_and_lists_every_actor_including_the_monitor(start_tree) -> None:
    tree, board, _ = monitored_tree(start_tree, Store(), EventLog())
    tree.handle("HealthMonitor").call("check_tree")
    snapshot = json.loads(json.dumps(board.health_snapshot()))
    assert snapshot["ts"] == "2027-01-15T08:00:00.250Z"
    names = [a["actor"] for a in snapshot["actors"]]
    assert names == ["StorageWriter", "RpcServer", "HealthMonitor"]  # tree order
    monitor = next(a for a in snapshot["actors"] if a["actor"] == "HealthMonitor")
    assert monitor["state"] == "running" and monitor["kind"] == "actor"


def test_the_first_round_runs_at_start_not_after_an_interval(start_tree) -> None:
    tree, board, lines = monitored_tree(start_tree, Store(), EventLog())
    tree.handle("HealthMonitor").call("log_health")  # queued behind the first round
    assert [h.actor for h in board.all()] == ["StorageWriter", "RpcServer", "HealthMonitor"]
    assert any("actor=StorageWriter" in line for line in lines)


def test_health_lines_in_logfmt_and_json(start_tree) -> None:
    store = Store()
    tree, board, lines = monitored_tree(start_tree, store, EventLog())
    tree.handle("RpcServer").call("increment")
    tree.handle("HealthMonitor").call("check_tree")
    emitted = tree.handle("HealthMonitor").call("log_health")
    assert len(emitted) == 3 and emitted == lines[-3:]  # the lines before came with the start
    rpc = next(parse_logfmt(line) for line in emitted if "actor=RpcServer" in line)
    assert rpc == {
        "ts": "2027-01-15T08:00:00.250Z",
        "level": "info",
        "actor": "RpcServer",
        "state": "running",
        "mailbox": "0",
        "processed": "1",
        "restarts": "0",
        "last_error": "",
    }
    as_json = json.loads(format_health_line(board.get("RpcServer"), "json", FIXED_NOW))  # type: ignore[arg-type]
    assert (
        as_json["processed"] == 1 and as_json["last_error"] is None and as_json["level"] == "info"
    )


def test_a_stalled_actor_is_reported_and_restarted(start_tree) -> None:
    store, events = Store(), EventLog()
    tree, board, _ = monitored_tree(start_tree, store, events)
    writer = tree.handle("StorageWriter")
    writer.call("increment")
    release = threading.Event()
    try:
        writer.tell(hang_call(release))
        found = tree.handle("HealthMonitor").call("check_tree")
        slow = next(h for h in found if h.actor == "StorageWriter")
        assert (slow.state, slow.missed_heartbeats) == ("running", 1)  # one miss: just slow
        assert tree.table.slot("StorageWriter").incarnation == 1
        found = tree.handle("HealthMonitor").call("check_tree")
        stalled = next(h for h in found if h.actor == "StorageWriter")
        assert (stalled.state, stalled.missed_heartbeats) == ("stalled", 2)
        failed = events.wait_for(lambda e: isinstance(e, ChildFailed))
        assert isinstance(failed.error, ActorStalled)
        events.wait_for(lambda e: isinstance(e, ChildRestarted))
        assert writer.call("get") == 1  # the new incarnation answers, state from the store
        tree.handle("HealthMonitor").call("check_tree")
        after = board.get("StorageWriter")
        assert after is not None and after.state == "running" and after.restarts == 1
        assert "did not answer a heartbeat" in (after.last_error or "")
    finally:
        release.set()  # let the abandoned thread finish


def test_without_restart_policy_a_stall_is_only_reported(start_tree) -> None:
    store, events = Store(), EventLog()
    tree, board, _ = monitored_tree(start_tree, store, events, restart_stalled=False)
    release = threading.Event()
    try:
        tree.handle("StorageWriter").tell(hang_call(release))
        for _ in range(3):
            tree.handle("HealthMonitor").call("check_tree")
        assert board.get("StorageWriter").state == "stalled"  # type: ignore[union-attr]
        assert tree.table.slot("StorageWriter").incarnation == 1
    finally:
        release.set()
    tree.handle("StorageWriter").call("get", timeout=WAIT)
    tree.handle("HealthMonitor").call("check_tree")
    recovered = board.get("StorageWriter")
    assert recovered is not None
    assert (recovered.state, recovered.missed_heartbeats) == ("running", 0)
    assert not events.of(ChildRestarted)


def test_the_monitor_logs_on_its_own_timer(start_tree) -> None:
    _, _, lines = monitored_tree(
        start_tree, Store(), EventLog(), heartbeat_interval=0.02, log_interval=0.02
    )
    deadline = threading.Event()
    for _ in range(250):
        if len({parse_logfmt(line)["actor"] for line in lines}) == 3:
            break
        deadline.wait(0.02)
    assert {parse_logfmt(line)["actor"] for line in lines} == {
        "StorageWriter",
        "RpcServer",
        "HealthMonitor",
    }


def test_logfmt_values_are_quoted_only_when_needed() -> None:
    assert logfmt_value("running") == "running"
    assert logfmt_value(12) == "12"
    assert logfmt_value(None) == '""'
    assert logfmt_value('Boom: said "no"') == '"Boom: said \\"no\\""'
    assert logfmt_value("a=b") == '"a=b"'
    assert logfmt_value("line\nbreak") == '"line\\nbreak"'


def test_a_non_running_actor_logs_at_warn_level() -> None:
    health = ActorHealth(
        actor="Importer",
        kind="actor",
        state="restarting",
        mailbox=None,
        processed=None,
        restarts=2,
        incarnation=3,
        last_error="Boom: x",
        last_error_at=FIXED_NOW,
        last_heartbeat_at=None,
    )
    fields = parse_logfmt(format_health_line(health, "logfmt", FIXED_NOW))
    assert fields["level"] == "warn" and fields["state"] == "restarting"
    assert fields["last_error"] == "Boom: x" and fields["last_error_at"].startswith("2027-01-15")


def test_config_rejects_an_unknown_log_format() -> None:
    with pytest.raises(ValueError, match="log_format"):
        HealthConfig(log_format="xml")  # type: ignore[arg-type]


def test_the_monitor_feeds_actor_metrics(start_tree) -> None:
    from khipu.actors.metrics import NodeMetrics

    store, events, metrics = Store(), EventLog(), NodeMetrics()
    board = HealthBoard()
    config = HealthConfig(heartbeat_interval=60.0, heartbeat_timeout=1.0)
    children = [
        ChildSpec("StorageWriter", lambda ctx: Counter.start(ctx, store, "writer")),
        ChildSpec(
            "HealthMonitor", lambda ctx: HealthMonitor.start(ctx, board, config, metrics=metrics)
        ),
    ]
    tree = start_tree(children, fast_strategy(), listeners=[events])
    monitor = tree.handle("HealthMonitor")
    with pytest.raises(Boom):
        tree.handle("StorageWriter").call("fail")
    events.wait_for(lambda e: isinstance(e, ChildRestarted))
    monitor.call("check_tree")
    monitor.call("check_tree")  # a second look must not count the same restart again

    def sample(name: str, **labels: str) -> float | None:
        return metrics.registry.get_sample_value(name, labels)

    assert sample("khipu_actor_restarts_total", actor="StorageWriter") == 1
    assert sample("khipu_actor_state", actor="StorageWriter", state="running") == 1
    assert sample("khipu_actor_state", actor="StorageWriter", state="stalled") == 0
    assert sample("khipu_actor_mailbox_messages", actor="StorageWriter") == 0
