"""JSON-RPC settings and their command-line flags (geth's names); light to import.

`khipu run` builds its parser from here without loading py-evm.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass


@dataclass(frozen=True)
class RpcConfig:
    """How the server listens and what it allows (geth's flag names in parentheses)."""

    host: str = "127.0.0.1"  # --http.addr
    port: int = 8545  # --http.port
    cors_domains: tuple[str, ...] = ()  # --http.corsdomain
    vhosts: tuple[str, ...] = ("localhost",)  # --http.vhosts
    batch_request_limit: int = 1000  # --rpc.batch-request-limit
    batch_response_max_size: int = 25_000_000  # --rpc.batch-response-max-size
    evm_timeout: float = 5.0  # --rpc.evmtimeout, seconds
    max_request_size: int = 5 * 1024 * 1024  # bytes of one HTTP body
    gas_cap: int = 50_000_000  # --rpc.gascap
    logs_block_range: int = 10_000  # most blocks one eth_getLogs may scan
    logs_max_results: int = 10_000
    filter_timeout: float = 300.0  # an idle filter is dropped after this many seconds
    client_version: str = "khipu"
    ws_port: int | None = None  # --ws --ws.port: also serve on this port (WebSocket and HTTP)


def add_rpc_arguments(parser: argparse.ArgumentParser) -> None:
    """geth's HTTP JSON-RPC flags, for `khipu run`."""
    group = parser.add_argument_group("JSON-RPC")
    defaults = RpcConfig()
    group.add_argument(
        "--http.addr",
        dest="http_addr",
        default=defaults.host,
        help="address the JSON-RPC server listens on (default %(default)s)",
    )
    group.add_argument(
        "--http.port",
        dest="http_port",
        type=int,
        default=defaults.port,
        help="JSON-RPC port (default %(default)s; 0 picks a free port)",
    )
    group.add_argument(
        "--http.corsdomain",
        dest="http_corsdomain",
        default="",
        help="comma-separated origins allowed by CORS (default: none)",
    )
    group.add_argument(
        "--http.vhosts",
        dest="http_vhosts",
        default=",".join(defaults.vhosts),
        help="comma-separated Host names accepted ('*' for any; default %(default)s)",
    )
    group.add_argument(
        "--rpc.batch-request-limit",
        dest="rpc_batch_request_limit",
        type=int,
        default=defaults.batch_request_limit,
        help="most requests in one batch (default %(default)s)",
    )
    group.add_argument(
        "--rpc.evmtimeout",
        dest="rpc_evmtimeout",
        type=_duration,
        default=defaults.evm_timeout,
        help="time limit of eth_call and eth_estimateGas, e.g. 5s (default 5s)",
    )
    group.add_argument(
        "--rpc.gascap",
        dest="rpc_gascap",
        type=int,
        default=defaults.gas_cap,
        help="gas limit of eth_call and eth_estimateGas (default %(default)s)",
    )


def add_ws_arguments(parser: argparse.ArgumentParser) -> None:
    """geth's --ws and --ws.port. WebSocket upgrades are also accepted on the HTTP port."""
    group = parser.add_argument_group("WebSocket")
    group.add_argument("--ws", action="store_true", help="serve WebSocket JSON-RPC on --ws.port")
    group.add_argument(
        "--ws.port", dest="ws_port", type=int, default=8546, help="(default %(default)s)"
    )


def rpc_config_from_args(args: argparse.Namespace) -> RpcConfig:
    """The RpcConfig for parsed `add_rpc_arguments` flags."""
    return RpcConfig(
        host=args.http_addr,
        port=args.http_port,
        cors_domains=_split(args.http_corsdomain),
        vhosts=_split(args.http_vhosts),
        batch_request_limit=args.rpc_batch_request_limit,
        evm_timeout=args.rpc_evmtimeout,
        gas_cap=args.rpc_gascap,
        ws_port=args.ws_port if getattr(args, "ws", False) else None,
    )


def _split(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _duration(text: str) -> float:
    """'5s', '500ms', '1m' or plain seconds, as seconds."""
    text = text.strip()
    for suffix, scale in (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * scale
    return float(text)
