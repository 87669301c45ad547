"""`khipu run`: run the node as a supervised actor tree until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

from khipu.commands.import_chain import add_execution_arguments, execution_workers
from khipu.config import add_chain_arguments, add_storage_arguments
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
    add_storage_arguments(parser)
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
    """devp2p flags (geth's names); each may also come from the [p2p] table of --config."""
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
        help="address devp2p binds and advertises in its enode (default 127.0.0.1)",
    )
    group.add_argument(
        "--nodiscover", action="store_true", default=None, help="no discv4 (RLPx only)"
    )
    group.add_argument(
        "--nosync",
        action="store_true",
        default=None,
        help="serve peers but do not download blocks from them (no RegularSync)",
    )
    group.add_argument(
        "--maxpeers",
        type=int,
        metavar="N",
        help="most peers at once, a third of them dialled, the rest inbound (default 50)",
    )
    group.add_argument(
        "--bootnodes",
        metavar="ENODES",
        help="comma-separated enode URLs to bond with, look up and dial on start",
    )
    group.add_argument(
        "--staticnodes",
        metavar="ENODES",
        help="comma-separated enode URLs always dialled (and accepted over the inbound share)",
    )
    group.add_argument(
        "--p2p.badpeer.expiry",
        dest="p2p_badpeer_expiry",
        type=float,
        metavar="S",
        help="seconds a peer dropped for its score is neither dialled nor accepted (default 3600)",
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
    """The P2PConfig the devp2p flags (or the config file's [p2p] table) ask for.

    Raises ValueError for a port outside 0..65535, a negative --maxpeers or expiry.
    """
    from khipu.p2p.host import (
        DEFAULT_BAD_PEER_EXPIRY,
        DEFAULT_MAX_PEERS,
        DEFAULT_PORT,
        P2PConfig,
    )

    port = DEFAULT_PORT if args.port is None else int(args.port)
    max_peers = DEFAULT_MAX_PEERS if args.maxpeers is None else int(args.maxpeers)
    expiry = getattr(args, "p2p_badpeer_expiry", None)
    expiry = DEFAULT_BAD_PEER_EXPIRY if expiry is None else float(expiry)
    if max_peers < 0 or not 0 <= port < 65536 or expiry < 0:
        raise ValueError("--maxpeers and --p2p.badpeer.expiry must be >= 0, --port in 0..65535")
    return P2PConfig(
        port=port,
        host=args.p2p_addr or "127.0.0.1",
        discovery=not args.nodiscover,
        sync=not getattr(args, "nosync", None),
        max_peers=max_peers,
        bootnodes=enode_list(args.bootnodes),
        staticnodes=enode_list(getattr(args, "staticnodes", None)),
        bad_peer_expiry=expiry,
        port_chosen=args.port is not None,
    )


def enode_list(value: str | list[str] | None) -> tuple[str, ...]:
    """Enode URLs from a comma-separated flag or a TOML list, blanks dropped."""
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else [str(item) for item in value]
    return tuple(url.strip() for url in items if url.strip())


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
    if args.health_interval <= 0 or args.health_stall <= 0:
        print("error: --health.interval and --health.stall must be > 0", file=sys.stderr)
        return 2
    try:
        selection = select_chain(args)
        workers = execution_workers(args)
        faults = FaultPlan.from_environment()
        p2p = None if args.no_p2p else p2p_config_from_args(args)
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
        p2p=p2p,
    )
    try:
        return run_node(selection, settings, faults)
    except (GenesisMismatch, StoreLocked) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (MetricsUnavailable, RpcUnavailable, P2PUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
