"""Reader processes see whole commits only while the writer commits, rolls and grows indexes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import kesque_workload as workload
import pytest

from khipu.storage.kesque import Kesque

HERE = Path(__file__).resolve().parent


def spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(HERE / "kesque_workload.py"), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(HERE.parent.parent)},
    )


@pytest.mark.timeout(120)
def test_readers_during_writes(tmp_path: Path) -> None:
    store = tmp_path / "kesque"
    writer = spawn("write", str(store))
    assert writer.stdout is not None
    assert writer.stdout.readline().startswith("start")
    readers = [spawn("read", str(store), "3") for _ in range(2)]
    outputs = [reader.communicate(timeout=60) for reader in readers]
    writer.terminate()
    writer.communicate(timeout=30)
    for reader, (out, err) in zip(readers, outputs, strict=True):
        assert reader.returncode == 0, err
        checks = int(out.split()[1])
        assert checks > 10, out
    with Kesque.open(store, readonly=True, config=workload.config()) as kq:
        last = kq.topic("header").last_offset()
        state = kq.state.topic("storage")
    assert last > 20
    assert state.index_generation > 2, "the index should have grown while readers read"
    assert state.segments > 2
    time.sleep(0)
