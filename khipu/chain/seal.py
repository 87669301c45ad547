"""Proof-of-work seal checks with the `ethash` package (C++), not py-evm's pure-Python ethash."""

from __future__ import annotations

import ethash
from eth.abc import BlockHeaderAPI

EPOCH_LENGTH = 30000


class InvalidSeal(ValueError):
    """A header's mix hash or nonce does not prove the work its difficulty claims."""


def check_ethash_seal(header: BlockHeaderAPI) -> None:
    """Verify the Ethash proof of work of a pre-merge header. Raises InvalidSeal."""
    if header.difficulty <= 0:
        raise InvalidSeal(f"difficulty {header.difficulty} cannot carry a proof of work")
    if len(header.mix_hash) != 32 or len(header.nonce) != 8:
        raise InvalidSeal(
            f"mix hash of {len(header.mix_hash)} bytes or nonce of {len(header.nonce)} bytes"
            " cannot carry a proof of work"
        )
    boundary = (2**256 // header.difficulty).to_bytes(32, "big")
    valid = ethash.verify(
        header.block_number // EPOCH_LENGTH,
        header.mining_hash,
        header.mix_hash,
        int.from_bytes(header.nonce, "big"),
        boundary,
    )
    if not valid:
        raise InvalidSeal(
            f"ethash seal invalid (mix {header.mix_hash.hex()}, nonce {header.nonce.hex()})"
        )
