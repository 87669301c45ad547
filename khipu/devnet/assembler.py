"""A tiny EVM assembler: mnemonics, numbers, named constants and labels to bytecode.

The source is whitespace-separated tokens; `;` starts a comment to the end of the line.

    start:              defines the label `start` at the current offset (emits nothing)
    JUMPDEST            an opcode by its mnemonic (py-evm's names; KECCAK256 is SHA3)
    PUSH1 0x20          a push with its operand: a number, a constant name or a label
    PUSH2 start         labels are offsets, resolved after the whole program is laid out
    PUSH 1000           PUSH picks the shortest push for a number or constant (PUSH0 for 0)

Labels must be pushed with an explicit size (PUSH2 is enough for any contract under 64 KiB),
so every offset is known in one pass.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import eth.vm.opcode_values as opcode_values

OPCODES: dict[str, int] = {
    name: value
    for name, value in vars(opcode_values).items()
    if name.isupper() and isinstance(value, int)
}
OPCODES["KECCAK256"] = OPCODES["SHA3"]
PUSH1 = OPCODES["PUSH1"]


class AssemblyError(ValueError):
    """The source is not valid assembly; says which token, at which line."""


@dataclass(frozen=True)
class _Push:
    size: int
    operand: str
    line: int


def assemble(source: str, constants: Mapping[str, int] | None = None) -> bytes:
    """The bytecode of `source`, with `constants` usable as push operands.

    Raises AssemblyError for an unknown mnemonic, a missing or oversized operand, an undefined or
    duplicate label, or a label pushed without a size.
    """
    constants = dict(constants or {})
    items: list[int | _Push] = []
    labels: dict[str, int] = {}
    offset = 0
    tokens = list(_tokens(source))
    index = 0
    while index < len(tokens):
        token, line = tokens[index]
        index += 1
        if token.endswith(":"):
            name = token[:-1]
            if name in labels or name in constants or name.upper() in OPCODES:
                raise AssemblyError(f"line {line}: label {name!r} is defined twice or reserved")
            labels[name] = offset
            continue
        mnemonic = token.upper()
        if mnemonic == "PUSH" or (mnemonic.startswith("PUSH") and mnemonic != "PUSH0"):
            if index >= len(tokens):
                raise AssemblyError(f"line {line}: {token} needs an operand")
            operand, _ = tokens[index]
            index += 1
            size = (
                _shortest_size(_value(operand, constants, {}, line))
                if mnemonic == "PUSH"
                else _push_size(mnemonic, line)
            )
            items.append(_Push(size, operand, line))
            offset += 1 + size
            continue
        if mnemonic not in OPCODES:
            raise AssemblyError(f"line {line}: unknown mnemonic {token!r}")
        items.append(OPCODES[mnemonic])
        offset += 1
    return b"".join(_encode(item, constants, labels) for item in items)


def _tokens(source: str) -> list[tuple[str, int]]:
    found = []
    for number, text in enumerate(source.splitlines(), start=1):
        for token in text.split(";", 1)[0].split():
            found.append((token, number))
    return found


def _push_size(mnemonic: str, line: int) -> int:
    try:
        size = int(mnemonic[4:])
    except ValueError:
        raise AssemblyError(f"line {line}: unknown mnemonic {mnemonic!r}") from None
    if not 1 <= size <= 32:
        raise AssemblyError(f"line {line}: no push of {size} bytes")
    return size


def _shortest_size(value: int) -> int:
    return (value.bit_length() + 7) // 8


def _value(operand: str, constants: Mapping[str, int], labels: Mapping[str, int], line: int) -> int:
    if operand in constants:
        return constants[operand]
    if operand in labels:
        return labels[operand]
    try:
        return int(operand, 0)
    except ValueError:
        raise AssemblyError(f"line {line}: unknown operand {operand!r}") from None


def _encode(item: int | _Push, constants: Mapping[str, int], labels: Mapping[str, int]) -> bytes:
    if isinstance(item, int):
        return bytes([item])
    value = _value(item.operand, constants, labels, item.line)
    if value < 0 or value.bit_length() > 8 * item.size:
        raise AssemblyError(f"line {item.line}: {item.operand} does not fit in {item.size} bytes")
    if item.size == 0:
        return bytes([OPCODES["PUSH0"]])
    return bytes([PUSH1 + item.size - 1]) + value.to_bytes(item.size, "big")
