"""`khipu import` killed with SIGKILL at random moments, on the Kesque store: every restart
reopens at a complete block, and the import then ends at the same head and state root as an
uninterrupted one; `khipu db check` finds nothing wrong."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from khipu.cli import main
from tests.conftest import require_testdata


@pytest.fixture(scope="module")
def suite() -> Path:
    return require_testdata("rpc-compat-prague")


def import_command(datadir: Path, suite: Path) -> list[str]:
    return [
        sys.executable, "-m", "khipu.cli", "import", "--datadir", str(datadir),
        "--genesis", str(suite / "genesis.json"), "--no-seal-check", "--json", "--serial",
        str(suite / "chain.rlp"),
    ]  # fmt: skip


def head_of(stdout: str) -> dict[str, object]:
    return dict(json.loads(stdout.strip().splitlines()[-1])["head"])


def stored_head(datadir: Path, suite: Path) -> int:
    """The head a reopened store reports (importing no file: `khipu import` needs one, so an
    empty one)."""
    empty = datadir.parent / "empty.rlp"
    empty.write_bytes(b"")
    command = [*import_command(datadir, suite)[:-1], str(empty)]
    finished = subprocess.run(command, capture_output=True, text=True, check=True)
    return int(head_of(finished.stdout)["number"])  # type: ignore[call-overload]


def wait_for_head(datadir: Path, target: int, process: subprocess.Popen[bytes]) -> None:
    """Return once the store at `datadir` holds block `target` or the process has ended."""
    from khipu.storage.chain_store import ChainStore, GenesisMismatch
    from khipu.storage.kesque import StoreMissing

    view = None
    try:
        while process.poll() is None:
            try:
                view = view or ChainStore.open_readonly(datadir)
                view.kesque.refresh()
                if view.head().block_number >= target:
                    return
            except (StoreMissing, GenesisMismatch, FileNotFoundError):
                pass
            time.sleep(0.01)
    finally:
        if view is not None:
            view.close()


def test_sigkill_at_random_moments_then_resume_matches_an_uninterrupted_import(
    suite: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reference = subprocess.run(
        import_command(tmp_path / "reference", suite), capture_output=True, text=True, check=True
    )
    expected = head_of(reference.stdout)
    killed = tmp_path / "killed"
    rng = random.Random(11)
    heads = [0]
    for _attempt in range(4):
        # Kill once the writer has committed past a random block (seen through a read-only
        # view), plus a random instant: the kill lands mid-import, anywhere within a block.
        target = heads[-1] + rng.randint(3, 7)
        process = subprocess.Popen(
            import_command(killed, suite), stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        wait_for_head(killed, target, process)
        time.sleep(rng.uniform(0.0, 0.05))
        process.send_signal(signal.SIGKILL)
        process.wait()
        heads.append(stored_head(killed, suite))
    with capsys.disabled():
        print(f"\nheads after each kill: {heads}")
    assert heads == sorted(heads), "a restart went back past a complete block"
    finished = subprocess.run(
        import_command(killed, suite), capture_output=True, text=True, check=True
    )
    resumed = head_of(finished.stdout)
    assert resumed == expected  # number, hash and state root
    assert (killed / "kesque" / "header").is_dir()
    capsys.readouterr()
    assert main(["db", "check", "--datadir", str(killed)]) == 0
    assert capsys.readouterr().out.strip().endswith("checked: ok")
