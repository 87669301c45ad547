from pathlib import Path

from khipu.storage.kesque.offset_index import OffsetIndex


def test_lookup_finds_last_entry_at_or_before(tmp_path: Path) -> None:
    index = OffsetIndex(tmp_path / "0.index", writable=True, capacity=10, create=True)
    for relative, position in [(0, 0), (5, 300), (9, 700), (20, 1500)]:
        assert index.append(relative, position)
    assert index.lookup(0, 2000) == 0
    assert index.lookup(4, 2000) == 0
    assert index.lookup(5, 2000) == 300
    assert index.lookup(19, 2000) == 700
    assert index.lookup(1000, 2000) == 1500
    # entries at or past the reader's committed end are ignored
    assert index.lookup(1000, 1500) == 700
    assert index.lookup(1000, 300) == 0


def test_reopen_counts_entries_and_truncate(tmp_path: Path) -> None:
    path = tmp_path / "0.index"
    index = OffsetIndex(path, writable=True, capacity=8, create=True)
    for i in range(6):
        index.append(i * 2, i * 100)
    index.close()
    reopened = OffsetIndex(path, writable=True)
    assert reopened.count == 6 and reopened.last_position() == 500
    reopened.truncate(250)
    assert reopened.count == 3 and reopened.last_position() == 200
    assert [e[2] for e in reopened.entries(10_000)] == [0, 100, 200]
    reader = OffsetIndex(path, writable=False)
    assert reader.lookup(100, 10_000) == 200


def test_full_index_refuses_entries(tmp_path: Path) -> None:
    index = OffsetIndex(tmp_path / "0.index", writable=True, capacity=2, create=True)
    assert index.append(0, 0) and index.append(1, 10)
    assert not index.append(2, 20)
    assert index.count == 2
