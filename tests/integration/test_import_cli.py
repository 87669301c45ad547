"""`khipu import` as a user runs it: JSON summary, exit codes, resume, and kill -9 mid-import."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import rlp

from khipu.cli import main
from tests.chain_helpers import read_blocks
from tests.conftest import require_testdata


@pytest.fixture(scope="module")
def suite() -> Path:
    return require_testdata("rpc-compat-prague")


def run_import(datadir: Path, genesis: Path, *files: Path) -> int:
    args = ["import", "--datadir", str(datadir), "--genesis", str(genesis), "--no-seal-check"]
    return main([*args, "--json", "--serial", *map(str, files)])


def last_json_line(text: str) -> dict[str, object]:
    return dict(json.loads(text.strip().splitlines()[-1]))


def test_json_summary_and_resume(
    suite: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocks = read_blocks(suite / "chain.rlp")
    first_part = tmp_path / "first.rlp"
    first_part.write_bytes(b"".join(blocks[:20]))

    assert run_import(tmp_path / "data", suite / "genesis.json", first_part) == 0
    summary = last_json_line(capsys.readouterr().out)
    assert summary["blocks"] == 20
    assert summary["head"]["number"] == 20  # type: ignore[index]

    # The whole file again: the first 20 are stored, the import resumes after them.
    assert run_import(tmp_path / "data", suite / "genesis.json", suite / "chain.rlp") == 0
    summary = last_json_line(capsys.readouterr().out)
    assert summary["blocks"] == 25
    assert summary["head"]["number"] == 45  # type: ignore[index]
    assert summary["txs"] == sum(len(rlp.decode(raw)[1]) for raw in blocks[20:])


def test_invalid_block_exits_nonzero_and_keeps_what_came_before(
    suite: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocks = read_blocks(suite / "chain.rlp")
    bad = rlp.decode(blocks[14])
    bad[0][3] = b"\x42" * 32  # state root
    damaged = tmp_path / "damaged.rlp"
    damaged.write_bytes(b"".join(blocks[:14]) + rlp.encode(bad) + b"".join(blocks[15:]))

    assert run_import(tmp_path / "data", suite / "genesis.json", damaged) == 1
    err = capsys.readouterr().err
    assert "invalid block #15 0x" in err and "state root" in err
    assert run_import(tmp_path / "data", suite / "genesis.json", damaged.with_name("none")) == 2
    # What was stored before the bad block is kept: the valid file resumes from #14.
    assert run_import(tmp_path / "data", suite / "genesis.json", suite / "chain.rlp") == 0
    assert last_json_line(capsys.readouterr().out)["blocks"] == 31


def test_truncated_file_and_wrong_genesis_are_clear_errors(
    suite: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    truncated = tmp_path / "truncated.rlp"
    truncated.write_bytes((suite / "chain.rlp").read_bytes()[:5000])
    assert run_import(tmp_path / "data", suite / "genesis.json", truncated) == 2
    assert "runs past the end of the file" in capsys.readouterr().err
    other = require_testdata("ethtest", "genesis.json")
    assert run_import(tmp_path / "data", other, truncated) == 2
    assert "use another --datadir" in capsys.readouterr().err


def test_kill_9_during_import_then_resume_reaches_the_same_head(
    suite: Path, tmp_path: Path
) -> None:
    reference = tmp_path / "reference"
    assert run_import(reference, suite / "genesis.json", suite / "chain.rlp") == 0
    command = [
        sys.executable, "-m", "khipu.cli", "import", "--datadir", str(tmp_path / "killed"),
        "--genesis", str(suite / "genesis.json"), "--no-seal-check", "--json", "--serial",
        str(suite / "chain.rlp"),
    ]  # fmt: skip
    rng = random.Random(7)
    for _attempt in range(3):
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(1.5, 4.0))  # start-up takes ~1 s, the import ~1-3 s more
        process.send_signal(signal.SIGKILL)
        process.wait()
    finished = subprocess.run(command, capture_output=True, text=True, check=True)
    resumed = last_json_line(finished.stdout)
    expected = subprocess.run(
        [*command[:5], str(reference), *command[6:]], capture_output=True, text=True, check=True
    )
    assert resumed["head"] == last_json_line(expected.stdout)["head"]
    assert os.path.isdir(tmp_path / "killed" / "chaindata")
