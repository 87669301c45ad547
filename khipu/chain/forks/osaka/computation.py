"""Osaka's computation: Prague's with CLZ, the repriced MODEXP and P256VERIFY."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from eth.abc import ComputationAPI
from eth.vm.forks.prague.computation import PragueComputation
from eth_typing import Address

from .constants import MODEXP_ADDRESS, P256VERIFY_ADDRESS
from .modexp import modexp_osaka
from .opcodes import OSAKA_OPCODES
from .p256verify import p256verify

OSAKA_PRECOMPILES: dict[Address, Callable[[ComputationAPI], Any]] = {
    **PragueComputation.get_precompiles(),
    MODEXP_ADDRESS: modexp_osaka,
    P256VERIFY_ADDRESS: p256verify,
}


class OsakaComputation(PragueComputation):
    """Computations of the Osaka fork. Precompile addresses are warm from the start of a
    transaction (EIP-2929) because py-evm's state reads them from this table."""

    opcodes = OSAKA_OPCODES
    _precompiles = OSAKA_PRECOMPILES
