"""`khipu status`: the health of a running node's actors, as a table or as JSON."""

from __future__ import annotations

import argparse
import json
import sys

DEFAULT_RPC_URL = "http://127.0.0.1:8545"

EXIT_ALL_RUNNING = 0
EXIT_NO_ANSWER = 1
EXIT_NOT_ALL_RUNNING = 2


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `status` sub-command."""
    parser = subparsers.add_parser(
        "status",
        help="print the health of a running node's actors",
        description=(
            "Ask a running node for its actors' health (JSON-RPC khipu_health) and print it. "
            f"Exit code {EXIT_ALL_RUNNING}: every actor running; {EXIT_NO_ANSWER}: the node did "
            f"not answer; {EXIT_NOT_ALL_RUNNING}: some actor is restarting, stalled or stopped."
        ),
    )
    parser.add_argument(
        "--rpc",
        "--rpc-url",
        dest="rpc_url",
        default=DEFAULT_RPC_URL,
        metavar="URL",
        help=f"the node's JSON-RPC URL (default {DEFAULT_RPC_URL})",
    )
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for it")
    parser.add_argument("--json", action="store_true", help="print the snapshot as JSON")
    parser.set_defaults(handler=run_status)


def run_status(args: argparse.Namespace) -> int:
    """Fetch and print the health snapshot; the exit code says whether all actors run."""
    from khipu.actors.status import HealthUnavailable, fetch_health, format_status_table

    try:
        snapshot = fetch_health(args.rpc_url, timeout=args.timeout)
    except HealthUnavailable as error:
        print(f"khipu status: {error}", file=sys.stderr)
        return EXIT_NO_ANSWER
    if args.json:
        print(json.dumps(snapshot, indent=2, sort_keys=True))
    else:
        print(format_status_table(snapshot))
    states = {actor.get("state") for actor in snapshot["actors"]}
    return EXIT_ALL_RUNNING if states <= {"running"} else EXIT_NOT_ALL_RUNNING
