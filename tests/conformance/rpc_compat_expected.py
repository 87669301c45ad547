"""rpc-compat cases khipu does not pass yet, each with the precise reason (strict xfail)."""

from __future__ import annotations

# Methods outside what a sync-only archive node answers.
_BY_METHOD: dict[str, str] = {}

# Single cases: "method/case" -> reason, per suite ("*" for both).
_BY_CASE: dict[str, dict[str, str]] = {"*": {}, "rpc-compat": {}, "rpc-compat-prague": {}}


def expected_failure(suite: str, case_name: str) -> str | None:
    """The reason a case is expected to fail, or None if it must pass."""
    method = case_name.split("/")[0]
    if method in _BY_METHOD:
        return _BY_METHOD[method]
    return _BY_CASE.get(suite, {}).get(case_name) or _BY_CASE["*"].get(case_name)
