"""net_, web3_, admin_ and txpool_ methods: what is true of a node with no peers and no pool."""

from __future__ import annotations

import platform
from typing import Any

from eth_hash.auto import keccak

from khipu.rpc.context import RpcContext
from khipu.rpc.formatting import Json, data
from khipu.rpc.params import Params, decode_data
from khipu.rpc.registry import rpc_method


def client_version(ctx: RpcContext) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        release = version("khipu")
    except PackageNotFoundError:
        release = "dev"
    system = platform.system().lower()
    return f"{ctx.config.client_version}/v{release}/{system}/python{platform.python_version()}"


@rpc_method("web3_clientVersion")
def web3_client_version(ctx: RpcContext, params: Params) -> str:
    return client_version(ctx)


@rpc_method("web3_sha3")
def web3_sha3(ctx: RpcContext, params: Params) -> str:
    return data(keccak(params.decode(0, decode_data)))


@rpc_method("net_version")
def net_version(ctx: RpcContext, params: Params) -> str:
    return str(ctx.view.chain_id)


def p2p_info(ctx: RpcContext) -> dict[str, Any]:
    """The node's devp2p facts, or what is true without devp2p: not listening, no peers."""
    if ctx.p2p_info is None:
        return {"listening": False, "peers": 0}
    return ctx.p2p_info()


@rpc_method("net_listening")
def net_listening(ctx: RpcContext, params: Params) -> bool:
    return bool(p2p_info(ctx)["listening"])


@rpc_method("net_peerCount")
def net_peer_count(ctx: RpcContext, params: Params) -> str:
    return hex(int(p2p_info(ctx)["peers"]))


@rpc_method("admin_peers")
def admin_peers(ctx: RpcContext, params: Params) -> list[Json]:
    peers: list[Json] = p2p_info(ctx).get("peer_infos", [])
    return peers


@rpc_method("admin_nodeInfo")
def admin_node_info(ctx: RpcContext, params: Params) -> Json:
    view = ctx.view
    head = view.head()
    genesis = view.header_by_number(0)
    p2p = p2p_info(ctx)
    return {
        "name": client_version(ctx),
        "enode": p2p.get("enode", ""),
        "id": p2p.get("id", ""),
        "ip": p2p.get("ip", ""),
        "ports": p2p.get("ports", {"discovery": 0, "listener": 0}),
        "listenAddr": p2p.get("listenAddr", ""),
        "protocols": {
            "eth": {
                "network": view.chain_id,
                "genesis": data(genesis.hash) if genesis else None,
                "head": data(head.hash),
                "config": {"chainId": view.chain_id},
            }
        },
    }


@rpc_method("txpool_status")
def txpool_status(ctx: RpcContext, params: Params) -> Json:
    return {"pending": "0x0", "queued": "0x0"}


@rpc_method("txpool_content")
def txpool_content(ctx: RpcContext, params: Params) -> Json:
    return {"pending": {}, "queued": {}}


@rpc_method("txpool_contentFrom")
def txpool_content_from(ctx: RpcContext, params: Params) -> Json:
    params.address(0)
    return {"pending": {}, "queued": {}}
