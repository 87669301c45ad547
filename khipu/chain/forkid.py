"""Fork identifiers (EIP-2124): a checksum of the forks passed and the next one scheduled.

Block-number forks come first, then timestamp forks, as geth counts them (EIP-6122 extends the
identifier to timestamps). Forks at block 0, and timestamp forks at or before the genesis time,
are part of the genesis and not counted.
"""

from __future__ import annotations

import binascii
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class ForkId:
    """The `[FORK_HASH, FORK_NEXT]` pair a node advertises in eth Status and in its ENR."""

    fork_hash: bytes  # 4 bytes: CRC32 of the genesis hash and every fork passed
    fork_next: int  # the next fork block or timestamp, 0 if none is scheduled

    def __str__(self) -> str:
        return f"0x{self.fork_hash.hex()}/{self.fork_next}"


class ForkIdRejected(Exception):
    """A remote fork id is incompatible with our chain; the message says which rule failed."""


@dataclass(frozen=True)
class ForkPoints:
    """The activation points of a chain's forks, as fork ids count them."""

    genesis_hash: bytes
    blocks: tuple[int, ...]
    times: tuple[int, ...]

    @classmethod
    def gather(
        cls,
        genesis_hash: bytes,
        block_forks: Iterable[int | None],
        time_forks: Iterable[int | None],
        genesis_time: int = 0,
    ) -> ForkPoints:
        """Sort and deduplicate activations, dropping those that are part of the genesis."""
        blocks = sorted({b for b in block_forks if b is not None and b > 0})
        times = sorted({t for t in time_forks if t is not None and t > genesis_time})
        return cls(genesis_hash, tuple(blocks), tuple(times))

    def checksums(self) -> list[bytes]:
        """The checksum after the genesis and after each fork in order: len(forks) + 1 items."""
        checksum = binascii.crc32(self.genesis_hash)
        sums = [checksum.to_bytes(4, "big")]
        for point in (*self.blocks, *self.times):
            checksum = binascii.crc32(point.to_bytes(8, "big"), checksum)
            sums.append(checksum.to_bytes(4, "big"))
        return sums

    def fork_id(self, head_number: int, head_time: int) -> ForkId:
        """The fork id of a node whose head is at `head_number` and `head_time`."""
        sums = self.checksums()
        for index, (fork, head) in enumerate(self._forks_with_heads(head_number, head_time)):
            if head < fork:
                return ForkId(sums[index], fork)
        return ForkId(sums[-1], 0)

    def validate(self, remote: ForkId, head_number: int, head_time: int) -> None:
        """Apply EIP-2124's rules to a remote fork id; raise ForkIdRejected if it fails.

        At our first fork not yet passed: (1) the same checksum as ours is compatible unless
        the remote announces a next fork that we have already passed; (2) a checksum from our
        past must announce the fork that followed it (the remote is syncing); (3) a checksum
        from our future is compatible (we are syncing); (4) anything else is another chain.
        """
        sums = self.checksums()
        forks = [*self.blocks, *self.times, _NEVER]
        heads = [head_number] * len(self.blocks) + [head_time] * len(self.times)
        heads.append(head_time if self.times else head_number)
        for index, fork in enumerate(forks):
            if heads[index] >= fork:
                continue
            if sums[index] == remote.fork_hash:
                stale = remote.fork_next > 0 and (
                    head_number >= remote.fork_next
                    or (remote.fork_next > TIMESTAMP_THRESHOLD and head_time >= remote.fork_next)
                )
                if stale:
                    raise ForkIdRejected(
                        f"remote {remote} announces fork {remote.fork_next}, "
                        "which we passed without it: incompatible or stale"
                    )
                return
            for earlier in range(index):
                if sums[earlier] == remote.fork_hash:
                    if forks[earlier] != remote.fork_next:
                        raise ForkIdRejected(
                            f"remote {remote} is stale: it should announce fork {forks[earlier]}"
                        )
                    return
            if remote.fork_hash in sums[index + 1 :]:
                return
            break
        raise ForkIdRejected(f"remote {remote} is on another chain than ours")

    def _forks_with_heads(self, head_number: int, head_time: int) -> list[tuple[int, int]]:
        return [(b, head_number) for b in self.blocks] + [(t, head_time) for t in self.times]


_NEVER = 2**64 - 1  # a sentinel fork that is never passed

# geth's threshold (1438269973, the mainnet genesis-era timestamp) to tell times from blocks.
TIMESTAMP_THRESHOLD = 1438269973
