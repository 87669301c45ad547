"""`khipu db check | repair | stats`: damage is found with file and offset, and repaired."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from kesque_helpers import key_of, value_of

from khipu.cli import main
from khipu.storage.kesque import Kesque, KesqueConfig
from khipu.storage.kesque.check import check_store, store_stats
from khipu.storage.kesque.repair import repair_store


@pytest.fixture
def datadir(tmp_path: Path) -> Path:
    with Kesque.open(tmp_path / "kesque") as writer:
        for i in range(300):
            writer.topic("storage").put(key_of(i), value_of(i))
            writer.topic("header").put_at(i, value_of(i, 3))
        writer.commit()
    return tmp_path


def flip_byte(path: Path, position: int) -> None:
    with open(path, "r+b") as file:
        file.seek(position)
        byte = file.read(1)
        file.seek(position)
        file.write(bytes([byte[0] ^ 0xFF]))


def test_clean_store_passes(datadir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db", "check", "--datadir", str(datadir)]) == 0
    assert "600 records checked: ok" in capsys.readouterr().out


def test_flipped_byte_is_found_with_file_and_offset(
    datadir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = datadir / "kesque" / "storage" / "00000000000000000000.log"
    flip_byte(log, 100)  # inside the value of the first record (bytes 0..146)
    report = check_store(datadir / "kesque")
    assert not report.ok
    problem = report.problems[0]
    assert (problem.file, problem.offset) == (log, 0) and "CRC" in problem.reason
    assert main(["db", "check", "--datadir", str(datadir)]) == 1
    out = capsys.readouterr().out
    assert f"PROBLEM: {log} at byte {problem.offset}" in out


def test_damaged_index_entry_is_found(datadir: Path) -> None:
    storage = datadir / "kesque" / "storage"
    index_path = sorted(storage.glob("hash.*.idx"))[-1]
    data = bytearray(index_path.read_bytes())
    first_used = next(i for i in range(64, len(data), 20) if any(data[i : i + 8]))
    data[first_used + 12] ^= 0x01  # the position of one entry
    index_path.write_bytes(bytes(data))
    report = check_store(datadir / "kesque")
    assert not report.ok
    assert any("no hash index entry" in p.reason for p in report.problems)


def test_repair_rebuilds_a_lost_index(datadir: Path) -> None:
    store = datadir / "kesque"
    for index_path in (store / "storage").glob("hash.*.idx"):
        index_path.unlink()
    for index_path in (store / "header").glob("*.index"):
        index_path.unlink()
    assert not check_store(store).ok
    with pytest.raises(Exception, match="repair"):
        Kesque.open(store)
    assert main(["db", "repair", "--datadir", str(datadir)]) == 0
    assert check_store(store).ok
    with Kesque.open(store, readonly=True) as reader:
        assert all(reader.topic("storage").get(key_of(i)) == value_of(i) for i in range(300))
        assert all(reader.topic("header").get_at(i) == value_of(i, 3) for i in range(300))


def test_repair_rebuilds_a_lost_commit_file(datadir: Path) -> None:
    store = datadir / "kesque"
    os.unlink(store / "COMMIT")
    report = repair_store(store)
    assert any("commit file unusable" in action for action in report.actions)
    with Kesque.open(store) as writer:
        assert writer.topic("header").last_offset() == 299
        assert writer.topic("storage").get(key_of(299)) == value_of(299)


def test_repair_cuts_at_a_damaged_record(tmp_path: Path) -> None:
    store = tmp_path / "kesque"
    config = KesqueConfig(segment_bytes=8192)
    with Kesque.open(store, config=config) as writer:
        for i in range(100):
            writer.topic("td").put_at(i, value_of(i))
        writer.commit()
    segments = sorted((store / "td").glob("*.log"))
    flip_byte(segments[2], 100)
    repair_store(store, config)
    assert check_store(store, config).ok
    with Kesque.open(store, readonly=True, config=config) as reader:
        td = reader.topic("td")
        last = td.last_offset()
        assert 0 < last < 99
        assert all(td.get_at(i) == value_of(i) for i in range(last + 1))


def test_stats(datadir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stats = {s.name: s for s in store_stats(datadir / "kesque")}
    assert stats["storage"].records == 300 and stats["header"].last_offset == 299
    assert 0 < stats["storage"].load_factor < 0.6
    assert stats["storage"].bytes == sum(
        p.stat().st_size for p in (datadir / "kesque" / "storage").glob("*.log")
    )
    assert main(["db", "stats", "--datadir", str(datadir)]) == 0
    assert "storage" in capsys.readouterr().out


def test_missing_store(tmp_path: Path) -> None:
    assert main(["db", "check", "--datadir", str(tmp_path)]) == 2


def test_repair_refuses_while_a_writer_runs(
    datadir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with Kesque.open(datadir / "kesque"):
        assert main(["db", "repair", "--datadir", str(datadir)]) == 1
        assert "stop the node first" in capsys.readouterr().out
        # check may run beside the writer
        assert main(["db", "check", "--datadir", str(datadir)]) == 0
