"""The e2store entry reader: synthetic files for each failure, the mainnet era1 files for layout."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from khipu.chain.e2store import HEADER_SIZE, E2StoreReader, Era1FormatError, encode_entry
from tests.conftest import require_testdata


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_entry_bytes_follow_the_spec_example() -> None:
    # docs/e2store.md: type [0x22, 0x32], length 4, data 01 02 03 04
    encoded = encode_entry(0x3222, bytes([1, 2, 3, 4]))
    assert encoded == bytes([0x22, 0x32, 4, 0, 0, 0, 0, 0, 1, 2, 3, 4])


def test_entries_are_read_back_with_their_offsets(tmp_path: Path) -> None:
    values = [(0x3265, b""), (0x03, b"abc"), (0x07, bytes(range(32))), (0x80FF, b"x" * 300)]
    path = write(tmp_path / "f.e2s", b"".join(encode_entry(t, v) for t, v in values))
    with E2StoreReader(path) as reader:
        entries = list(reader.entries())
        assert [(e.type, e.value) for e in entries] == values
        assert [e.offset for e in entries] == [0, 8, 19, 59]
        assert entries[-1].end == reader.size == path.stat().st_size
        assert reader.entry_at(19, expected_type=0x07).value == bytes(range(32))
        assert reader.entries(19).__next__().type == 0x07


def test_nonzero_reserved_bytes_are_rejected_with_the_offset(tmp_path: Path) -> None:
    data = bytearray(encode_entry(0x03, b"abc") + encode_entry(0x04, b"de"))
    data[11 + 7] = 1  # reserved field of the second entry
    with (
        E2StoreReader(write(tmp_path / "f.e2s", bytes(data))) as reader,
        pytest.raises(Era1FormatError) as caught,
    ):
        list(reader.entries())
    assert caught.value.offset == 11
    assert "reserved" in caught.value.reason


def test_truncated_data_is_rejected(tmp_path: Path) -> None:
    data = encode_entry(0x03, b"abc") + encode_entry(0x04, b"x" * 10)
    with (
        E2StoreReader(write(tmp_path / "f.e2s", data[:-1])) as reader,
        pytest.raises(Era1FormatError) as caught,
    ):
        list(reader.entries())
    assert caught.value.offset == 11
    assert "claims 10 bytes, only 9 remain" in caught.value.reason


def test_truncated_header_is_rejected(tmp_path: Path) -> None:
    data = encode_entry(0x03, b"abc") + encode_entry(0x04, b"")[:5]
    with (
        E2StoreReader(write(tmp_path / "f.e2s", data)) as reader,
        pytest.raises(Era1FormatError) as caught,
    ):
        list(reader.entries())
    assert caught.value.offset == 11
    assert "truncated entry header" in caught.value.reason
    assert caught.value.path == tmp_path / "f.e2s"


def test_an_unexpected_type_is_rejected(tmp_path: Path) -> None:
    with (
        E2StoreReader(write(tmp_path / "f.e2s", encode_entry(0x05, b"abc"))) as reader,
        pytest.raises(Era1FormatError, match="expected an entry of type 0x0004, found 0x0005"),
    ):
        reader.entry_at(0, expected_type=0x04)


def test_an_empty_file_is_a_format_error(tmp_path: Path) -> None:
    with pytest.raises(Era1FormatError, match="empty file"):
        E2StoreReader(write(tmp_path / "empty.e2s", b""))


def test_encode_entry_refuses_a_type_wider_than_two_bytes() -> None:
    with pytest.raises(ValueError):
        encode_entry(0x10000, b"")


@pytest.mark.parametrize("name", ["mainnet-00000-5ec1ffb8.era1", "mainnet-00001-a5364e9a.era1"])
def test_mainnet_era1_files_have_the_era1_entry_layout(name: str) -> None:
    path = require_testdata("mainnet", "era1", name)
    with E2StoreReader(path) as reader:
        entries = list(reader.entries())
        assert entries[-1].end == reader.size
    types = Counter(entry.type for entry in entries)
    assert types == {0x3265: 1, 0x03: 8192, 0x04: 8192, 0x05: 8192, 0x06: 8192, 0x07: 1, 0x3266: 1}
    assert [e.type for e in entries[:5]] == [0x3265, 0x03, 0x04, 0x05, 0x06]
    assert [e.type for e in entries[-2:]] == [0x07, 0x3266]
    assert all(len(e.value) == 32 for e in entries if e.type == 0x06)
    assert entries[1].offset == HEADER_SIZE
