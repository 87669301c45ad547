"""Import progress: recent rates over a sliding window, and the snapshot khipu_health shows."""

from __future__ import annotations

import pytest

from khipu.node_actors.progress import ImportRates, ImportStatus, RateWindow


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_rates_count_the_blocks_of_the_window_only() -> None:
    clock = FakeClock()
    window = RateWindow(seconds=10.0, clock=clock)
    assert window.rates() == ImportRates(0.0, 0.0, 0.0)
    for _ in range(4):  # 4 blocks in the first 2 s: 10 txs and 1 Mgas each
        clock.now += 0.5
        window.add(10, 1_000_000)
    assert window.rates() == pytest.approx(ImportRates(2.0, 20.0, 2.0))
    clock.now += 20.0  # all of them older than the window
    window.add(5, 3_000_000)
    assert window.rates() == pytest.approx(ImportRates(0.1, 0.5, 0.3))


def test_the_snapshot_reports_commits_and_refuses_unknown_fields() -> None:
    status = ImportStatus()
    status.update(state="importing", target=45)
    status.record_commit(1)
    status.record_commit(2)
    status.update(rates=ImportRates(3.14159, 62.04, 2.0004))
    snapshot = status.snapshot()
    assert snapshot == {
        "stage": "import",
        "state": "importing",
        "head": 2,
        "target": 45,
        "imported": 2,
        "blocks_per_s": 3.14,
        "tx_per_s": 62.0,
        "mgas_per_s": 2.0,
        "eta_s": 14,  # 43 blocks to go at 3.14 blocks/s
        "error": None,
    }
    with pytest.raises(AttributeError, match="no field 'heed'"):
        status.update(heed=3)


def test_a_sync_snapshot_says_where_it_started_and_how_high_the_peers_are() -> None:
    status = ImportStatus()
    status.update(stage="sync", state="syncing", starting_block=20, target=45, peer="a1 (geth)")
    status.record_commit(21)
    snapshot = status.snapshot()
    assert snapshot["stage"] == "sync" and snapshot["eta_s"] is None  # no rate yet
    assert (snapshot["starting_block"], snapshot["highest_block"]) == (20, 45)
    assert snapshot["peer"] == "a1 (geth)"
