"""VM and state classes whose blob rules read a BlobSchedule instead of py-evm's constants.

py-evm's Cancun and Prague hard-code the blob target, maximum and update fraction in their header
creation, block validation and blob base fee. The two mixins here replace exactly those three
places, so that `with_blob_schedule` can give any fork from Cancun on the parameters a genesis
`blobSchedule` names, and so that a blob-parameter-only fork (EIP-7892) is Osaka with other
numbers.
"""

from __future__ import annotations

from typing import Any, ClassVar, cast

from eth._utils.db import get_block_header_by_hash
from eth.abc import BlockAPI, BlockHeaderAPI, StateAPI
from eth.vm.base import VM
from eth.vm.forks.cancun import CancunVM
from eth.vm.forks.cancun.state import get_total_blob_gas
from eth.vm.state import BaseState

from .blob_schedule import BlobSchedule
from .errors import InvalidBlobGas


class BlobScheduleState(BaseState):
    """State mixin: the blob base fee (BLOBBASEFEE, blob fees, blob tx checks) from the schedule."""

    blob_schedule: ClassVar[BlobSchedule]

    @property
    def blob_base_fee(self) -> int:
        excess_blob_gas = self.execution_context.excess_blob_gas or 0
        return self.blob_schedule.blob_base_fee(excess_blob_gas)


class BlobScheduleVM(VM):
    """VM mixin: excess blob gas and the per-block blob limit from the schedule.

    Put it first among the bases, before the py-evm fork it adapts (Cancun or later).
    """

    blob_schedule: ClassVar[BlobSchedule]
    # EIP-7918 (Osaka on): the excess blob gas rule with an execution-gas reserve price
    blob_base_fee_bounded_by_execution_cost: ClassVar[bool] = False

    @classmethod
    def compute_excess_blob_gas(cls, parent_header: BlockHeaderAPI) -> int:
        """The excess blob gas a child of `parent_header` must carry under this VM's rules.

        A parent from before Cancun has no blob fields; they count as zero. A parent from an
        earlier blob fork keeps its own excess: the child's schedule applies to it (as geth does
        at every fork boundary).
        """
        try:
            parent_excess_blob_gas = parent_header.excess_blob_gas
            parent_blob_gas_used = parent_header.blob_gas_used
        except AttributeError:
            parent_excess_blob_gas = parent_blob_gas_used = 0
        if cls.blob_base_fee_bounded_by_execution_cost:
            return cls.blob_schedule.excess_blob_gas_with_reserve_price(
                parent_excess_blob_gas,
                parent_blob_gas_used,
                parent_header.base_fee_per_gas or 0,
            )
        return cls.blob_schedule.excess_blob_gas(parent_excess_blob_gas, parent_blob_gas_used)

    @classmethod
    def create_header_from_parent(
        cls, parent_header: BlockHeaderAPI, **header_params: Any
    ) -> BlockHeaderAPI:
        """The fork's own header for the child, with the excess blob gas of this schedule."""
        header = super().create_header_from_parent(  # type: ignore[safe-super]
            parent_header, **header_params
        )
        if parent_header is None:
            return header
        return header.copy(excess_blob_gas=cls.compute_excess_blob_gas(parent_header))

    def validate_block_blobs(self, block: BlockAPI) -> None:
        """Check a block's excess blob gas, blob count limit and blob gas used.

        Raises InvalidBlobGas naming the block and the rule it breaks.
        """
        header = block.header
        parent_header = get_block_header_by_hash(header.parent_hash, self.chaindb)
        expected_excess = self.compute_excess_blob_gas(parent_header)
        if header.excess_blob_gas != expected_excess:
            raise InvalidBlobGas(
                header.block_number,
                header.hash,
                f"excess blob gas is {header.excess_blob_gas}, expected {expected_excess}",
            )
        blob_gas_used = sum(get_total_blob_gas(tx) for tx in block.transactions)
        if blob_gas_used > self.blob_schedule.max_blob_gas_per_block:
            raise InvalidBlobGas(
                header.block_number,
                header.hash,
                f"transactions use {blob_gas_used} blob gas, over the limit of "
                f"{self.blob_schedule.max_blob_gas_per_block}",
            )
        if header.blob_gas_used != blob_gas_used:
            raise InvalidBlobGas(
                header.block_number,
                header.hash,
                f"header says {header.blob_gas_used} blob gas used, "
                f"transactions use {blob_gas_used}",
            )


def with_blob_schedule(
    vm_class: type[VM],
    target_blobs: int,
    max_blobs: int,
    update_fraction: int,
    *,
    fork_name: str | None = None,
) -> type[VM]:
    """A subclass of `vm_class` (Cancun or later) that runs with these blob parameters.

    The excess blob gas of new and imported headers, the blob base fee seen by transactions and
    the BLOBBASEFEE opcode, and the per-block blob limit all follow the given numbers; everything
    else is `vm_class`'s. `fork_name` (e.g. "bpo1") becomes the class's `fork`. The same arguments
    return the same class, and the class can be found by pickle (it is registered in this
    module under its name), so worker processes can receive it.

    Raises TypeError when `vm_class` is older than Cancun, InvalidBlobSchedule for numbers no fork
    could use.
    """
    if not issubclass(vm_class, CancunVM):
        raise TypeError(f"{vm_class.__name__} has no blobs: blob schedules start at Cancun")
    schedule = BlobSchedule(target_blobs, max_blobs, update_fraction)
    fork = fork_name or vm_class.fork
    key = (vm_class, schedule, fork)
    cached = _SCHEDULED_VM_CLASSES.get(key)
    if cached is not None:
        return cached

    suffix = f"{fork}_{target_blobs}_{max_blobs}_{update_fraction}".replace("-", "_")
    base_state_class = vm_class.get_state_class()
    state_bases: tuple[type[StateAPI], ...] = (
        (base_state_class,)
        if issubclass(base_state_class, BlobScheduleState)
        else (BlobScheduleState, base_state_class)
    )
    state_key = (base_state_class, schedule)
    state_class = _SCHEDULED_STATE_CLASSES.get(state_key)
    if state_class is None:
        state_class = _register(
            f"{base_state_class.__name__}_{suffix}", state_bases, {"blob_schedule": schedule}
        )
        _SCHEDULED_STATE_CLASSES[state_key] = state_class
    vm_bases: tuple[type[VM], ...] = (
        (vm_class,) if issubclass(vm_class, BlobScheduleVM) else (BlobScheduleVM, vm_class)
    )
    scheduled = _register(
        f"{vm_class.__name__}_{suffix}",
        vm_bases,
        {"blob_schedule": schedule, "_state_class": state_class, "fork": fork},
    )
    _SCHEDULED_VM_CLASSES[key] = scheduled
    return cast(type[VM], scheduled)


_SCHEDULED_VM_CLASSES: dict[tuple[type[VM], BlobSchedule, str], type[VM]] = {}
_SCHEDULED_STATE_CLASSES: dict[tuple[type[StateAPI], BlobSchedule], Any] = {}


def _register(name: str, bases: tuple[type, ...], attributes: dict[str, Any]) -> Any:
    """Create a class and make it importable from this module, as pickle looks classes up.

    Two different classes of the same name (say two configurations of one VM) get distinct
    names, so that each still pickles as itself.
    """
    unique_name = name
    copies = 1
    while unique_name in globals():
        copies += 1
        unique_name = f"{name}_{copies}"
    name = unique_name
    new_class = type(name, bases, {"__module__": __name__, "__qualname__": name, **attributes})
    globals()[name] = new_class
    return new_class
