from pathlib import Path

import pytest

from khipu.storage.kesque.errors import StoreCorrupted
from khipu.storage.kesque.segment import (
    FLAG_TOMBSTONE,
    HEADER_SIZE,
    Segment,
    TornRecord,
    decode_record,
    encode_record,
    record_crc_ok,
    scan_records,
)


def test_record_round_trip() -> None:
    data = encode_record(42, b"k" * 32, b"value", FLAG_TOMBSTONE)
    record = decode_record(data, 0, 1000, Path("x.log"))
    assert (record.offset, record.key, record.value) == (42, b"k" * 32, b"value")
    assert record.tombstone and record.position == 1000 and record.length == len(data)
    assert len(data) == HEADER_SIZE + 32 + 5
    assert record_crc_ok(record)


def test_flipped_bit_is_reported_with_file_and_offset() -> None:
    data = bytearray(encode_record(1, b"key", b"some value"))
    data[-1] ^= 0x01
    with pytest.raises(StoreCorrupted) as caught:
        decode_record(bytes(data), 0, 777, Path("seg.log"))
    assert caught.value.offset == 777 and caught.value.file == Path("seg.log")
    assert "CRC" in caught.value.reason
    unverified = decode_record(bytes(data), 0, 777, Path("seg.log"), verify=False)
    assert not record_crc_ok(unverified)


def test_truncated_record_is_torn() -> None:
    data = encode_record(1, b"key", b"x" * 100)
    with pytest.raises(TornRecord):
        decode_record(data[:-1], 0, 0, Path("seg.log"))
    with pytest.raises(TornRecord):
        decode_record(data[:5], 0, 0, Path("seg.log"))


def test_segment_append_read_and_scan(tmp_path: Path) -> None:
    segment = Segment(tmp_path, 100, 0, writable=True, create=True)
    assert segment.path.name == "00000000000000000100.log"
    positions = [segment.append(encode_record(100 + i, b"", b"v%d" % i * i)) for i in range(50)]
    # read from the write buffer, then from the file
    assert decode_record(segment.read(positions[3], 64), 0, 0, segment.path).offset == 103
    segment.flush()
    records = list(scan_records(segment.read, 0, segment.end, segment.path, chunk_bytes=64))
    assert [r.offset for r in records] == list(range(100, 150))
    assert [r.position for r in records] == positions
    segment.close()


def test_scan_stops_at_torn_tail(tmp_path: Path) -> None:
    segment = Segment(tmp_path, 0, 0, writable=True, create=True)
    for i in range(5):
        segment.append(encode_record(i, b"", b"value"))
    segment.append(encode_record(5, b"", b"last")[:10])
    segment.flush()
    seen = []
    with pytest.raises(TornRecord) as caught:
        for record in scan_records(segment.read, 0, segment.end, segment.path):
            seen.append(record.offset)
    assert seen == [0, 1, 2, 3, 4]
    assert caught.value.offset == segment.end - 10
    segment.close()
