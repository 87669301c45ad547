"""rpc-compat cases khipu does not pass, each with the precise reason (strict xfail)."""

from __future__ import annotations

_NO_TRANSACTIONS = (
    "khipu is a sync-only archive node: eth_sendRawTransaction is refused with -32000 "
    "(the case expects the transaction hash back from a mempool)"
)

_BY_METHOD: dict[str, str] = {
    "testing_buildBlockV1": (
        "testing_buildBlockV1 builds blocks from a mempool; a sync-only node has neither "
        "block building nor a mempool"
    ),
    "eth_sendRawTransaction": _NO_TRANSACTIONS,
}

# Single cases: "method/case" -> reason, per suite ("*" for both).
_BY_CASE: dict[str, dict[str, str]] = {"*": {}, "rpc-compat": {}, "rpc-compat-prague": {}}


def expected_failure(suite: str, case_name: str) -> str | None:
    """The reason a case is expected to fail, or None if it must pass."""
    method = case_name.split("/")[0]
    if method in _BY_METHOD:
        return _BY_METHOD[method]
    return _BY_CASE.get(suite, {}).get(case_name) or _BY_CASE["*"].get(case_name)
