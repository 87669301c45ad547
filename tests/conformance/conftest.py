"""Conformance suites: a session summary of what the parallel-execution proofs ran."""

from __future__ import annotations

import sys

import pytest


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Blocks by execution mode per suite, transactions merged and re-executed, and any
    fallback the executor should not have needed (each one a bug)."""
    module = sys.modules.get("tests.conformance.parallel_proof")
    stats = getattr(module, "PROOF_STATS", None)
    if stats is None or not stats.modes:
        return
    terminalreporter.write_sep("-", "parallel execution proof")
    terminalreporter.write_line(stats.summary())
