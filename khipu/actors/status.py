"""`khipu status`: fetch the node's health over JSON-RPC and print it as a table."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

COLUMNS: tuple[str, ...] = ("ACTOR", "STATE", "MAILBOX", "PROCESSED", "RESTARTS", "LAST ERROR")


class HealthUnavailable(Exception):
    """The node at `url` did not give its health: not running, not reachable, or it answered with
    an error or something that is not a health snapshot."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"no health from {url}: {reason}")
        self.url = url
        self.reason = reason


def fetch_health(rpc_url: str, timeout: float = 5.0) -> dict[str, Any]:
    """POST `{"method": "khipu_health"}` to the node's JSON-RPC endpoint and return the result.

    Raises HealthUnavailable naming the URL for a connection error, an HTTP error, a JSON-RPC
    error object, or a result that is not a snapshot (a dict with an "actors" list).
    """
    request_body = {"jsonrpc": "2.0", "id": 1, "method": "khipu_health", "params": []}
    request = urllib.request.Request(
        rpc_url,
        data=json.dumps(request_body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            payload = json.loads(response.read())
    except urllib.error.HTTPError as error:
        raise HealthUnavailable(rpc_url, f"HTTP {error.code} {error.reason}") from error
    except (urllib.error.URLError, OSError) as error:
        raise HealthUnavailable(rpc_url, str(getattr(error, "reason", error))) from error
    except json.JSONDecodeError as error:
        raise HealthUnavailable(rpc_url, f"answer is not JSON ({error})") from error
    if not isinstance(payload, dict):
        raise HealthUnavailable(rpc_url, "answer is not a JSON-RPC response object")
    if payload.get("error") is not None:
        raise HealthUnavailable(rpc_url, f"JSON-RPC error {payload['error']}")
    result = payload.get("result")
    if not isinstance(result, dict) or not isinstance(result.get("actors"), list):
        raise HealthUnavailable(rpc_url, "result is not a health snapshot")
    return result


def format_status_table(snapshot: dict[str, Any], now: float | None = None) -> str:
    """A fixed-width table, one row per actor, for a person at a terminal.

    The last error shows its age ("12s ago") when the snapshot has its time; `now` defaults to
    the current time. Missing numbers print as '-'.
    """
    now = time.time() if now is None else now
    rows = [_row(actor, now) for actor in snapshot.get("actors", [])]
    header = f"khipu health at {snapshot.get('ts', '?')}: {len(rows)} actor(s)"
    text = header + "\n" + _table(COLUMNS, rows)
    sync = snapshot.get("sync")
    if isinstance(sync, dict):
        text += "\n" + format_sync_line(sync)
    p2p = snapshot.get("p2p")
    if isinstance(p2p, dict):
        text += "\n" + format_p2p_line(p2p)
    return text


def format_p2p_line(p2p: dict[str, Any]) -> str:
    """The peers part of a snapshot in one line, e.g. 'p2p: 1 peer (0 in, 1 out) of 50,
    0 bad-listed; be785a4f5cca91a2 khipu out 127.0.0.1:36379 score 2'."""
    count = int(p2p.get("peers") or 0)
    line = (
        f"p2p: {count} peer{'' if count == 1 else 's'} ({p2p.get('inbound', 0)} in, "
        f"{p2p.get('outbound', 0)} out) of {p2p.get('max_peers', '?')}, "
        f"{p2p.get('bad_listed', 0)} bad-listed"
    )
    peers = [
        f"{peer.get('id', '?')} {peer.get('name', '?')} "
        f"{'in' if peer.get('direction') == 'inbound' else 'out'} "
        f"{peer.get('address', '?')} score {peer.get('score', '?')}"
        for peer in p2p.get("peer_list", [])
        if isinstance(peer, dict)
    ]
    return line + ("; " + ", ".join(peers) if peers else "")


def format_sync_line(sync: dict[str, Any]) -> str:
    """The progress part of a snapshot in one line, e.g. 'import: importing, head 12 of 45
    (26.7%), 3.10 blocks/s, 62.0 tx/s, 2.000 Mgas/s'; an error, if any, ends the line."""
    head, target = sync.get("head"), sync.get("target")
    where = f"head {'-' if head is None else head}"
    if isinstance(head, int) and isinstance(target, int) and target > 0:
        where += f" of {target} ({100 * min(head, target) / target:.1f}%)"
    parts = [
        f"{sync.get('stage', 'sync')}: {sync.get('state', '?')}",
        where,
        f"{float(sync.get('blocks_per_s') or 0):.2f} blocks/s",
        f"{float(sync.get('tx_per_s') or 0):.1f} tx/s",
        f"{float(sync.get('mgas_per_s') or 0):.3f} Mgas/s",
    ]
    if sync.get("error"):
        parts.append(f"error: {sync['error']}")
    return ", ".join(parts)


def _row(actor: dict[str, Any], now: float) -> tuple[str, ...]:
    def number(key: str) -> str:
        value = actor.get(key)
        return "-" if value is None else str(value)

    error = actor.get("last_error") or "-"
    at = actor.get("last_error_at")
    if actor.get("last_error") and isinstance(at, int | float):
        error = f"{error} ({_age(now - at)} ago)"
    state = str(actor.get("state", "?"))
    if actor.get("activity"):
        state += f" ({actor['activity']})"  # a worker process: busy, idle, ...
    return (
        str(actor.get("actor", "?")),
        state,
        number("mailbox"),
        number("processed"),
        number("restarts"),
        error,
    )


def _age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h"


def _table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [len(c) for c in columns]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    numeric = {2, 3, 4}

    def line(cells: Sequence[str]) -> str:
        parts = [
            cell.rjust(w) if i in numeric else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    return "\n".join([line(columns), *(line(row) for row in rows)])
