"""End to end: `khipu import` of generated chains with each execution mode, in one run.

For each profile a dev chain is generated once (cached under --cache), then imported into a
fresh datadir by `khipu import --json` with `--serial` (py-evm's plain serial path: the
baseline), the default (`--workers N`: the adaptive choice per block between in-order batched
execution and parallel execution on N workers) and `--workers N --no-adaptive` (every block
in parallel). Prints the import seconds, the ratio against `--serial`, blocks/s, tx/s, how
many blocks ran in each mode, the parallel rate and re-executions, and whether every mode
reached the same head state root.

    python -m benchmarks.import_modes [--profiles transfers,erc20,amm,mixed] [--blocks 40]
                                      [--txs 100] [--workers 2] [--rounds 1]

Not part of `make bench`: 40 blocks of 100 txs per profile take about 5 minutes in all here.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

MODES = {
    "serial": ["--serial"],
    "adaptive": [],
    "parallel": ["--no-adaptive"],
}


@dataclass
class Run:
    """The best of a mode's rounds, and what its blocks did."""

    seconds: float = float("inf")
    state_root: str = ""
    blocks: Counter[str] = field(default_factory=Counter)
    transactions: int = 0
    committed: int = 0
    reexecuted: int = 0


def khipu(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the khipu CLI of this interpreter; raises CalledProcessError naming the output."""
    command = [sys.executable, "-m", "khipu.cli", *args]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:2])} failed: {result.stderr[-2000:]}")
    return result


def chain_of(cache: Path, profile: str, blocks: int, txs: int) -> Path:
    """The generated chain's folder (generated on first use)."""
    folder = cache / f"{profile}-b{blocks}-t{txs}-s7"
    if not (folder / "chain.rlp").exists():
        shutil.rmtree(folder, ignore_errors=True)
        khipu("devnet", "generate", "--out", str(folder), "--blocks", str(blocks),
              "--txs-per-block", str(txs), "--profile", profile, "--seed", "7")  # fmt: skip
    return folder


def import_once(chain: Path, datadir: Path, extra: list[str], run: Run) -> None:
    """Import `chain` into a fresh `datadir`; keep the time if it is the best so far."""
    shutil.rmtree(datadir, ignore_errors=True)
    result = khipu(
        "import", "--datadir", str(datadir), "--genesis", str(chain / "genesis.json"),
        "--no-seal-check", "--json", *extra, str(chain / "chain.rlp"),
    )  # fmt: skip
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    if summary["seconds"] < run.seconds:
        run.seconds = summary["seconds"]
        run.state_root = summary["head"]["stateRoot"]
        run.transactions = summary["txs"]
        run.blocks, run.committed, run.reexecuted = Counter(), 0, 0
        for line in result.stderr.splitlines():
            if 'msg="block executed"' not in line:
                continue
            fields = dict(part.split("=", 1) for part in line.split() if "=" in part)
            run.blocks[fields["mode"]] += 1
            if fields["mode"] == "parallel":
                count, again = int(fields["txs"]), int(fields["reexecuted"])
                run.committed += count - again
                run.reexecuted += again


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profiles", default="transfers,erc20,amm,mixed")
    parser.add_argument("--blocks", type=int, default=40)
    parser.add_argument("--txs", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "khipu-bench")
    args = parser.parse_args(argv)
    args.cache.mkdir(parents=True, exist_ok=True)
    print(f"{'profile':10} {'mode':9} {'seconds':>8} {'vs serial':>9} {'blk/s':>7} {'tx/s':>7}"
          f"  blocks by mode / parallel rate / re-executed")  # fmt: skip
    agreed = True
    with tempfile.TemporaryDirectory(prefix="khipu-modes-") as scratch:
        for profile in args.profiles.split(","):
            chain = chain_of(args.cache, profile, args.blocks, args.txs)
            runs = {mode: Run() for mode in MODES}
            for _ in range(args.rounds):
                for mode, extra in MODES.items():
                    workers = [] if mode == "serial" else ["--workers", str(args.workers)]
                    datadir = Path(scratch) / f"{profile}-{mode}"
                    import_once(chain, datadir, [*extra, *workers], runs[mode])
            baseline = runs["serial"].seconds
            for mode, run in runs.items():
                in_parallel = run.committed + run.reexecuted
                rate = f"{run.committed / in_parallel:.0%}" if in_parallel else "-"
                modes = ", ".join(f"{n} {m}" for m, n in sorted(run.blocks.items())) or "-"
                print(f"{profile:10} {mode:9} {run.seconds:8.2f} {baseline / run.seconds:8.2f}x"
                      f" {args.blocks / run.seconds:7.2f} {run.transactions / run.seconds:7.1f}"
                      f"  {modes} / {rate} / {run.reexecuted}")  # fmt: skip
            agreed &= len({run.state_root for run in runs.values()}) == 1
    print("same head state root in every mode:", "yes" if agreed else "NO")
    return 0 if agreed else 1


if __name__ == "__main__":
    raise SystemExit(main())
