"""Osaka's opcodes: Prague's plus CLZ (EIP-7939)."""

from __future__ import annotations

import copy

from eth.abc import ComputationAPI, OpcodeAPI
from eth.vm.forks.prague.opcodes import PRAGUE_OPCODES
from eth.vm.opcode import as_opcode

from .constants import CLZ_GAS, CLZ_OPCODE


def count_leading_zeros(computation: ComputationAPI) -> None:
    """CLZ: replace the top of the stack by its number of leading zero bits, 256 for zero."""
    value = computation.stack_pop1_int()
    computation.stack_push_int(256 - value.bit_length())


OSAKA_OPCODES: dict[int, OpcodeAPI] = {
    **copy.deepcopy(PRAGUE_OPCODES),
    CLZ_OPCODE: as_opcode(logic_fn=count_leading_zeros, mnemonic="CLZ", gas_cost=CLZ_GAS),
}
