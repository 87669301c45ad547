"""A really full file system, not an injected error: the writer gets a typed error naming the
file, and the store reopens at its last commit with every committed record intact.

The writer runs in a child process whose file size limit (RLIMIT_FSIZE) is small and which
ignores SIGXFSZ, so a write past the limit fails with EFBIG; where mounting is permitted (root),
the same is done on a 2 MiB tmpfs, where writes fail with ENOSPC.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kesque_helpers import key_of, value_of

from khipu.cli import main
from khipu.storage.kesque import Kesque, KesqueConfig
from khipu.storage.kesque.check import check_store

CONFIG = KesqueConfig(segment_bytes=1 << 20, hash_index_initial_slots=1 << 10)
RECORDS_PER_COMMIT = 50

WRITER = """
import json, resource, signal, sys
from kesque_helpers import key_of, value_of
from khipu.storage.kesque import Kesque, KesqueConfig, KesqueError

path, limit = sys.argv[1], int(sys.argv[2])
if limit:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
config = KesqueConfig(segment_bytes=1 << 20, hash_index_initial_slots=1 << 10)
committed = 0
errors = []
with Kesque.open(path, config=config) as kq:
    i = 0
    while len(errors) < 2 and i < 1_000_000:
        try:
            for _ in range(PER_COMMIT):
                kq.topic("storage").put(key_of(i), value_of(i))
                kq.topic("header").put_at(i, value_of(i, 1))
                i += 1
            kq.commit()
            committed = i
        except KesqueError as error:
            file = str(getattr(error, "file", ""))
            errors.append({"type": type(error).__name__, "file": file, "message": str(error)})
            i = committed  # the store is back at its last commit: try again from there
print(json.dumps({"committed": committed, "errors": errors}))
""".replace("PER_COMMIT", str(RECORDS_PER_COMMIT))


def run_writer(path: Path, limit: int) -> dict[str, object]:
    """Fill the store at `path` in a child until writing fails twice; its JSON report."""
    helpers = str(Path(__file__).parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([helpers, *sys.path])}
    done = subprocess.run(
        [sys.executable, "-c", WRITER, str(path), str(limit)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


def assert_full_store_recovers(store: Path, report: dict[str, object], error_type: str) -> None:
    committed = report["committed"]
    errors = report["errors"]
    assert isinstance(committed, int) and isinstance(errors, list)
    assert committed >= RECORDS_PER_COMMIT, f"nothing could be committed: {errors}"
    assert len(errors) == 2, f"the writer never hit the limit: {report}"
    for error in errors:
        assert error["type"] == error_type, error
        failed = Path(error["file"])
        assert failed.parent.parent == store and failed.name.endswith((".log", ".idx", ".index"))
        assert error["file"] in error["message"] and "last commit" in error["message"]

    with Kesque.open(store, config=CONFIG) as kq:
        storage, header = kq.topic("storage"), kq.topic("header")
        for i in range(committed):
            assert storage.get(key_of(i)) == value_of(i), f"record {i} lost"
            assert header.get_at(i) == value_of(i, 1), f"header {i} lost"
        assert storage.get(key_of(committed)) is None
        assert header.last_offset() == committed - 1
        storage.put(key_of(committed), value_of(committed))  # the writer can go on
        kq.commit()
    report_after = check_store(store)
    assert report_after.ok, report_after.problems
    assert report_after.records_checked == 2 * committed + 1


def test_file_size_limit_gives_typed_error_and_keeps_every_commit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "kesque"
    report = run_writer(store, limit=256 * 1024)
    assert_full_store_recovers(store, report, "StoreWriteFailed")
    assert main(["db", "check", "--datadir", str(tmp_path)]) == 0
    assert "records checked: ok" in capsys.readouterr().out


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    mount_point = tmp_path / f"tmpfs-{uuid.uuid4().hex[:8]}"
    mount_point.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"mount -t tmpfs not permitted here: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        # lazy: a store or child process still holding a file must not leave the mount behind
        subprocess.run(["umount", "--lazy", str(mount_point)], check=False)


def test_full_tmpfs_gives_store_full_and_keeps_every_commit(small_tmpfs: Path) -> None:
    store = small_tmpfs / "kesque"
    report = run_writer(store, limit=0)
    assert_full_store_recovers(store, report, "StoreFull")
