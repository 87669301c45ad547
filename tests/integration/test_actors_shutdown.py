"""Graceful shutdown of a node process: a signal stops the tree in reverse order and exits 0; a
second signal forces the exit; a tree whose root gave up exits 1 saying why."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

NODE_SCRIPT = r"""
import random, sys, time
from khipu.actors import ChildSpec, ExponentialBackoff, SupervisedActor, SupervisionStrategy
from khipu.actors import SupervisionTree
from khipu.actors.shutdown import GracefulShutdown

mode = sys.argv[1]

class Component(SupervisedActor):
    def __init__(self, context, hang_on_stop):
        super().__init__(context)
        self.hang_on_stop = hang_on_stop
    def on_start(self):
        if mode == "crash" and self.actor_path.endswith("Importer"):
            raise RuntimeError("importer cannot open its datadir")
        print(f"started {self.actor_path}", flush=True)
    def on_stop(self):
        print(f"stopping {self.actor_path}", flush=True)
        if self.hang_on_stop:
            time.sleep(60)
        print(f"stopped {self.actor_path}", flush=True)

names = ["StorageWriter", "Importer", "RpcServer"]
specs = [
    ChildSpec(n, lambda ctx, n=n: Component.start(ctx, mode == "hang" and n == "StorageWriter"),
              stop_timeout=120)
    for n in names
]
backoff = ExponentialBackoff(initial=0.01, maximum=0.1, jitter=0.0, rng=random.Random(1))
strategy = SupervisionStrategy(max_restarts=2, backoff=backoff)
tree = SupervisionTree("NodeSupervisor", specs, strategy)
shutdown = GracefulShutdown(tree, stop_timeout=120)
shutdown.install()
print("ready", flush=True)
sys.exit(shutdown.run())
"""


def start_node(mode: str) -> subprocess.Popen[str]:
    node = subprocess.Popen(
        [sys.executable, "-c", NODE_SCRIPT, mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert node.stdout is not None
    return node


def read_until(node: subprocess.Popen[str], wanted: str) -> list[str]:
    """Lines of stdout up to and including `wanted`; fails if the process ends first."""
    assert node.stdout is not None
    lines = []
    while True:
        line = node.stdout.readline()
        if not line:
            node.kill()
            raise AssertionError(f"node ended before {wanted!r}: {lines} {node.stderr.read()}")  # type: ignore[union-attr]
        lines.append(line.strip())
        if line.strip() == wanted:
            return lines


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_children_in_reverse_start_order_and_exits_0(signum: int) -> None:
    node = start_node("clean")
    before = read_until(node, "ready")
    node.send_signal(signum)
    out, err = node.communicate(timeout=30)
    assert node.returncode == 0, err
    started = [line.split()[1] for line in before if line.startswith("started")]
    assert started == [
        "NodeSupervisor/StorageWriter",
        "NodeSupervisor/Importer",
        "NodeSupervisor/RpcServer",
    ]
    stopping = [line.split()[1] for line in out.splitlines() if line.startswith("stopping")]
    assert stopping == list(reversed(started))
    assert f"{signal.Signals(signum).name} received, stopping" in err
    assert "stopped cleanly" in err


def test_a_second_signal_forces_the_exit() -> None:
    node = start_node("hang")
    read_until(node, "ready")
    node.send_signal(signal.SIGTERM)
    read_until(node, "stopping NodeSupervisor/StorageWriter")  # now stuck in its on_stop
    node.send_signal(signal.SIGTERM)
    _, err = node.communicate(timeout=30)
    assert node.returncode == 130
    assert "second SIGTERM, exiting now" in err


def test_a_root_that_gives_up_exits_1_naming_the_child_and_the_error() -> None:
    node = start_node("crash")
    out, err = node.communicate(timeout=30)
    assert node.returncode == 1, err
    assert "gave up on NodeSupervisor/Importer after 2 restart(s)" in err
    assert "importer cannot open its datadir" in err
    stopping = [line.split()[1] for line in out.splitlines() if line.startswith("stopping")]
    assert stopping == ["NodeSupervisor/RpcServer", "NodeSupervisor/StorageWriter"]
