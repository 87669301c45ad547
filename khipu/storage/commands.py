"""`khipu db check | repair | stats --datadir DIR`: look after the Kesque store at DIR/kesque."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `db` command and its sub-commands."""
    db = subparsers.add_parser("db", help="check, repair or count the Kesque store")
    actions = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    for name, handler, text in (
        ("check", run_check, "verify every record's CRC32C and every index entry"),
        ("repair", run_repair, "rebuild the indexes (and the commit file) from the logs"),
        ("stats", run_stats, "records, bytes and index load factor per topic"),
    ):
        parser = actions.add_parser(name, help=text, description=text)
        parser.add_argument("--datadir", required=True, type=Path, help="the node's data folder")
        parser.set_defaults(handler=handler)


def store_path(args: argparse.Namespace) -> Path:
    return Path(args.datadir) / "kesque"


def run_check(args: argparse.Namespace) -> int:
    """Print every problem found; exit 1 if any (2 if there is no store)."""
    from khipu.storage.kesque.check import check_store
    from khipu.storage.kesque.errors import StoreMissing

    try:
        report = check_store(store_path(args))
    except StoreMissing as error:
        print(f"error: {error}")
        return 2
    for note in report.notes:
        print(f"note: {note}")
    for problem in report.problems:
        print(f"PROBLEM: {problem}")
    verdict = "ok" if report.ok else f"{len(report.problems)} problems"
    print(f"{report.records_checked} records checked: {verdict}")
    return 0 if report.ok else 1


def run_repair(args: argparse.Namespace) -> int:
    """Rebuild the indexes; exit 1 if the store is locked by a running writer."""
    from khipu.storage.kesque.errors import StoreLocked
    from khipu.storage.kesque.repair import repair_store

    try:
        report = repair_store(store_path(args))
    except StoreLocked as error:
        print(f"error: {error}; stop the node first")
        return 1
    for action in report.actions:
        print(action)
    return 0


def run_stats(args: argparse.Namespace) -> int:
    """Print one line per topic; exit 2 if there is no store."""
    from khipu.storage.kesque.check import store_stats
    from khipu.storage.kesque.errors import StoreMissing

    try:
        stats = store_stats(store_path(args))
    except StoreMissing as error:
        print(f"error: {error}")
        return 2
    print(f"{'topic':10} {'kind':6} {'records':>12} {'bytes':>15} {'segs':>5} {'last':>10} load")
    for topic in stats:
        load = f"{topic.load_factor:.3f} of {topic.index_slots}" if topic.kind == "hash" else "-"
        print(
            f"{topic.name:10} {topic.kind:6} {topic.records:12} {topic.bytes:15} "
            f"{topic.segments:5} {topic.last_offset:10} {load}"
        )
    return 0
