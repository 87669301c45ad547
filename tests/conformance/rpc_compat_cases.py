"""The hive rpc-compat `.io` files: reading them and judging a node's answers."""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse


@dataclass(frozen=True)
class Exchange:
    """One `>>` request line and its `<<` expected response line."""

    request: str
    expected: dict[str, Any]


@dataclass(frozen=True)
class RpcCase:
    """One `.io` file: its exchanges, and whether only the response's shape is checked."""

    path: Path
    exchanges: tuple[Exchange, ...]
    spec_only: bool

    @property
    def name(self) -> str:
        return f"{self.path.parent.name}/{self.path.stem}"

    @property
    def method(self) -> str:
        return self.path.parent.name


def read_case(path: Path) -> RpcCase:
    """Parse an `.io` file. Raises ValueError for a response line without a request."""
    exchanges = []
    pending: str | None = None
    spec_only = False
    for line in path.read_text().splitlines():
        if line.startswith("//"):
            spec_only = spec_only or "speconly" in line
        elif line.startswith(">>"):
            pending = line[2:].strip()
        elif line.startswith("<<"):
            if pending is None:
                raise ValueError(f"{path}: response without a request")
            exchanges.append(Exchange(pending, json.loads(line[2:].strip())))
            pending = None
    return RpcCase(path, tuple(exchanges), spec_only)


def find_cases(suite: Path) -> list[RpcCase]:
    return [read_case(path) for path in sorted(suite.glob("*/*.io"))]


class RpcClient:
    """A keep-alive HTTP JSON-RPC client that posts raw request text."""

    def __init__(self, url: str) -> None:
        parsed = urlparse(url)
        self._connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=60)

    def post(self, body: str) -> Any:
        self._connection.request("POST", "/", body.encode(), {"Content-Type": "application/json"})
        response = self._connection.getresponse()
        payload = response.read()
        return json.loads(payload) if payload else None

    def close(self) -> None:
        self._connection.close()


def mismatch(case: RpcCase, expected: dict[str, Any], actual: Any) -> str | None:
    """Why `actual` fails the expectation, or None when it passes.

    An expected error must be answered with an error of the same code (and the same data if
    the expectation has data); the message is free. A `speconly` case needs only the same kind
    of answer (a result, or an error).
    """
    if not isinstance(actual, dict):
        return f"answer is not a JSON-RPC response object: {actual!r}"
    if "error" in expected:
        error = actual.get("error")
        if not isinstance(error, dict):
            return f"expected error {expected['error']}, got result {_short(actual.get('result'))}"
        if case.spec_only:
            return None
        if error.get("code") != expected["error"].get("code"):
            return f"expected error {expected['error']}, got {error}"
        if "data" in expected["error"] and error.get("data") != expected["error"]["data"]:
            return f"expected error data {expected['error']['data']}, got {error.get('data')}"
        return None
    if "error" in actual:
        return f"expected a result, got error {actual['error']}"
    if case.spec_only:
        return None if "result" in actual else "no result"
    if actual.get("result") != expected.get("result"):
        return "result differs:\n" + _diff(expected.get("result"), actual.get("result"))
    return None


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) < 300 else text[:300] + "..."


def _diff(expected: Any, actual: Any, path: str = "result") -> str:
    if isinstance(expected, dict) and isinstance(actual, dict):
        lines = []
        for key in sorted(set(expected) | set(actual)):
            if key not in actual:
                lines.append(f"{path}.{key}: missing (want {_short(expected[key])})")
            elif key not in expected:
                lines.append(f"{path}.{key}: unexpected {_short(actual[key])}")
            elif expected[key] != actual[key]:
                lines.append(_diff(expected[key], actual[key], f"{path}.{key}"))
        return "\n".join(lines)
    if isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        return "\n".join(
            _diff(e, a, f"{path}[{i}]")
            for i, (e, a) in enumerate(zip(expected, actual, strict=True))
            if e != a
        )
    return f"{path}: want {_short(expected)}, got {_short(actual)}"
