"""The bad list kept in a file: it survives a restart, its entries expire by the configured
expiry counted from when they were listed (wall clock), and a broken file never stops the node."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from khipu.p2p.peers import bad_list_file
from khipu.p2p.peers.bad_list_file import BadListFileInvalid, StoredBadPeer
from khipu.p2p.peers.scoring import BadList


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def node(n: int) -> bytes:
    return bytes([n]) * 64


def restarted(path: Path, expiry: float, wall: Clock) -> BadList:
    """A new list over the same file, as a restarted node builds it: a fresh monotonic clock."""
    return BadList(expiry, Clock(5.0), path, wall)


def test_entries_survive_a_restart_and_expire_as_configured(tmp_path: Path) -> None:
    path = tmp_path / "badpeers.json"
    wall = Clock(1_700_000_000.0)
    bad = BadList(600.0, Clock(1000.0), path, wall)
    bad.add(node(1), "lying: bodies off their roots")
    wall.now += 100
    bad.add(node(2), "malformed")
    stored = json.loads(path.read_text())
    assert [e["node_id"] for e in stored["entries"]] == [node(1).hex(), node(2).hex()]

    wall.now += 200  # 300 s after node 1, 200 s after node 2
    again = restarted(path, 600.0, wall)
    assert node(1) in again and node(2) in again
    assert again.get(node(1)).reason == "lying: bodies off their roots"  # type: ignore[union-attr]
    assert again.get(node(1)).until == pytest.approx(5.0 + 300)  # type: ignore[union-attr]
    # a shorter configured expiry applies to entries already on the list
    shorter = restarted(path, 250.0, wall)
    assert node(1) not in shorter and node(2) in shorter
    wall.now += 350  # past node 1's 600 s, node 2 has 50 s left
    later = restarted(path, 600.0, wall)
    assert [e.node_id for e in later.entries()] == [node(2)]
    wall.now += 50
    assert len(restarted(path, 600.0, wall)) == 0


def test_a_repeat_extends_the_entry_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "badpeers.json"
    wall = Clock(10_000.0)
    bad = BadList(100.0, Clock(0.0), path, wall)
    bad.add(node(3), "slow")
    wall.now += 90
    bad.add(node(3), "lying")
    wall.now += 50  # 140 s after the first listing, 50 after the second
    again = restarted(path, 100.0, wall)
    assert again.get(node(3)).reason == "lying"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        json.dumps({"version": 99, "entries": []}),
        json.dumps({"version": 1, "entries": {}}),
        json.dumps({"version": 1, "entries": [{"node_id": "zz", "reason": "", "listed_at": 1}]}),
        json.dumps({"version": 1, "entries": [{"node_id": "01", "reason": "", "listed_at": 1}]}),
        json.dumps({"version": 1, "entries": [{"node_id": node(1).hex(), "reason": "x"}]}),
    ],
)
def test_a_broken_file_is_set_aside_and_the_list_starts_empty(
    tmp_path: Path, content: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "badpeers.json"
    path.write_text(content)
    with pytest.raises(BadListFileInvalid, match=str(path)):
        bad_list_file.load(path)
    with caplog.at_level(logging.WARNING, "khipu.p2p"):
        bad = BadList(600.0, Clock(0.0), path, Clock(1.0))
    assert len(bad) == 0
    assert "bad list starts empty" in caplog.text
    assert not path.exists() and (tmp_path / "badpeers.json.invalid").read_text() == content
    bad.add(node(4), "lying")  # and it is written afresh
    assert [p.node_id for p in bad_list_file.load(path)] == [node(4)]


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "badpeers.json"
    peers = [StoredBadPeer(node(5), "why \u2013 with unicode", 1.5), StoredBadPeer(node(6), "", 2)]
    bad_list_file.save(path, peers)
    assert bad_list_file.load(path) == peers
    assert bad_list_file.load(tmp_path / "absent.json") == []
    assert not (tmp_path / "sub" / "badpeers.json.tmp").exists()
