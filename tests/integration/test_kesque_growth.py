"""A hash index grown by a child process while the writer commits (hash_growth.py)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import kesque_workload as workload
import pytest

from khipu.storage.kesque import HashTopic, Kesque, KesqueConfig, hash_growth
from khipu.storage.kesque.check import check_store
from khipu.storage.kesque.commit_file import read_commit
from khipu.storage.kesque.hash_index import (
    SLOT,
    SLOTS_START,
    VERSION_BLAKE2B,
    HashIndex,
    build_index,
    index_file_name,
    key_hash,
)
from khipu.storage.kesque.index_builder import GATE_VARIABLE
from khipu.storage.kesque.repair import repair_store
from khipu.storage.kesque.segment import scan_records

HERE = Path(__file__).resolve().parent
GROWTH_LOGGER = "khipu.storage.kesque.hash_growth"
Entry = tuple[int, int, int, int]


def make_config(**changes: object) -> KesqueConfig:
    fields: dict[str, object] = {
        "segment_bytes": 16 * 1024,
        "offset_index_interval": 256,
        "hash_index_initial_slots": 64,
        "hash_index_background_entries": 0,  # every growth in a child
        "fsync": False,
        "reader_refresh_seconds": 3600.0,
        **changes,
    }
    return KesqueConfig(**fields)  # type: ignore[arg-type]


def key(i: int) -> bytes:
    return workload.record_key(-1, i)


def value(i: int) -> bytes:
    return workload.record_value(-1, i)


class Keys:
    """Puts keys 0, 1, 2, ... into `storage`, a few per commit."""

    def __init__(self, writer: Kesque) -> None:
        self.writer = writer
        self.storage = writer.hash_topic("storage")
        self.count = 0

    def commit(self, how_many: int) -> None:
        first = self.count
        self.storage.put_many((key(i), value(i)) for i in range(first, first + how_many))
        self.count += how_many
        self.writer.commit()

    def until_building(self, per_commit: int = 5) -> int:
        """Commit until a child builds the next generation; its pid."""
        for _ in range(200):
            self.commit(per_commit)
            pid = self.storage._growth.builder_pid
            if pid is not None:
                return pid
        raise AssertionError("the index never started growing")

    def until_generation(self, generation: int, per_commit: int = 2) -> None:
        for _ in range(500):
            if self.writer.state.topic("storage").index_generation >= generation:
                return
            self.commit(per_commit)
            time.sleep(0.01)
        raise AssertionError(f"generation {generation} never came")

    def verify(self, topic: HashTopic | None = None) -> None:
        storage = topic or self.storage
        for i in range(self.count):
            assert storage.get(key(i)) == value(i), i


def log_entries(topic: HashTopic, index: HashIndex) -> set[Entry]:
    """The entries a synchronous build would hold: one per committed record."""
    return {
        (index.hash_of(record.key), ordinal, record.position, record.length)
        for ordinal, record in topic.iter_records()
    }


def temporary_files(store: Path) -> list[str]:
    return sorted(name for name in os.listdir(store / "storage") if name.endswith(".tmp"))


def builder_file_made(store: Path) -> bool:
    """Whether a builder's file is in `storage` (not build_index's own: a big batch at a
    small index grows in the writer)."""
    return any(".grow-" in name for name in temporary_files(store))


def all_temporary_files(store: Path) -> list[str]:
    return sorted(
        f"{topic.name}/{name}"
        for topic in store.iterdir()
        if topic.is_dir()
        for name in os.listdir(topic)
        if name.endswith(".tmp")
    )


@pytest.fixture
def gate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Builders wait after their copy until this file exists."""
    path = tmp_path / "gate"
    monkeypatch.setenv(GATE_VARIABLE, str(path))
    return path


@pytest.fixture
def growth_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.INFO, logger=GROWTH_LOGGER)
    yield caplog


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == GROWTH_LOGGER]


@pytest.mark.parametrize("catch_up", [0, 10**9], ids=["child-catches-up", "writer-catches-up"])
def test_the_background_build_holds_what_a_synchronous_build_would(
    tmp_path: Path,
    gate: Path,
    growth_log: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    catch_up: int,
) -> None:
    monkeypatch.setattr(hash_growth, "CATCH_UP_RECORDS", catch_up)
    store = tmp_path / "kesque"
    with Kesque.open(store, config=make_config()) as writer:
        keys = Keys(writer)
        child = keys.until_building()
        generation = writer.state.topic("storage").index_generation
        for _ in range(3):  # commits land while the child builds
            keys.commit(2)
            keys.verify()
        assert keys.storage._growth.builder_pid == child
        assert writer.state.topic("storage").index_generation == generation
        gate.touch()
        builder = keys.storage._growth._builder
        assert builder is not None
        assert builder.process.wait(timeout=60) == 0
        keys.commit(2)  # adopts it
        state = writer.state.topic("storage")
        assert state.index_generation == generation + 1
        grown = keys.storage.index
        assert grown is not None and grown.generation == generation + 1
        entries = list(grown.live_entries())
        assert len(entries) == len(set(entries))
        assert set(entries) == log_entries(keys.storage, grown)
        assert state.index_used == len(entries) == keys.count
        keys.verify()
    grown_lines = [line for line in messages(growth_log) if "kesque index grown" in line]
    assert len(grown_lines) == 1, messages(growth_log)
    caught_up = int(grown_lines[0].split("caught_up=")[1].split()[0])
    # the child stops at the boundary: the writer enters the growth's first commit (5) and the
    # three after it (2 each)
    assert caught_up == (0 if catch_up == 0 else 5 + 3 * 2)
    assert temporary_files(store) == []
    assert check_store(store, make_config()).ok


def test_a_reader_process_and_the_writer_find_every_key_across_switches(tmp_path: Path) -> None:
    store = tmp_path / "kesque"
    config = workload.config(background=True)
    with Kesque.open(store, config=config) as writer:
        workload.write_batch(writer, 0)
        writer.commit()
        reader = subprocess.Popen(
            [sys.executable, str(HERE / "kesque_workload.py"), "read-all", str(store), "3"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(HERE.parent.parent)},
        )
        storage = writer.hash_topic("storage")
        batch = 1
        built_while_committing = 0
        while reader.poll() is None and batch < 2000:
            workload.write_batch(writer, batch)
            writer.commit()
            if storage._growth.building:
                built_while_committing += 1
                if batch % 5 == 0:
                    for earlier in range(batch + 1):
                        workload.verify_batch(writer, earlier)
            batch += 1
            time.sleep(0.002)
        output, errors = reader.communicate(timeout=60)
        for earlier in range(batch):
            workload.verify_batch(writer, earlier)
        generation = writer.state.topic("storage").index_generation
    assert reader.returncode == 0, errors
    words = output.split()
    assert words[0] == "checks" and int(words[1]) > 100, output
    seen = [int(g) for g in words[3].split(",")]
    assert len(seen) >= 3, output  # the reader read across at least two switches
    assert generation >= 4 and built_while_committing > 0
    assert check_store(store, config).ok


def process_gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def children_of(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as children:
            return [int(word) for word in children.read().split()]
    except FileNotFoundError:
        return []


def wait_for(condition: object, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise AssertionError(f"{what} within {seconds}s")


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="needs Linux /proc")
def test_sigkill_of_the_writer_while_the_child_builds(tmp_path: Path, gate: Path) -> None:
    store = tmp_path / "kesque"
    writer = subprocess.Popen(
        [sys.executable, str(HERE / "kesque_workload.py"), "write-background", str(store)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(HERE.parent.parent)},
    )
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline().startswith("start")
        wait_for(lambda: builder_file_made(store), 60, "the writer started no builder")
        children = children_of(writer.pid)  # storage's builder, perhaps account's too
        assert children
        writer.send_signal(signal.SIGKILL)
        output, _ = writer.communicate(timeout=30)
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
    # the orphan sees its parent gone (it waits at the gate) and exits without a trace
    for child in children:
        wait_for(lambda child=child: process_gone(child), 10, f"builder {child} did not exit")
    reported = workload_batches(output)
    config = workload.config(background=True)
    # an orphan's file is nothing to `khipu db check` and `khipu db repair`
    leftover = all_temporary_files(store)
    assert any(".grow-" in name for name in leftover), leftover
    assert check_store(store, config).ok
    repair_store(store, config)
    assert all_temporary_files(store) == leftover
    assert check_store(store, config).ok
    with Kesque.open(store, config=config) as reopened:
        last = reopened.topic("header").last_offset()
        assert last >= max(reported, default=-1)
        for batch in range(last + 1):
            workload.verify_batch(reopened, batch)
        assert all_temporary_files(store) == []
    assert check_store(store, config).ok


def workload_batches(output: str) -> list[int]:
    return [int(line.split()[1]) for line in output.splitlines() if line.startswith("committed")]


def test_sigkill_of_the_child_falls_back_to_a_build_in_the_writer(
    tmp_path: Path, gate: Path, growth_log: pytest.LogCaptureFixture
) -> None:
    store = tmp_path / "kesque"
    with Kesque.open(store, config=make_config()) as writer:
        keys = Keys(writer)
        child = keys.until_building()
        generation = writer.state.topic("storage").index_generation
        wait_for(lambda: builder_file_made(store), 30, "the builder made no file")
        os.kill(child, signal.SIGKILL)
        builder = keys.storage._growth._builder
        assert builder is not None
        builder.process.wait(timeout=30)
        keys.commit(2)
        assert writer.state.topic("storage").index_generation == generation + 1
        assert not keys.storage._growth.building
        assert temporary_files(store) == []
        keys.verify()
        index = keys.storage.index
        assert index is not None
        assert set(index.live_entries()) == log_entries(keys.storage, index)
    warnings = [line for line in messages(growth_log) if "failed" in line]
    assert len(warnings) == 1 and "fallback=writer" in warnings[0] and "signal 9" in warnings[0]
    assert check_store(store, make_config()).ok


def test_close_and_rollback_stop_the_child_and_remove_its_file(tmp_path: Path, gate: Path) -> None:
    store = tmp_path / "kesque"
    config = make_config()
    with Kesque.open(store, config=config) as writer:
        keys = Keys(writer)
        keys.until_building()
        builder = keys.storage._growth._builder
        assert builder is not None
        wait_for(lambda: builder_file_made(store), 30, "the builder made no file")
        keys.storage.put(key(10_000), value(10_000))
        writer.rollback()  # as after a failed write
        assert builder.process.returncode is not None
        assert temporary_files(store) == []
        assert keys.storage.get(key(10_000)) is None
        keys.verify()
        child = keys.until_building()  # a later commit starts another
        builder = keys.storage._growth._builder
        assert builder is not None and builder.process.pid == child
        wait_for(lambda: builder_file_made(store), 30, "the builder made no file")
    assert builder.process.returncode is not None
    assert temporary_files(store) == []
    with Kesque.open(store, config=config) as reopened:
        keys.verify(reopened.hash_topic("storage"))
    assert check_store(store, config).ok


def test_at_the_hard_load_the_writer_waits_for_the_child(
    tmp_path: Path,
    gate: Path,
    growth_log: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    waits: list[int] = []
    real_wait = hash_growth.IndexGrowth._wait_at_hard_load

    def open_gate_and_wait(
        growth: hash_growth.IndexGrowth, builder: object, index: HashIndex
    ) -> int | None:
        waits.append(index.generation)
        gate.touch()  # the child may finish only once the writer waits for it
        return real_wait(growth, builder, index)  # type: ignore[arg-type]

    monkeypatch.setattr(hash_growth.IndexGrowth, "_wait_at_hard_load", open_gate_and_wait)
    store = tmp_path / "kesque"
    with Kesque.open(store, config=make_config()) as writer:
        keys = Keys(writer)
        keys.until_building()
        generation = writer.state.topic("storage").index_generation
        for _ in range(100):
            keys.commit(2)
            state = writer.state.topic("storage")
            assert state.index_used <= hash_growth.HARD_LOAD * state.index_slots
            if state.index_generation > generation:
                break
        assert writer.state.topic("storage").index_generation == generation + 1
        keys.verify()
    assert waits == [generation]
    lines = messages(growth_log)
    assert any("kesque index growth waiting" in line for line in lines), lines
    assert any("kesque index grown" in line for line in lines), lines
    assert not any("failed" in line for line in lines), lines


def test_a_child_that_does_not_finish_in_time_is_stopped_and_the_writer_builds(
    tmp_path: Path,
    gate: Path,
    growth_log: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(hash_growth, "WAIT_SECONDS_MIN", 0.3)
    store = tmp_path / "kesque"
    with Kesque.open(store, config=make_config()) as writer:
        keys = Keys(writer)
        keys.until_building()
        builder = keys.storage._growth._builder
        assert builder is not None
        generation = writer.state.topic("storage").index_generation
        keys.until_generation(generation + 1, per_commit=3)
        assert builder.process.returncode is not None  # stopped, never adopted
        state = writer.state.topic("storage")
        assert state.index_used <= hash_growth.HARD_LOAD * state.index_slots
        assert temporary_files(store) == []
        keys.verify()
    lines = messages(growth_log)
    assert any("did not finish in time" in line for line in lines), lines
    assert not any("kesque index grown" in line for line in lines), lines


def test_entries_the_disk_lost_after_the_switch_come_back_at_open(
    tmp_path: Path, growth_log: pytest.LogCaptureFixture
) -> None:
    store = tmp_path / "kesque"
    # no segment roll after the switch: a roll msyncs the index
    config = make_config(fsync=True, index_sync_bytes=1 << 30, segment_bytes=1 << 20)
    writer = Kesque.open(store, config=config)
    keys = Keys(writer)
    keys.until_building()
    generation = writer.state.topic("storage").index_generation
    keys.until_generation(generation + 1)
    keys.commit(3)
    replay = writer.state.topic("storage").replay_from
    grown_line = next(line for line in messages(growth_log) if "kesque index grown" in line)
    reached = grown_line.split("caught_up_from=")[1].split()[0]
    assert replay is not None and replay == tuple(int(part) for part in reached.split(":"))
    assert read_commit(store / "COMMIT")[0].topic("storage").replay_from == replay
    for topic in writer.all_topics():  # a crash: nothing settled
        topic.close()
    os.close(writer._lock_fd)
    # a power cut: the pages of every entry entered after the child's msync are lost
    path = store / "storage" / index_file_name(generation + 1)
    data = bytearray(path.read_bytes())
    lost = 0
    for at in range(SLOTS_START, len(data), SLOT.size):
        hashed, ordinal, position, _ = SLOT.unpack_from(data, at)
        if hashed > 1 and (ordinal, position) >= replay:
            data[at : at + SLOT.size] = bytes(SLOT.size)
            lost += 1
    path.write_bytes(bytes(data))
    assert lost >= 3
    with Kesque.open(store, config=config) as reopened:
        keys.verify(reopened.hash_topic("storage"))
    assert check_store(store, config).ok


def test_a_version_1_index_grows_in_the_background_as_version_1(tmp_path: Path) -> None:
    store = tmp_path / "kesque"
    config = make_config()
    with Kesque.open(store, config=config) as writer:
        keys = Keys(writer)
        keys.commit(10)
        generation = writer.state.topic("storage").index_generation
        old = keys.storage.index
        assert old is not None
        slots_log2 = old.slots_log2
    # the index of a store made before version 2: keyed BLAKE2b for every key
    directory = store / "storage"
    salt = b"s" * 16
    segment_path = next(directory.glob("*.log"))
    log = segment_path.read_bytes()
    records = scan_records(lambda at, n: log[at : at + n], 0, len(log), segment_path)
    entries = [(key_hash(salt, r.key), 0, r.position, r.length) for r in records]
    path = directory / index_file_name(generation)
    path.unlink()
    index, _ = build_index(path, slots_log2, generation, salt, entries, False, VERSION_BLAKE2B)
    index.close()
    with Kesque.open(store, config=config) as writer:
        keys = Keys(writer)
        keys.count = 10
        keys.until_building()
        keys.until_generation(generation + 1)
        grown = keys.storage.index
        assert grown is not None and grown.version == VERSION_BLAKE2B and grown.salt == salt
        assert set(grown.live_entries()) == log_entries(keys.storage, grown)
        keys.verify()
    assert check_store(store, config).ok
