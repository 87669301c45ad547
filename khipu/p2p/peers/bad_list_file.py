"""The bad list on disk, so that a peer dropped for lying is still refused after a restart.

A small JSON file in the datadir (DATADIR/badpeers.json), not the LevelDB index store: the store
belongs to the StorageWriter, and a few dozen entries rewritten whole on each change need no
index. Each entry keeps when (wall-clock seconds) the node was bad-listed and why; how long it
stays refused is the configured expiry at the time it is read, so changing `bad_peer_expiry`
applies to entries already on the list. The file is replaced atomically (write, fsync, rename).

    {"version": 1, "entries": [{"node_id": "<128 hex>", "reason": "...", "listed_at": 1.7e9}]}
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from khipu.p2p.errors import P2PError

FORMAT_VERSION = 1
FILE_NAME = "badpeers.json"
NODE_ID_BYTES = 64


class BadListFileInvalid(P2PError):
    """The bad-list file cannot be read as one (the message names the file and the problem)."""


@dataclass(frozen=True)
class StoredBadPeer:
    """One remembered node: its id, why it was dropped, and when (wall-clock seconds)."""

    node_id: bytes
    reason: str
    listed_at: float


def load(path: Path) -> list[StoredBadPeer]:
    """The entries of the file at `path`; none if it does not exist.

    Raises BadListFileInvalid naming the file (and the entry) if it is not a bad-list file.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise BadListFileInvalid(f"{path}: cannot read: {exc}") from exc
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadListFileInvalid(f"{path}: not JSON at offset {exc.pos}: {exc.msg}") from exc
    if not isinstance(document, dict) or document.get("version") != FORMAT_VERSION:
        raise BadListFileInvalid(f"{path}: not a version {FORMAT_VERSION} bad-list file")
    entries = document.get("entries")
    if not isinstance(entries, list):
        raise BadListFileInvalid(f"{path}: 'entries' is not a list")
    peers = []
    for index, entry in enumerate(entries):
        try:
            node_id = bytes.fromhex(entry["node_id"])
            reason, listed_at = str(entry["reason"]), float(entry["listed_at"])
        except (KeyError, TypeError, ValueError) as exc:
            raise BadListFileInvalid(f"{path}: entry {index} is malformed: {exc!r}") from exc
        if len(node_id) != NODE_ID_BYTES:
            raise BadListFileInvalid(f"{path}: entry {index} has a {len(node_id)}-byte node id")
        peers.append(StoredBadPeer(node_id, reason, listed_at))
    return peers


def save(path: Path, peers: list[StoredBadPeer]) -> None:
    """Replace the file at `path` with `peers`, atomically. Raises OSError if it cannot be
    written (the caller logs it: the list in memory still holds)."""
    document = {
        "version": FORMAT_VERSION,
        "entries": [
            {"node_id": p.node_id.hex(), "reason": p.reason, "listed_at": p.listed_at}
            for p in peers
        ],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "w", encoding="utf-8") as file:
        json.dump(document, file, indent=1)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
