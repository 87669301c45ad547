"""The method table: each namespace module registers its methods with `@rpc_method`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from khipu.rpc.context import RpcContext
    from khipu.rpc.params import Params

Handler = Callable[["RpcContext", "Params"], Any]

METHODS: dict[str, Handler] = {}

# The namespace modules; importing them fills METHODS.
NAMESPACE_MODULES = (
    "khipu.rpc.eth_blocks",
    "khipu.rpc.eth_state",
    "khipu.rpc.eth_transactions",
    "khipu.rpc.eth_logs",
    "khipu.rpc.eth_call",
    "khipu.rpc.eth_simulate",
    "khipu.rpc.eth_fees",
    "khipu.rpc.eth_config",
    "khipu.rpc.debug",
    "khipu.rpc.debug_trace",
    "khipu.rpc.net_web3",
    "khipu.rpc.khipu",
)


def rpc_method(name: str) -> Callable[[Handler], Handler]:
    """Register the decorated function as the handler of JSON-RPC method `name`."""

    def register(handler: Handler) -> Handler:
        if name in METHODS:
            raise ValueError(f"JSON-RPC method {name} registered twice")
        METHODS[name] = handler
        return handler

    return register


def load_methods() -> dict[str, Handler]:
    """Every registered method, importing the namespace modules on first use."""
    import importlib

    for module in NAMESPACE_MODULES:
        importlib.import_module(module)
    return METHODS
