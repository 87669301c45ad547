"""The fault plan: which hits of a point fail, stalls that end, and the $KHIPU_FAULTS syntax."""

from __future__ import annotations

import threading

import pytest

from khipu.node_actors.faults import FaultPlan, InjectedFault


def hits_that_raise(plan: FaultPlan, point: str, hits: int) -> list[int]:
    raised = []
    for hit in range(1, hits + 1):
        try:
            plan.check(point)
        except InjectedFault as fault:
            assert fault.hit == hit and fault.point == point
            raised.append(hit)
    return raised


def test_a_raise_fires_after_skip_for_the_given_number_of_hits() -> None:
    plan = FaultPlan()
    plan.arm_raise("StorageWriter.import_block", skip=2, times=2)
    assert hits_that_raise(plan, "StorageWriter.import_block", 6) == [3, 4]
    assert plan.fired("StorageWriter.import_block") == 2
    assert hits_that_raise(plan, "Importer.next_block", 3) == []  # other points are untouched


def test_an_unlimited_raise_fires_on_every_hit_after_skip() -> None:
    plan = FaultPlan.from_text("Importer.next_block=raise:always@1")
    assert hits_that_raise(plan, "Importer.next_block", 4) == [2, 3, 4]


def test_a_stall_blocks_until_released() -> None:
    plan = FaultPlan.from_text("StorageWriter.start=stall:600")
    stalled = threading.Thread(target=plan.check, args=("StorageWriter.start",), daemon=True)
    stalled.start()
    stalled.join(0.2)
    assert stalled.is_alive()
    plan.release()
    stalled.join(10)
    assert not stalled.is_alive()
    assert plan.fired("StorageWriter.start") == 1


@pytest.mark.parametrize(
    "text",
    ["Nowhere.at_all=raise", "Importer.next_block=explode", "Importer.next_block=raise:x"],
)
def test_a_plan_that_does_not_parse_is_refused_naming_the_part(text: str) -> None:
    with pytest.raises(ValueError, match="KHIPU_FAULTS: cannot parse"):
        FaultPlan.from_text(text)


def test_the_environment_plan_is_empty_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KHIPU_FAULTS", raising=False)
    plan = FaultPlan.from_environment()
    plan.check("StorageWriter.import_block")  # nothing armed: no error
    monkeypatch.setenv("KHIPU_FAULTS", "HealthMonitor.tick=raise:2")
    assert hits_that_raise(FaultPlan.from_environment(), "HealthMonitor.tick", 3) == [1, 2]
