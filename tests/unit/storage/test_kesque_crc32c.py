import os

import pytest

from khipu.storage.kesque.crc32c import crc32c, crc32c_reference

# RFC 3720 (iSCSI) appendix B.4 test vectors, and the classic check value.
VECTORS = [
    (b"123456789", 0xE3069283),
    (bytes(32), 0x8A9136AA),
    (b"\xff" * 32, 0x62A8AB43),
    (bytes(range(32)), 0x46DD794E),
    (bytes(range(31, -1, -1)), 0x113FDB5C),
    (b"", 0),
]


@pytest.mark.parametrize(("data", "expected"), VECTORS)
def test_known_vectors(data: bytes, expected: int) -> None:
    assert crc32c(data) == expected
    assert crc32c_reference(data) == expected


@pytest.mark.parametrize("length", [1, 7, 8, 15, 16, 300, 4097, 65537, 200_001])
def test_library_agrees_with_the_reference(length: int) -> None:
    data = os.urandom(length)
    assert crc32c(data) == crc32c_reference(data)
    repetitive = b"ab" * (length // 2) + b"c" * (length % 2)
    assert crc32c(repetitive) == crc32c_reference(repetitive)


def test_continuing_a_checksum_agrees_with_the_reference() -> None:
    a, b = os.urandom(1000), os.urandom(333)
    assert crc32c(b, crc32c(a)) == crc32c(a + b)
    assert crc32c_reference(b, crc32c_reference(a)) == crc32c_reference(a + b)


def test_accepts_memoryview_and_bytearray() -> None:
    data = os.urandom(500)
    assert crc32c(memoryview(data)[10:]) == crc32c_reference(data[10:])
    assert crc32c(bytearray(data)) == crc32c_reference(data)
