"""Fixtures of the p2p tests: the rpc-compat-prague chain as an in-memory ChainReader."""

from __future__ import annotations

import pytest

from tests.conftest import require_testdata
from tests.unit.p2p.chainfile import MemoryChain


@pytest.fixture(scope="session")
def prague_chain() -> MemoryChain:
    folder = require_testdata("rpc-compat-prague")
    return MemoryChain(folder / "genesis.json", folder / "chain.rlp")
