"""geth's struct logger (the default tracer) and callTracer, on py-evm opcode hooks."""

from __future__ import annotations

from typing import Any

from eth.abc import ComputationAPI
from eth.exceptions import Halt, Revert, VMError

from khipu.rpc.formatting import Json, data, quantity

_CALL_TYPES = {0xF1: "CALL", 0xF2: "CALLCODE", 0xF4: "DELEGATECALL", 0xFA: "STATICCALL"}
_CREATE_TYPES = {0xF0: "CREATE", 0xF5: "CREATE2"}
_GETH_NAMES = {"SHA3": "KECCAK256"}  # py-evm mnemonics that geth spells otherwise


def _as_int(value: int | bytes) -> int:
    return value if isinstance(value, int) else int.from_bytes(value, "big")


class StructLogger:
    """One entry per executed opcode: pc, op, gas, gasCost, depth, stack (+ memory, storage)."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.with_stack = not config.get("disableStack", False)
        self.with_storage = not config.get("disableStorage", False)
        self.with_memory = bool(config.get("enableMemory", False))
        self.with_return_data = bool(config.get("enableReturnData", False))
        self.limit = int(config.get("limit", 0) or 0)
        self.logs: list[Json] = []
        self._storage: dict[bytes, dict[str, str]] = {}

    def __call__(self, computation: ComputationAPI, opcode: int, fn: Any) -> Any:
        if self.limit and len(self.logs) >= self.limit:
            return None
        gas_before = computation.get_gas_remaining()
        code = computation.code
        pc = code.program_counter - 1
        if opcode == 0 and (pc < 0 or pc >= len(code) or code[pc] != 0):
            pc = code.program_counter  # the implicit STOP past the end of the code
        entry: Json = {
            "pc": pc,
            "op": _GETH_NAMES.get(name := getattr(fn, "mnemonic", ""), name)
            or f"opcode {opcode:#x}",
            "gas": gas_before,
            "gasCost": 0,
            "depth": computation.msg.depth + 1,
        }
        stack = computation._stack.values  # type: ignore[attr-defined]
        if self.with_stack:
            entry["stack"] = [quantity(_as_int(v)) for v in stack]
        if self.with_memory:
            memory = bytes(computation._memory._bytes)  # type: ignore[attr-defined]
            entry["memory"] = ["0x" + memory[i : i + 32].hex() for i in range(0, len(memory), 32)]
        if self.with_return_data and computation.return_data:
            entry["returnData"] = data(computation.return_data)
        refund = computation.get_gas_refund()
        if refund:
            entry["refund"] = refund
        if self.with_storage and opcode in (0x54, 0x55) and stack:
            address = bytes(computation.msg.storage_address)
            slot = _as_int(stack[-1])
            slots = self._storage.setdefault(address, {})
            key = data(slot.to_bytes(32, "big"))
            if opcode == 0x55 and len(stack) >= 2:
                slots[key] = data(_as_int(stack[-2]).to_bytes(32, "big"))
            else:
                value = computation.state.get_storage(computation.msg.storage_address, slot)
                slots[key] = data(value.to_bytes(32, "big"))
            entry["storage"] = dict(slots)
        self.logs.append(entry)
        children_before = len(computation.children)

        def after(error: BaseException | None) -> None:
            if opcode in _CALL_TYPES or opcode in _CREATE_TYPES:
                # geth charges the callee's gas to the call step; py-evm returns the unused
                # part before we look, so add back what the child did not use.
                spent = gas_before - computation.get_gas_remaining()
                if len(computation.children) > children_before:
                    child = computation.children[-1]
                    spent += child.get_gas_remaining()
                entry["gasCost"] = spent
            else:
                entry["gasCost"] = gas_before - computation.get_gas_remaining()
            if error is not None and not isinstance(error, Halt) and isinstance(error, VMError):
                entry["error"] = type(error).__name__ if not str(error) else str(error)

        return after

    def result(self, computation: ComputationAPI, gas_used: int) -> Json:
        return {
            "gas": gas_used,
            "failed": computation.is_error,
            "returnValue": data(computation.output),
            "structLogs": self.logs,
        }


class CallTracer:
    """geth's callTracer: the tree of calls with type, from, to, value, gas, input, output."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.only_top_call = bool(config.get("onlyTopCall", False))
        self.with_log = bool(config.get("withLog", False))
        self._child_types: dict[int, str] = {}

    def __call__(self, computation: ComputationAPI, opcode: int, fn: Any) -> Any:
        kind = _CALL_TYPES.get(opcode) or _CREATE_TYPES.get(opcode)
        if kind is None:
            return None
        children_before = len(computation.children)

        def after(error: BaseException | None) -> None:
            if len(computation.children) > children_before:
                self._child_types[id(computation.children[-1])] = kind

        return after

    def result(self, computation: ComputationAPI, tx: Any, gas_used: int) -> Json:
        top_kind = "CREATE" if not tx.to else "CALL"
        frame = self._frame(computation, top_kind, gas_used=gas_used, gas=tx.gas)
        frame["from"] = data(tx.sender)
        return frame

    def _frame(
        self,
        computation: ComputationAPI,
        kind: str,
        gas_used: int | None = None,
        gas: int | None = None,
    ) -> Json:
        msg = computation.msg
        frame: Json = {
            "from": data(msg.sender),
            "gas": quantity(msg.gas if gas is None else gas),
            "gasUsed": quantity(
                msg.gas - computation.get_gas_remaining() if gas_used is None else gas_used
            ),
            "to": data(msg.storage_address if msg.is_create else msg.code_address),
            "input": data(bytes(msg.data if not msg.is_create else msg.code)),
            "type": kind,
        }
        if kind in ("CALL", "CALLCODE", "CREATE", "CREATE2"):
            frame["value"] = quantity(msg.value)
        if computation.output:
            frame["output"] = data(computation.output)
        if computation.is_error:
            error = computation.error
            frame["error"] = (
                "execution reverted"
                if isinstance(error, Revert)
                else (str(error) or type(error).__name__)
            )
            if isinstance(error, Revert):
                from khipu.rpc.eth_call import revert_reason

                reason = revert_reason(bytes(computation.output))
                if reason:
                    frame["revertReason"] = reason
        if self.with_log:
            logs = [
                {
                    "address": data(address),
                    "topics": [data(t.to_bytes(32, "big")) for t in topics],
                    "data": data(payload),
                }
                for _, address, topics, payload in getattr(computation, "_log_entries", [])
            ]
            if logs:
                frame["logs"] = logs
        if not self.only_top_call:
            calls = [
                self._frame(child, self._child_types.get(id(child), "CALL"))
                for child in computation.children
            ]
            if calls:
                frame["calls"] = calls
        return frame
