"""`khipu devnet generate` then `khipu import`, as separate processes, as `make run` does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT


def khipu(*args: str, hash_seed: str = "0") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "khipu.cli", *args],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "PYTHONHASHSEED": hash_seed},
    )  # fmt: skip


def test_generated_chain_imports_through_the_cli(tmp_path: Path) -> None:
    out = tmp_path / "dev"
    generated = khipu(
        "devnet", "generate", "--out", str(out), "--blocks", "4", "--txs-per-block", "10",
        "--profile", "mixed", "--seed", "5", "--json",
    )  # fmt: skip
    assert generated.returncode == 0, generated.stderr
    summary = json.loads(generated.stdout.splitlines()[-1])
    assert summary["blocks"] == 4 and summary["txs"] == 40
    imported = khipu(
        "import", "--datadir", str(tmp_path / "datadir"), "--genesis", str(out / "genesis.json"),
        "--no-seal-check", "--json", str(out / "chain.rlp"),
    )  # fmt: skip
    assert imported.returncode == 0, imported.stderr
    result = json.loads(imported.stdout.splitlines()[-1])
    assert result["blocks"] == 4
    assert result["txs"] == 40
    assert result["gas"] == summary["gas"] > 0
    assert result["head"]["hash"] == summary["head"]["hash"]
    assert result["head"]["stateRoot"] == summary["head"]["stateRoot"]


def test_bad_arguments_exit_with_usage_errors(tmp_path: Path) -> None:
    result = khipu("devnet", "generate", "--out", str(tmp_path), "--profile", "nft")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr
    result = khipu("devnet", "generate", "--out", str(tmp_path), "--blocks", "-1")
    assert result.returncode == 2
    assert not (tmp_path / "chain.rlp").exists()


def test_files_do_not_depend_on_the_process(tmp_path: Path) -> None:
    # Another hash seed changes set and str-hash order: nothing written may depend on it.
    outputs = []
    for hash_seed in ("1", "2"):
        out = tmp_path / hash_seed
        result = khipu(
            "devnet", "generate", "--out", str(out), "--blocks", "3", "--txs-per-block", "10",
            "--profile", "mixed", "--seed", "3", hash_seed=hash_seed,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        outputs.append(((out / "genesis.json").read_bytes(), (out / "chain.rlp").read_bytes()))
    assert outputs[0] == outputs[1]
