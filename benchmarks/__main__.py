"""Run every benchmark: `python -m benchmarks` (what `make bench` does)."""

from __future__ import annotations

import sys

from benchmarks import import_serial, kesque_vs_leveldb


def main() -> int:
    return import_serial.main([]) or kesque_vs_leveldb.main([])


if __name__ == "__main__":
    sys.exit(main())
