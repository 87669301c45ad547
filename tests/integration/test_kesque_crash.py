"""SIGKILL the Kesque writer at random moments, many times; every commit must survive whole."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import kesque_workload as workload
import pytest

from khipu.storage.kesque import Kesque
from khipu.storage.kesque.check import check_store

HERE = Path(__file__).resolve().parent
# KHIPU_CONFORMANCE=full runs the long variant (as tests.conftest.conformance_full says)
FULL = os.environ.get("KHIPU_CONFORMANCE", "").lower() == "full"
ROUNDS = 200 if FULL else 20
CHECK_EVERY = 10 if FULL else 1  # a full check reads the whole store


def start_writer(store: Path, fsync: bool) -> subprocess.Popen[str]:
    args = [sys.executable, str(HERE / "kesque_workload.py"), "write", str(store)]
    return subprocess.Popen(
        [*args, "fsync"] if fsync else args,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(HERE.parent.parent)},
    )


def committed_batches(output: str) -> list[int]:
    return [int(line.split()[1]) for line in output.splitlines() if line.startswith("committed")]


@pytest.mark.timeout(3000 if FULL else 300)
def test_sigkill_at_random_moments(tmp_path: Path) -> None:
    store = tmp_path / "kesque"
    rng = random.Random(1234)
    highest_reported = -1
    for round_number in range(ROUNDS):
        writer = start_writer(store, fsync=round_number % 4 == 3)
        assert writer.stdout is not None
        if round_number % 5 == 4:
            # now and then kill it early: while it starts, opens or recovers the store
            time.sleep(rng.uniform(0.0, 0.3))
        else:
            first = writer.stdout.readline()  # the writer has opened (and recovered) the store
            assert first.startswith("start "), first
            assert int(first.split()[1]) == highest_reported + 1
            time.sleep(rng.uniform(0.0, 0.25))
        writer.send_signal(signal.SIGKILL)
        output, _ = writer.communicate()
        assert writer.returncode == -signal.SIGKILL, output
        reported = committed_batches(output)
        if reported:
            highest_reported = max(highest_reported, *reported)

        with Kesque.open(store, config=workload.config()) as kq:
            last = kq.topic("header").last_offset()
            # killed between publishing a commit and printing it: at most one batch more
            assert highest_reported <= last <= highest_reported + 1, (last, highest_reported)
            for batch in range(max(0, last - 30), last + 1):
                workload.verify_batch(kq, batch)
            workload.verify_shared(kq, last)
            # nothing of the batch that was being written when the writer died
            assert kq.topic("storage").get(workload.record_key(last + 1, 0)) is None
            highest_reported = last
        if round_number % CHECK_EVERY == 0 or round_number == ROUNDS - 1:
            report = check_store(store, workload.config())
            assert report.ok, report.problems
    assert highest_reported > ROUNDS  # the writer made progress between kills
    with Kesque.open(store, readonly=True, config=workload.config()) as kq:
        for batch in range(highest_reported + 1):
            workload.verify_batch(kq, batch)
