"""net_, web3_, admin_ and txpool_ methods: what is true of a node with no peers and no pool."""

from __future__ import annotations

import platform

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


@rpc_method("net_listening")
def net_listening(ctx: RpcContext, params: Params) -> bool:
    return False  # this RPC server does not listen for devp2p peers itself


@rpc_method("net_peerCount")
def net_peer_count(ctx: RpcContext, params: Params) -> str:
    return "0x0"


@rpc_method("admin_peers")
def admin_peers(ctx: RpcContext, params: Params) -> list[Json]:
    return []


@rpc_method("admin_nodeInfo")
def admin_node_info(ctx: RpcContext, params: Params) -> Json:
    view = ctx.view
    head = view.head()
    genesis = view.header_by_number(0)
    return {
        "name": client_version(ctx),
        "enode": "",
        "id": "",
        "ip": "",
        "ports": {"discovery": 0, "listener": 0},
        "listenAddr": "",
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
