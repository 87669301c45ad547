"""Fixtures of the actor tests: every tree started in a test is shut down after it."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from khipu.actors import ChildSpec, SupervisionStrategy, SupervisionTree


@pytest.fixture
def start_tree() -> Iterator[Callable[..., SupervisionTree]]:
    trees: list[SupervisionTree] = []

    def start(
        children: Sequence[ChildSpec],
        strategy: SupervisionStrategy | None = None,
        name: str = "NodeSupervisor",
        **kwargs: Any,
    ) -> SupervisionTree:
        kwargs.setdefault("watch_interval", 0.05)
        tree = SupervisionTree(name, children, strategy, **kwargs)
        trees.append(tree)
        return tree

    yield start
    for tree in trees:
        if not tree.stopped:
            tree.shutdown("test over", timeout=10)
