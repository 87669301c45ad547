"""ethereum/tests BlockchainTests through khipu's genesis builder and block importer.

By default a deterministic sample (every 8th test plus one of each network and seal engine, not
the five SLOW_CASES); with KHIPU_CONFORMANCE=full every test of $KHIPU_TESTDATA/blockchain-tests,
all of which pass (KNOWN_FAILURES would list xfails). One case per fixture test:
the genesis hash must match, valid blocks must import, invalid ones must be rejected, and the head
and post state must equal the fixture's.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.conformance.blockchain_tests import (
    NETWORK_CONFIGS,
    FixtureCase,
    discover_cases,
    load_fixture,
    run_fixture,
    sample_cases,
)
from tests.conftest import conformance_full, require_testdata
from tests.conftest import testdata_root as _testdata_root

pytestmark = pytest.mark.conformance

SUITE = "blockchain-tests"

# Cases that cannot pass for a cause outside khipu; none at present.
KNOWN_FAILURES: dict[str, str] = {}


def _parameters() -> list[Any]:
    root = _testdata_root() / SUITE
    if not root.is_dir():
        return [pytest.param(None, id="testdata-absent")]
    cases = discover_cases(root)
    selected = cases if conformance_full() else sample_cases(cases)
    return [
        pytest.param(
            case,
            id=case.name,
            marks=(
                [pytest.mark.xfail(strict=True, reason=KNOWN_FAILURES[case.name])]
                if case.name in KNOWN_FAILURES
                else []
            ),
        )
        for case in selected
    ]


@pytest.mark.parametrize("case", _parameters())
def test_blockchain_fixture(case: FixtureCase | None) -> None:
    require_testdata(SUITE)
    assert case is not None
    fixture = load_fixture(case)
    result = run_fixture(fixture)
    assert result.head is not None
    assert result.accepted + result.rejected == len(fixture["blocks"])


def test_sample_covers_every_network() -> None:
    cases = discover_cases(require_testdata(SUITE))
    sample = sample_cases(cases)
    assert {case.network for case in sample} == {case.network for case in cases}
    assert {case.seal_engine for case in sample} == {"NoProof", "Ethash"}
    assert len(sample) < len(cases) // 4
    assert {case.network for case in cases} <= set(NETWORK_CONFIGS)


# Blocks that khipu once rejected for the wrong reason, or crashed on: (test, rejections).
REJECTION_REASONS: dict[str, list[tuple[int, str]]] = {
    # uncles with wrong DAO extra data (geth checks uncles too)
    "DaoTransactions_UncleExtradata_HomesteadToDaoAt5": [
        (4, "DAO extra data"),
        (7, "DAO extra data"),
        (9, "uncles"),
        (12, "DAO extra data"),
        (18, "DAO extra data"),
        (20, "DAO extra data"),
    ],
    # a London-era uncle without a base fee (block 13)
    "londonUncles_BerlinToLondonAt5": [(5, "uncles"), (11, "uncles"), (13, "uncles")],
    # EIP-1559 transactions in Berlin blocks: not decodable there
    "BerlinToLondonTransition_BerlinToLondonAt5": [
        (3, "malformed"),
        (4, "malformed"),
        (5, "malformed"),
        (7, "malformed"),
        (8, "header"),
        (9, "header"),
        (10, "header"),
    ],
    # an uncle's mix hash of 31 bytes
    "reusePreviousBlockAsUncleIgnoringLeadingZerosInMixHash": [(1, "malformed")],
}


@pytest.mark.parametrize("name", sorted(REJECTION_REASONS))
def test_rejected_for_the_right_reason(name: str) -> None:
    cases = {case.name: case for case in discover_cases(require_testdata(SUITE))}
    result = run_fixture(load_fixture(cases[name]))
    assert result.rejections == REJECTION_REASONS[name]
