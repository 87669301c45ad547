"""The `khipu status` table."""

from __future__ import annotations

from khipu.actors.status import format_status_table


def test_table_has_one_aligned_row_per_actor_with_error_age() -> None:
    snapshot = {
        "ts": "2027-01-15T08:00:00.250Z",
        "actors": [
            {
                "actor": "StorageWriter",
                "state": "running",
                "mailbox": 0,
                "processed": 123,
                "restarts": 0,
                "last_error": None,
                "last_error_at": None,
            },
            {
                "actor": "SyncSupervisor/FastSync",
                "state": "restarting",
                "mailbox": None,
                "processed": None,
                "restarts": 2,
                "last_error": "PeerMisbehaved: bad header",
                "last_error_at": 1000.0,
            },
        ],
    }
    lines = format_status_table(snapshot, now=1042.0).splitlines()
    assert lines[0] == "khipu health at 2027-01-15T08:00:00.250Z: 2 actor(s)"
    header, writer, fast_sync = lines[1:]
    assert header.split() == ["ACTOR", "STATE", "MAILBOX", "PROCESSED", "RESTARTS", "LAST", "ERROR"]
    assert writer.split() == ["StorageWriter", "running", "0", "123", "0", "-"]
    assert fast_sync.split()[:5] == ["SyncSupervisor/FastSync", "restarting", "-", "-", "2"]
    assert fast_sync.endswith("PeerMisbehaved: bad header (42s ago)")
    # Columns line up: every row starts its STATE column at the same offset.
    assert writer.index("running") == fast_sync.index("restarting") == header.index("STATE")


def test_an_empty_snapshot_still_prints_a_header() -> None:
    text = format_status_table({"ts": "t", "actors": []})
    assert text.splitlines() == [
        "khipu health at t: 0 actor(s)",
        "ACTOR  STATE  MAILBOX  PROCESSED  RESTARTS  LAST ERROR",
    ]
