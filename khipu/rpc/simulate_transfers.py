"""traceTransfers for eth_simulateV1: ETH movements reported as ERC-20 Transfer logs."""

from __future__ import annotations

from typing import Any

from eth.abc import ComputationAPI

TRANSFER_LOG_ADDRESS = b"\xee" * 20
TRANSFER_TOPIC = bytes.fromhex("ddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef")


class TransferLogger:
    """traceTransfers: an ERC-20-like Transfer log at 0xeee..e for every value transfer.

    The logs go to the call's result only (not to its receipt), placed among the contract's
    logs by py-evm's log counter, and dropped with the frame when it (or a caller) fails.
    """

    def __init__(self) -> None:
        self.transfers: list[tuple[float, ComputationAPI | None, tuple[Any, ...]]] = []

    def __call__(self, computation: ComputationAPI, opcode: int, fn: Any) -> Any:
        if opcode == 0xFF:  # SELFDESTRUCT sends the whole balance to the beneficiary
            self._self_destruct(computation)
            return None
        if opcode not in (0xF1, 0xF2):  # CALL, CALLCODE move value
            return None
        stack = computation._stack.values  # type: ignore[attr-defined]
        if len(stack) < 3:
            return None
        value = _as_int(stack[-3])
        if not value:
            return None
        to = (_as_int(stack[-2]) % 2**160).to_bytes(20, "big")
        children = len(computation.children)
        counter = _next_log_number(computation)
        sender = bytes(computation.msg.storage_address)

        def after(error: BaseException | None) -> None:
            if len(computation.children) > children and opcode == 0xF1:
                child = computation.children[-1]
                log = (TRANSFER_LOG_ADDRESS, transfer_topics(sender, to), value.to_bytes(32, "big"))
                self.transfers.append((counter - 0.5, child, log))

        return after

    def _self_destruct(self, computation: ComputationAPI) -> None:
        stack = computation._stack.values  # type: ignore[attr-defined]
        if not stack:
            return
        address = computation.msg.storage_address
        value = computation.state.get_balance(address)
        if not value:
            return
        beneficiary = (_as_int(stack[-1]) % 2**160).to_bytes(20, "big")
        counter = _next_log_number(computation)
        log = (
            TRANSFER_LOG_ADDRESS,
            transfer_topics(bytes(address), beneficiary),
            value.to_bytes(32, "big"),
        )
        self.transfers.append((counter - 0.25, computation, log))

    def logs(
        self, root: ComputationAPI, top_level: tuple[Any, ...] | None
    ) -> list[tuple[Any, ...]]:
        """The call's logs in order, transfers included, for a successful `root`."""
        alive: set[int] = set()
        pending = [root]
        while pending:
            computation = pending.pop()
            if computation.is_success:
                alive.add(id(computation))
                pending.extend(computation.children)
        entries: list[tuple[Any, ...]] = list(root.get_raw_log_entries())
        if top_level is not None:
            entries.append((-1, *top_level))
        entries += [(c, *log) for c, child, log in self.transfers if id(child) in alive]
        return [entry[1:] for entry in sorted(entries, key=lambda e: e[0])]


def _next_log_number(computation: ComputationAPI) -> int:
    """The number py-evm will give the next log (its counter is an itertools.count)."""
    counter = computation.transaction_context._log_counter  # type: ignore[attr-defined]
    return int(counter.__reduce__()[1][0])


def transfer_topics(sender: bytes, to: bytes) -> tuple[int, ...]:
    return (
        int.from_bytes(TRANSFER_TOPIC, "big"),
        int.from_bytes(sender, "big"),
        int.from_bytes(to, "big"),
    )


def _as_int(value: int | bytes) -> int:
    return value if isinstance(value, int) else int.from_bytes(value, "big")
