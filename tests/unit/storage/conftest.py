"""Fixtures for the Kesque tests: small segments and indexes so rolls and growth happen."""

from __future__ import annotations

from pathlib import Path

import pytest

from khipu.storage.kesque import KesqueConfig


@pytest.fixture
def small_config() -> KesqueConfig:
    return KesqueConfig(
        segment_bytes=16 * 1024,
        offset_index_interval=256,
        hash_index_initial_slots=32,
        fsync=False,
        reader_refresh_seconds=3600.0,
    )


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    return tmp_path / "kesque"
