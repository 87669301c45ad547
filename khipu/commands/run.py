"""`khipu run`: run the node as a supervised actor tree until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

from khipu.commands.import_chain import add_execution_arguments, execution_workers
from khipu.config import add_chain_arguments
from khipu.logs import LOG_FORMATS

DEFAULT_HEALTH_INTERVAL = 60.0
DEFAULT_STALL_SECONDS = 60.0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run the node",
        description="Open the datadir, bring the chain up to date and serve until Ctrl-C. "
        "On the dev network the node generates and imports a deterministic dev chain on "
        "first start. Exit code 0 after a clean stop, 1 when an actor kept failing and "
        "supervision gave up, 2 for a bad datadir or arguments, 130 when a second signal "
        "forced the exit.",
    )
    add_chain_arguments(parser)
    parser.add_argument(
        "--import",
        dest="import_files",
        type=Path,
        nargs="+",
        default=[],
        metavar="FILE",
        help="import and verify these .rlp/.era1 files (resuming after the stored head)",
    )
    parser.add_argument(
        "--no-seal-check",
        action="store_true",
        help="skip Ethash seal checks (chains made with fake seals)",
    )
    parser.add_argument("--log.format", dest="log_format", choices=LOG_FORMATS)
    parser.add_argument("--log.level", dest="log_level")
    parser.add_argument(
        "--health.interval",
        dest="health_interval",
        type=float,
        default=DEFAULT_HEALTH_INTERVAL,
        metavar="S",
        help="seconds between health lines (default 60); import progress lines come every "
        "10 s, or every S if that is shorter",
    )
    parser.add_argument(
        "--health.stall",
        dest="health_stall",
        type=float,
        default=DEFAULT_STALL_SECONDS,
        metavar="S",
        help="seconds an actor may leave heartbeats unanswered before it is restarted "
        "(default 60; a block being executed delays the writer's answer)",
    )
    parser.add_argument(
        "--metrics", action="store_true", help="serve Prometheus metrics at /metrics"
    )
    parser.add_argument(
        "--metrics.addr",
        dest="metrics_addr",
        default="127.0.0.1",
        help="metrics address (default 127.0.0.1)",
    )
    parser.add_argument(
        "--metrics.port",
        dest="metrics_port",
        type=int,
        default=6060,
        help="metrics port (default 6060; 0 picks a free one)",
    )
    add_execution_arguments(parser)
    add_node_rpc_arguments(parser)
    add_node_p2p_arguments(parser)
    parser.set_defaults(handler=run)


def add_node_p2p_arguments(parser: argparse.ArgumentParser) -> None:
    """devp2p flags (geth's names): serve eth/68 to peers and answer discv4."""
    group = parser.add_argument_group("devp2p")
    group.add_argument(
        "--port",
        type=int,
        metavar="P",
        help="TCP (RLPx) and UDP (discv4) port (default 30303; 0 picks a free one). A busy "
        "port given here stops the node with exit 2; a busy default port only turns devp2p off",
    )
    group.add_argument(
        "--p2p.addr",
        dest="p2p_addr",
        default="127.0.0.1",
        help="address devp2p binds and advertises in its enode (default %(default)s)",
    )
    group.add_argument("--nodiscover", action="store_true", help="no discv4 (RLPx only)")
    group.add_argument(
        "--maxpeers",
        type=int,
        default=50,
        metavar="N",
        help="most peers at once; more are told 'too many peers' (default %(default)s)",
    )
    group.add_argument(
        "--bootnodes",
        default="",
        metavar="ENODES",
        help="comma-separated enode URLs to bond with and look up on start",
    )
    group.add_argument("--no-p2p", dest="no_p2p", action="store_true", help="no devp2p at all")


def add_node_rpc_arguments(parser: argparse.ArgumentParser) -> None:
    """JSON-RPC flags (geth's names); the server is on unless --no-http."""
    from khipu.rpc.config import add_rpc_arguments, add_ws_arguments

    add_rpc_arguments(parser)
    add_ws_arguments(parser)
    parser.add_argument(
        "--no-http", dest="no_http", action="store_true", help="do not serve JSON-RPC"
    )


def p2p_config_from_args(args: argparse.Namespace) -> Any:
    """The P2PConfig the devp2p flags ask for."""
    from khipu.p2p.host import DEFAULT_PORT, P2PConfig

    return P2PConfig(
        port=DEFAULT_PORT if args.port is None else args.port,
        host=args.p2p_addr,
        discovery=not args.nodiscover,
        max_peers=args.maxpeers,
        bootnodes=tuple(url.strip() for url in args.bootnodes.split(",") if url.strip()),
        port_chosen=args.port is not None,
    )


def run(args: argparse.Namespace) -> int:
    """Run the node; the exit code is as the description says."""
    from khipu.actors.health import HealthConfig, LogFormat
    from khipu.chain.config import GenesisError
    from khipu.config import select_chain
    from khipu.devnet.generate import DEV_CHAIN
    from khipu.logs import configure_logging
    from khipu.node import (
        MetricsSettings,
        MetricsUnavailable,
        NodeSettings,
        P2PUnavailable,
        RpcUnavailable,
        run_node,
    )
    from khipu.node_actors.execution import ExecutionSettings
    from khipu.node_actors.faults import FaultPlan
    from khipu.rpc.config import rpc_config_from_args
    from khipu.storage.chain_store import GenesisMismatch
    from khipu.storage.leveldb import StoreLocked

    for path in args.import_files:
        if not path.is_file():
            print(f"error: {path}: no such file", file=sys.stderr)
            return 2
    if args.maxpeers < 0 or (args.port is not None and not 0 <= args.port < 65536):
        print("error: --maxpeers must be >= 0 and --port in 0..65535", file=sys.stderr)
        return 2
    if args.health_interval <= 0 or args.health_stall <= 0:
        print("error: --health.interval and --health.stall must be > 0", file=sys.stderr)
        return 2
    try:
        selection = select_chain(args)
        workers = execution_workers(args)
        faults = FaultPlan.from_environment()
    except (GenesisError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    log_format: LogFormat = "json" if args.log_format == "json" else "logfmt"
    configure_logging(log_format, args.log_level or "info")
    heartbeat = min(5.0, args.health_interval, args.health_stall)
    settings = NodeSettings(
        import_files=tuple(args.import_files),
        dev_chain=DEV_CHAIN if selection.name == "dev" else None,
        check_seal=not args.no_seal_check,
        execution=None
        if workers is None
        else ExecutionSettings(workers=workers, always_parallel=args.always_parallel),
        health=HealthConfig(
            heartbeat_interval=heartbeat,
            heartbeat_timeout=heartbeat / 2,
            stall_misses=max(1, math.ceil(args.health_stall / heartbeat)),
            log_interval=args.health_interval,
            log_format=log_format,
        ),
        metrics=MetricsSettings(args.metrics_addr, args.metrics_port) if args.metrics else None,
        progress_interval=min(10.0, args.health_interval),
        rpc=None if args.no_http else rpc_config_from_args(args),
        p2p=None if args.no_p2p else p2p_config_from_args(args),
    )
    try:
        return run_node(selection, settings, faults)
    except (GenesisMismatch, StoreLocked) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (MetricsUnavailable, RpcUnavailable, P2PUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
