"""geth's flag names map onto RpcConfig; health comes from the node's callable or the default."""

from __future__ import annotations

import argparse

from khipu.rpc.config import RpcConfig, add_rpc_arguments, rpc_config_from_args
from khipu.rpc.context import RpcContext
from khipu.rpc.dispatch import Dispatcher
from khipu.rpc.registry import load_methods


def parse(*argv: str) -> RpcConfig:
    parser = argparse.ArgumentParser()
    add_rpc_arguments(parser)
    return rpc_config_from_args(parser.parse_args(list(argv)))


def test_defaults_are_local_and_closed() -> None:
    config = parse()
    assert (config.host, config.port) == ("127.0.0.1", 8545)
    assert config.cors_domains == () and config.vhosts == ("localhost",)


def test_geth_flags() -> None:
    config = parse(
        "--http.addr", "0.0.0.0", "--http.port", "9545",
        "--http.corsdomain", "a.example, b.example", "--http.vhosts", "*",
        "--rpc.batch-request-limit", "50", "--rpc.evmtimeout", "500ms",
    )  # fmt: skip
    assert (config.host, config.port) == ("0.0.0.0", 9545)
    assert config.cors_domains == ("a.example", "b.example") and config.vhosts == ("*",)
    assert config.batch_request_limit == 50 and config.evm_timeout == 0.5
    assert parse("--rpc.evmtimeout", "2m").evm_timeout == 120.0


def test_health_comes_from_the_node_when_given() -> None:
    snapshot = {"ts": "t", "actors": [{"actor": "StorageWriter", "state": "running"}]}
    context = RpcContext(None, RpcConfig(), health=lambda: snapshot)  # type: ignore[arg-type]
    assert Dispatcher(context, load_methods()).call("khipu_health", []) == snapshot
    alone = RpcContext(None, RpcConfig())  # type: ignore[arg-type]
    actors = Dispatcher(alone, load_methods()).call("khipu_health", [])["actors"]
    assert [a["actor"] for a in actors] == ["RpcServer"]
