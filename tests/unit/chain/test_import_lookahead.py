"""The import loop's one-block lookahead (import_job.with_next)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from khipu.chain.import_job import with_next


def test_each_block_comes_with_the_next() -> None:
    assert list(with_next(iter([1, 2, 3]))) == [(1, 2), (2, 3), (3, None)]  # type: ignore[arg-type]
    assert list(with_next(iter([]))) == []


def test_a_fault_in_the_next_block_is_raised_after_the_current_one() -> None:
    def blocks() -> Iterator[Any]:
        yield 1
        yield 2
        raise ValueError("block 3 is malformed")

    pairs = with_next(blocks())
    assert next(pairs) == (1, 2)
    assert next(pairs) == (2, None)  # block 2 is still handed out before block 3's fault
    with pytest.raises(ValueError, match="block 3 is malformed"):
        next(pairs)
