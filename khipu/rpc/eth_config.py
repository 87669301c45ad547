"""eth_config (EIP-7910): the fork the head runs under, the next one and the last one scheduled."""

from __future__ import annotations

from typing import Any

from khipu.rpc.context import RpcContext
from khipu.rpc.errors import ServerError
from khipu.rpc.formatting import Json, data, quantity
from khipu.rpc.params import Params
from khipu.rpc.registry import rpc_method

_BASE_PRECOMPILES = {
    "ECREC": 1,
    "SHA256": 2,
    "RIPEMD160": 3,
    "ID": 4,
    "MODEXP": 5,
    "BN254_ADD": 6,
    "BN254_MUL": 7,
    "BN254_PAIRING": 8,
    "BLAKE2F": 9,
    "KZG_POINT_EVALUATION": 0x0A,
}
_PRAGUE_PRECOMPILES = {
    "BLS12_G1ADD": 0x0B,
    "BLS12_G1MSM": 0x0C,
    "BLS12_G2ADD": 0x0D,
    "BLS12_G2MSM": 0x0E,
    "BLS12_PAIRING_CHECK": 0x0F,
    "BLS12_MAP_FP_TO_G1": 0x10,
    "BLS12_MAP_FP2_TO_G2": 0x11,
}
_OSAKA_PRECOMPILES = {"P256VERIFY": 0x100}

_BEACON_ROOTS = "0x000f3df6d732807ef1319fb7b8bb8522d0beac02"
_PRAGUE_SYSTEM_CONTRACTS = {
    "CONSOLIDATION_REQUEST_PREDEPLOY_ADDRESS": "0x0000bbddc7ce488642fb579f8b00f3a590007251",
    "HISTORY_STORAGE_ADDRESS": "0x0000f90827f1c53a10cb7a02335b175320002935",
    "WITHDRAWAL_REQUEST_PREDEPLOY_ADDRESS": "0x00000961ef480eb55e80d19ad83579a64c007002",
}
_MAINNET_DEPOSIT_CONTRACT = "0x00000000219ab540356cbb839cbe05303d7705fa"

# Forks that eth_config describes, in activation order; bpoN forks follow osaka.
_FORK_ORDER = ("cancun", "prague", "osaka", "bpo1", "bpo2", "bpo3", "bpo4", "bpo5")


def _at_least(fork: str, than: str) -> bool:
    return _FORK_ORDER.index(fork) >= _FORK_ORDER.index(than)


def fork_config(ctx: RpcContext, fork: str, activation: int) -> Json:
    """One fork's entry: activation time, blob schedule, chain id, fork id, precompiles."""
    view = ctx.view
    rules = view.rules
    precompiles = dict(_BASE_PRECOMPILES)
    if _at_least(fork, "prague"):
        precompiles.update(_PRAGUE_PRECOMPILES)
    if _at_least(fork, "osaka"):
        precompiles.update(_OSAKA_PRECOMPILES)
    system: dict[str, str] = {"BEACON_ROOTS_ADDRESS": _BEACON_ROOTS}
    if _at_least(fork, "prague"):
        system.update(_PRAGUE_SYSTEM_CONTRACTS)
        deposit = rules.config.deposit_contract_address
        system["DEPOSIT_CONTRACT_ADDRESS"] = data(deposit) if deposit else _MAINNET_DEPOSIT_CONTRACT
    genesis = view.header_by_number(0)
    assert genesis is not None
    fork_id = rules.fork_points(genesis.hash, genesis.timestamp).fork_id(2**64 - 1, activation)
    schedule = rules.blob_schedule(fork)
    entry: Json = {
        "activationTime": activation,
        "blobSchedule": None
        if schedule is None
        else {
            "target": schedule.target_blobs_per_block,
            "max": schedule.max_blobs_per_block,
            "baseFeeUpdateFraction": schedule.base_fee_update_fraction,
        },
        "chainId": quantity(view.chain_id),
        "forkId": data(fork_id.fork_hash),
        "precompiles": {
            name: data(address.to_bytes(20, "big")) for name, address in sorted(precompiles.items())
        },
        "systemContracts": dict(sorted(system.items())),
    }
    return entry


@rpc_method("eth_config")
def eth_config(ctx: RpcContext, params: Params) -> Json:
    head = ctx.view.head()
    scheduled = sorted(
        (
            (time, fork)
            for fork, time in ctx.view.rules.config.time_forks.items()
            if fork in _FORK_ORDER
        ),
        key=lambda entry: (entry[0], _FORK_ORDER.index(entry[1])),
    )
    active = [entry for entry in scheduled if entry[0] <= head.timestamp]
    if not active:
        raise ServerError("eth_config is not supported before the Cancun fork")
    upcoming = [entry for entry in scheduled if entry[0] > head.timestamp]
    result: dict[str, Any] = {"current": fork_config(ctx, active[-1][1], active[-1][0])}
    result["next"] = fork_config(ctx, upcoming[0][1], upcoming[0][0]) if upcoming else None
    result["last"] = fork_config(ctx, upcoming[-1][1], upcoming[-1][0]) if upcoming else None
    return result
