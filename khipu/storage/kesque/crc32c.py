"""CRC32C (Castagnoli), the checksum of every Kesque record.

`zlib.crc32` is the IEEE polynomial, not CRC32C. The `crc32c` package (ICRAR, C with the SSE4.2
CRC32 instruction where the CPU has it, a slice-by-8 table otherwise) computes it in about a
tenth of a microsecond for a 300-byte record and accepts any buffer (bytes, bytearray,
memoryview), so a record's checksum is checked without copying it. The table-driven pure-Python
`crc32c_reference()` (~70 us per record) is the oracle the tests hold it to.
"""

from __future__ import annotations

from crc32c import crc32c as _crc32c_c

_POLY = 0x82F63B78  # Castagnoli, bit-reflected


def _make_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ _POLY if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_TABLE = _make_table()


def crc32c_reference(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    """CRC32C of `data`, continuing from `crc`, by the classic byte-at-a-time table (slow)."""
    table = _TABLE
    crc ^= 0xFFFFFFFF
    for byte in bytes(data):
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


crc32c = _crc32c_c
"""crc32c(data, crc=0): CRC32C of any buffer `data`, continuing from `crc` (0 for empty input
from 0); e.g. crc32c(b"123456789") == 0xE3069283. The C function itself: it is on every read."""
