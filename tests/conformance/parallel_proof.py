"""Proof helpers: parallel execution of a block compared with serial execution, field by field.

`compare_blocks` lists every difference between a serially executed block and the parallel
executor's result: header fields, each receipt (status, gas, logs, bloom) and the post-state of
a set of accounts (balance, nonce, code, storage slots). `ProvingExecutor` is a `BlockImporter`
executor that runs every block both ways, requires the same outcome (same block, or both reject
it) and that the parallel path did not need its serial fallback for a block whose serial result
agrees with its header. `PROOF_STATS` counts what was proved, for the session summary.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from eth.abc import BlockAPI, ReceiptAPI
from eth.db.account import AccountDB
from eth_typing import Address
from eth_utils import ValidationError

from khipu.chain.chain import KhipuChain
from khipu.execution.executor import (
    CHECKED_FIELDS,
    BlockExecution,
    execute_block_batched,
    execute_block_in_shares,
    execute_block_parallel,
    execute_block_serial,
    supports_parallel,
)

# 0 stands for the in-order batched execution in this process (`execute_block_batched`, what
# the node runs when it chooses not to speculate); the others are worker processes.
WORKER_COUNTS = (0, 1, 2, 4)


def execute_proved(chain: KhipuChain, block: BlockAPI, workers: int) -> tuple[BlockExecution, str]:
    """Execute `block` the way `workers` names (0: batched in order, else in parallel with that
    many workers) and say which mode a block the executor handles must have run in."""
    if workers == 0:
        return execute_block_batched(chain, block), "batched"
    execution = execute_block_parallel(chain, block, workers=workers, min_transactions=1)
    return execution, "parallel"


HEADER_FIELDS = (
    "state_root", "receipt_root", "bloom", "gas_used", "requests_hash", "blob_gas_used",
    "transaction_root", "withdrawals_root",
)  # fmt: skip
STORAGE_SLOTS = tuple(range(8))


@dataclass
class ProofStats:
    """What the proofs of a session ran: blocks by mode, transactions, re-executions."""

    modes: Counter[str] = field(default_factory=Counter)
    transactions: int = 0
    reexecuted: int = 0
    fallbacks: list[str] = field(default_factory=list)  # unexpected ones, each a bug

    def record(self, suite: str, execution: BlockExecution) -> None:
        self.modes[f"{suite}:{execution.mode}"] += 1
        if execution.mode == "parallel":
            self.transactions += execution.transactions
            self.reexecuted += execution.reexecuted

    def summary(self) -> str:
        """One line per suite: blocks by mode; then transactions and re-executions."""
        suites = sorted({key.split(":")[0] for key in self.modes})
        lines = []
        for suite in suites:
            modes = {k.split(":")[1]: v for k, v in self.modes.items() if k.startswith(suite + ":")}
            lines.append(f"  {suite}: " + ", ".join(f"{v} {k}" for k, v in sorted(modes.items())))
        lines.append(
            f"  transactions merged in parallel blocks: {self.transactions},"
            f" re-executed {self.reexecuted}; unexpected fallbacks: {len(self.fallbacks)}"
        )
        lines.extend(f"    {fallback}" for fallback in self.fallbacks)
        return "\n".join(lines)


PROOF_STATS = ProofStats()


class ParallelMismatch(AssertionError):
    """Parallel and serial execution of a block disagree; the message lists every difference."""


def compare_blocks(
    chain: KhipuChain,
    serial: BlockAPI,
    parallel: BlockAPI,
    addresses: Iterable[bytes] = (),
) -> list[str]:
    """Every difference between the serial and the parallel result of one block.

    Header fields (and the hash), every receipt, and for each of `addresses` the balance,
    nonce, code and STORAGE_SLOTS in the two post-states.
    """
    problems = []
    for name in HEADER_FIELDS:
        ours, theirs = getattr(parallel.header, name, None), getattr(serial.header, name, None)
        if ours != theirs:
            problems.append(f"header {name}: parallel {_show(ours)} != serial {_show(theirs)}")
    if parallel.header.hash != serial.header.hash:
        problems.append("header hash differs")
    problems += compare_receipts(
        serial.get_receipts(chain.chaindb), parallel.get_receipts(chain.chaindb)
    )
    db = chain.chaindb.db
    serial_state = AccountDB(db, serial.header.state_root)
    parallel_state = AccountDB(db, parallel.header.state_root)
    for raw in addresses:
        ours, theirs = account_fields(parallel_state, raw), account_fields(serial_state, raw)
        for what, value in ours.items():
            if value != theirs[what]:
                problems.append(
                    f"0x{raw.hex()} {what}: parallel {_show(value)} != serial {_show(theirs[what])}"
                )
    return problems


def account_fields(state: AccountDB, raw: bytes) -> dict[str, object]:
    """Existence, balance, nonce, code and STORAGE_SLOTS of one account in `state`."""
    address = Address(raw)
    fields: dict[str, object] = {
        "exists": state.account_exists(address),
        "balance": state.get_balance(address),
        "nonce": state.get_nonce(address),
        "code": state.get_code(address),
    }
    for slot in STORAGE_SLOTS:
        fields[f"storage[{slot}]"] = state.get_storage(address, slot)
    return fields


def compare_receipts(serial: Sequence[ReceiptAPI], parallel: Sequence[ReceiptAPI]) -> list[str]:
    """Differences of status, cumulative gas, bloom and logs, receipt by receipt."""
    if len(serial) != len(parallel):
        return [f"{len(parallel)} parallel receipts != {len(serial)} serial"]
    problems = []
    for index, (theirs, ours) in enumerate(zip(serial, parallel, strict=True)):
        for name in ("state_root", "gas_used", "bloom"):
            if getattr(ours, name) != getattr(theirs, name):
                problems.append(
                    f"receipt {index} {'status' if name == 'state_root' else name}: parallel"
                    f" {_show(getattr(ours, name))} != serial {_show(getattr(theirs, name))}"
                )
        logs_ours = [(log.address, tuple(log.topics), log.data) for log in ours.logs]
        logs_theirs = [(log.address, tuple(log.topics), log.data) for log in theirs.logs]
        if logs_ours != logs_theirs:
            problems.append(f"receipt {index} logs: parallel {logs_ours} != serial {logs_theirs}")
    return problems


def expects_parallel(chain: KhipuChain, block: BlockAPI, min_transactions: int = 1) -> bool:
    """Whether the executor claims to run `block` in parallel (supports_parallel, enough txs)."""
    vm_class = chain.rules.vm_class_for_header(block.header)
    return supports_parallel(vm_class) and len(block.transactions) >= max(1, min_transactions)


def check_parallel(
    chain: KhipuChain,
    serial: BlockAPI,
    block: BlockAPI,
    workers: int,
    addresses: Iterable[bytes] = (),
    suite: str = "differential",
) -> BlockExecution:
    """Execute `block` in parallel with `workers` and require the serial result `serial`, with
    no fallback. Raises ParallelMismatch listing the differences."""
    execution, handled_mode = execute_proved(chain, block, workers)
    expected_mode = handled_mode if expects_parallel(chain, block) else "serial"
    return require_serial_result(
        chain, serial, execution, expected_mode, addresses, suite, f"{workers} workers"
    )


def check_shares(
    chain: KhipuChain,
    serial: BlockAPI,
    block: BlockAPI,
    shares: Sequence[Sequence[int]],
    addresses: Iterable[bytes] = (),
    suite: str = "chains",
) -> BlockExecution:
    """Execute `block` in parallel with the given speculation shares (each a chain, see
    `execute_block_in_shares`) and require the serial result `serial`, with no fallback.
    Raises ParallelMismatch listing the differences."""
    execution = execute_block_in_shares(chain, block, shares)
    expected_mode = "parallel" if expects_parallel(chain, block) else "serial"
    return require_serial_result(
        chain, serial, execution, expected_mode, addresses, suite, f"shares {list(shares)}"
    )


def require_serial_result(
    chain: KhipuChain,
    serial: BlockAPI,
    execution: BlockExecution,
    expected_mode: str,
    addresses: Iterable[bytes],
    suite: str,
    how: str,
) -> BlockExecution:
    """Count `execution` for `suite` and require it to equal the serial result `serial` and to
    have run in `expected_mode`. Raises ParallelMismatch listing the differences; `how` says
    how the block was run (workers, shares)."""
    block = execution.block
    PROOF_STATS.record(suite, execution)
    problems = compare_blocks(chain, serial, block, addresses)
    if execution.mode != expected_mode:
        PROOF_STATS.fallbacks.append(f"{suite} block #{block.number}, {how}: {execution.mode}")
        problems.append(f"ran as {execution.mode}, expected {expected_mode}")
    if problems:
        raise ParallelMismatch(
            f"block #{block.number} ({len(block.transactions)} txs, {how}):\n  "
            + "\n  ".join(problems)
        )
    return execution


def shares_from(assignment: Sequence[int], count: int) -> list[tuple[int, ...]]:
    """Transactions 0..count-1 split into shares: transaction i goes to share
    assignment[i % len(assignment)] (an empty assignment: every transaction alone)."""
    if not assignment:
        return [(index,) for index in range(count)]
    shares: dict[int, list[int]] = {}
    for index in range(count):
        shares.setdefault(assignment[index % len(assignment)], []).append(index)
    return [tuple(share) for _number, share in sorted(shares.items())]


class ProvingExecutor:
    """A `BlockImporter` executor that executes each block in parallel (and serially).

    With `serial` (the default), each block is also executed serially: both must reject it
    (py-evm's ValidationError, re-raised) or give the same block. Without it the importer's
    comparison with the header stands for the serial result (use it only on chains whose every
    block is valid, where the header is the serial result). Either way a block the executor
    claims to handle whose serial result (or header) agrees with the parallel one must have run
    in parallel, not through the fallback. Raises ParallelMismatch otherwise. `workers` rotate:
    one count per proved block, in turn. With `every` > 1 only every `every`-th block is
    proved, the others are executed serially (a sample of a long chain).
    """

    def __init__(
        self,
        chain: KhipuChain,
        workers: Sequence[int],
        suite: str,
        *,
        serial: bool = True,
        every: int = 1,
    ) -> None:
        self.chain = chain
        self.workers = tuple(workers)
        self.suite = suite
        self.serial = serial
        self.every = every
        self.blocks = 0  # blocks executed
        self.proved = 0  # blocks executed in parallel and checked

    def __call__(self, block: BlockAPI) -> BlockAPI:
        self.blocks += 1
        if (self.blocks - 1) % self.every:
            return execute_block_serial(self.chain, block)
        workers = self.workers[self.proved % len(self.workers)]
        self.proved += 1
        serial: BlockAPI | None = None
        serial_error: ValidationError | None = None
        if self.serial:
            try:
                serial = execute_block_serial(self.chain, block)
            except ValidationError as exc:
                serial_error = exc
        try:
            execution, handled_mode = execute_proved(self.chain, block, workers)
        except ValidationError as exc:
            if self.serial and serial_error is None:
                raise ParallelMismatch(
                    f"{self.suite} block #{block.number}: parallel rejects ({exc}), serial accepts"
                ) from exc
            raise
        PROOF_STATS.record(self.suite, execution)
        if self.serial and serial is None:
            raise ParallelMismatch(
                f"{self.suite} block #{block.number}: parallel accepts, serial rejects"
                f" ({serial_error})"
            )
        problems = [] if serial is None else compare_blocks(self.chain, serial, execution.block)
        # What serial execution gives: the serial run's block, or without one the executor's
        # result (after a fallback that is the serial result).
        reference = execution.block if serial is None else serial
        agrees = all(
            getattr(reference.header, name, None) == getattr(block.header, name, None)
            for name in CHECKED_FIELDS
        )
        if agrees and expects_parallel(self.chain, block) and execution.mode != handled_mode:
            PROOF_STATS.fallbacks.append(f"{self.suite} block #{block.number}: {execution.mode}")
            problems.append(f"ran as {execution.mode} although serial agrees with the header")
        if problems:
            raise ParallelMismatch(
                f"{self.suite} block #{block.number} ({workers} workers):\n  "
                + "\n  ".join(problems)
            )
        return execution.block


def _show(value: object) -> str:
    if isinstance(value, bytes):
        return "0x" + value.hex() if len(value) <= 64 else f"<{len(value)} bytes>"
    return str(value)
