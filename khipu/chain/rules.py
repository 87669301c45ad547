"""The fork schedule of a chain mapped onto py-evm VM classes, the one place that does so.

py-evm chooses a VM by block number only. Here a VM is chosen from a header's number, timestamp
and difficulty: timestamp forks (Shanghai onwards) by time, the merge by difficulty 0 once a
terminal total difficulty is configured, everything before by number.
"""

from __future__ import annotations

from typing import Any

from eth.abc import BlockHeaderAPI, VirtualMachineAPI
from eth.consensus.noproof import NoProofConsensus
from eth.vm.base import VM

from khipu.chain.config import ChainConfig, GenesisError
from khipu.chain.forkid import ForkPoints
from khipu.chain.forks import (
    DEFAULT_BLOB_SCHEDULES,
    FORK_VM_CLASSES,
    BlobSchedule,
    OsakaVM,
    with_blob_schedule,
)

VMClass = type[VirtualMachineAPI]


class UnsupportedFork(GenesisError):
    """The chain schedules a fork that this build of khipu cannot execute."""


class ChainRules:
    """Which VM class, configured for this chain, executes a given block."""

    def __init__(self, config: ChainConfig) -> None:
        self.config = config
        # A stable sort keeps config order among forks that share a block: the later one wins.
        self._block_schedule = sorted(
            [(0, "frontier"), *((block, name) for name, block in config.block_forks.items())],
            key=lambda entry: entry[0],
        )
        self._time_schedule = sorted(
            ((time, name) for name, time in config.time_forks.items()), key=lambda e: e[0]
        )
        self._vm_classes: dict[str, VMClass] = {}

    def vm_class_of_fork(self, fork: str) -> VMClass:
        """The VM class of `fork` configured for this chain. Raises UnsupportedFork."""
        if fork not in self._vm_classes:
            self._vm_classes[fork] = self._configure_vm(fork)
        return self._vm_classes[fork]

    def _configure_vm(self, fork: str) -> VMClass:
        base = _fork_base(fork)
        schedule = self.blob_schedule(fork)
        if schedule is not None:
            base = with_blob_schedule(
                base,
                schedule.target_blobs_per_block,
                schedule.max_blobs_per_block,
                schedule.base_fee_update_fraction,
                fork_name=fork,
            )
        overrides: dict[str, Any] = {"consensus_class": NoProofConsensus}
        if fork == "homestead":
            supports_dao = self.config.dao_fork_support and self.config.dao_fork_block is not None
            overrides["support_dao_fork"] = supports_dao
            overrides["_dao_fork_block_number"] = self.config.dao_fork_block
        return base.configure(__name__=f"Khipu{base.__name__}", **overrides)

    def blob_schedule(self, fork: str) -> BlobSchedule | None:
        """The blob parameters of `fork`: its genesis `blobSchedule` entry, else the fork's own.

        None for forks without blobs. Raises UnsupportedFork for a blob-parameter-only fork
        (bpo1, ...) without an entry, InvalidBlobSchedule for numbers no fork could use.
        """
        entry = self.config.blob_schedule.get(fork)
        if entry is not None:
            return BlobSchedule(entry.target, entry.max, entry.base_fee_update_fraction)
        if fork.startswith("bpo"):
            raise UnsupportedFork(f"fork {fork!r} is scheduled without a blobSchedule entry")
        return DEFAULT_BLOB_SCHEDULES.get(fork)

    def fork_name(self, number: int, timestamp: int, difficulty: int) -> str:
        """The name of the fork whose rules apply to a block."""
        for time, name in reversed(self._time_schedule):
            if timestamp >= time:
                return name
        if self.is_proof_of_stake(number, difficulty):
            return "paris"
        return self.fork_name_by_number(number)

    def fork_name_by_number(self, number: int) -> str:
        """The block-number fork in force at `number`, ignoring the merge and timestamp forks."""
        return next(name for block, name in reversed(self._block_schedule) if number >= block)

    def vm_class(self, number: int, timestamp: int, difficulty: int) -> VMClass:
        """The configured VM class for a block with this number, timestamp and difficulty."""
        return self.vm_class_of_fork(self.fork_name(number, timestamp, difficulty))

    def vm_class_for_header(self, header: BlockHeaderAPI) -> VMClass:
        """The configured VM class that executes the block of `header`."""
        return self.vm_class(header.block_number, header.timestamp, header.difficulty)

    def vm_class_by_number(self, number: int) -> VMClass:
        """The VM by number alone: right for pre-merge blocks and uncles (no time forks)."""
        return self.vm_class_of_fork(self.fork_name_by_number(number))

    def is_proof_of_stake(self, number: int, difficulty: int) -> bool:
        """Whether a block of this number and difficulty follows proof-of-stake rules.

        With a terminal total difficulty configured, PoS blocks are those of difficulty 0; the
        importer checks that their parent reached the terminal total difficulty.
        """
        ttd = self.config.terminal_total_difficulty
        if ttd is None:
            return False
        return difficulty == 0 and (number > 0 or ttd == 0)

    def is_time_fork_active(self, fork: str, timestamp: int) -> bool:
        """Whether the timestamp fork `fork` is active at `timestamp`."""
        activation = self.config.time_forks.get(fork)
        return activation is not None and timestamp >= activation

    def is_block_fork_active(self, fork: str, number: int) -> bool:
        """Whether the block-number fork `fork` is active at block `number`."""
        if fork == "frontier":
            return True
        activation = self.config.block_forks.get(fork)
        return activation is not None and number >= activation

    def fork_points(self, genesis_hash: bytes, genesis_time: int) -> ForkPoints:
        """The activation points for fork ids (EIP-2124) of this chain."""
        return ForkPoints.gather(
            genesis_hash,
            self.config.fork_id_blocks(),
            self.config.fork_id_times(),
            genesis_time,
        )


def _fork_base(fork: str) -> type[VM]:
    if fork in FORK_VM_CLASSES:
        return FORK_VM_CLASSES[fork]
    if fork.startswith("bpo"):
        return OsakaVM  # EIP-7892: a blob-parameter-only fork is Osaka with other blob numbers
    raise UnsupportedFork(f"fork {fork!r} is scheduled but not supported by this build")
