"""Shared fixtures: where the third-party test data lives, and a scratch datadir."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def testdata_root() -> Path:
    """$KHIPU_TESTDATA, or ../shared/data beside the checkout."""
    configured = os.environ.get("KHIPU_TESTDATA")
    if configured:
        return Path(configured)
    return REPO_ROOT.parent / "shared" / "data"


def conformance_full() -> bool:
    """True when KHIPU_CONFORMANCE=full asks for every case instead of the default sample."""
    return os.environ.get("KHIPU_CONFORMANCE", "").lower() == "full"


@pytest.fixture(scope="session")
def testdata() -> Path:
    root = testdata_root()
    if not root.is_dir():
        pytest.skip(f"test data not found at {root}: set KHIPU_TESTDATA to ../shared/data")
    return root


def require_testdata(*parts: str) -> Path:
    """The path of a test data file or folder, or skip the test saying what is missing."""
    path = testdata_root().joinpath(*parts)
    if not path.exists():
        pytest.skip(f"test data {path} is absent (set KHIPU_TESTDATA)")
    return path
