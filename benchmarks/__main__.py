"""Run every benchmark: `python -m benchmarks` (what `make bench` does)."""

from __future__ import annotations

import sys

from benchmarks import import_serial, import_storage, kesque_vs_leveldb, parallel_execution


def main() -> int:
    return (
        import_serial.main([])
        or import_storage.main([])
        or parallel_execution.main([])
        or kesque_vs_leveldb.main([])
    )


if __name__ == "__main__":
    sys.exit(main())
