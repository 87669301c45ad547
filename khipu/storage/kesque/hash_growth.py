"""Growing a hash topic's index: in the writer when it is small, on the other core when it is big.

When the used slots of generation g would pass `hash_index_max_load`, the writer needs
generation g + 1 at twice the slots. Re-inserting every entry costs about 3 us each in Python:
nothing for a small index, a pause of a second per 300k entries at the commit that fills a big
one. So an index of at least `hash_index_background_entries` is built by a child process
(index_builder.py) while commits go on into g, and the writer adopts it at the first commit
after the child is done:

- the child copied g's entries of the records before the boundary B (the committed end at the
  commit before the growth started) and entered the later committed records from the log, up
  to a point C; it made the file durable (durable stores: msynced in steps while it copies, as
  one long burst of writes would stall the writer's commit fsyncs for as long) and printed C;
- the writer enters the records from C to the committed end (a few thousand at most), renames
  the file into place and fsyncs the directory; from there it is the synchronous path: the
  commit's own entries go into g + 1, the commit file names it, and readers switch at that
  commit. The commit file names C as where records begin whose entries may not be durable in
  g + 1, so an open after a power cut re-enters them (hash_recovery.py).

Should the used slots of g pass HARD_LOAD while the child runs, the writer waits for it
(bounded); should the child fail, be killed or time out, the writer logs a warning and builds
g + 1 itself at that commit, as it would have without the child. Closing the store, a rollback
and a writer reopening stop the child (SIGTERM) and remove its temporary file, named
`hash.{g+1:08d}.idx.grow-{writer pid}.tmp`: no other writer's file or repair's `*.idx.tmp`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import khipu
from khipu.storage.kesque import files
from khipu.storage.kesque.commit_file import TopicState
from khipu.storage.kesque.config import KesqueConfig
from khipu.storage.kesque.errors import StoreCorrupted
from khipu.storage.kesque.hash_index import HashIndex, build_index, index_file_name
from khipu.storage.kesque.index_builder import BuildRequest, BuildResult, enter_committed
from khipu.storage.kesque.segment import Segment

logger = logging.getLogger(__name__)

HARD_LOAD = 0.85
"""While a child builds, the writer keeps inserting into g up to this load, then waits."""
CATCH_UP_RECORDS = 1024
"""A child stops catching up from the log once fewer committed records than this are left."""
STOP_SECONDS = 5.0
"""How long a stopped child may take to exit after SIGTERM before it is killed."""
WAIT_SECONDS_MIN = 30.0
WAIT_SECONDS_PER_SLOT = 10e-6
"""At the hard load the writer waits for the child at most this long per slot of g (several
times what a build costs per entry), at least WAIT_SECONDS_MIN; then it builds itself."""
BUILDER_COMMAND = (
    "import sys; from khipu.storage.kesque.index_builder import main; sys.exit(main(sys.argv[1:]))"
)
"""`python -c` of this, not `-m`: the package imports the module before `-m` would run it."""


@dataclass(frozen=True)
class GrownIndex:
    """The next generation of an index, ready to take the commit's entries."""

    index: HashIndex
    used: int
    """Its used slots."""
    replay_from: tuple[int, int] | None
    """Where the records begin whose entries may not be durable in `index`; the commit file
    names it so that an open after a power cut re-enters them (None: every entry is durable,
    or the config is not)."""


@dataclass
class _Builder:
    process: subprocess.Popen[str]
    request: BuildRequest
    started: float


def grown_slots_log2(index: HashIndex, needed: int, max_load: float) -> int:
    """log2 of the slots of the next generation: at least twice `index`'s, and `needed`
    entries fill at most half of `max_load` of it."""
    slots_log2 = index.slots_log2 + 1
    while needed > max_load * (1 << slots_log2) / 2:
        slots_log2 += 1
    return slots_log2


def grow_in_writer(
    directory: Path, index: HashIndex, needed: int, config: KesqueConfig
) -> GrownIndex:
    """Build the next generation of `index` here and now from its live entries (durable when
    the config is). Raises OSError."""
    generation = index.generation + 1
    grown, used = build_index(
        directory / index_file_name(generation),
        grown_slots_log2(index, needed, config.hash_index_max_load),
        generation,
        index.salt,
        index.live_entries(),
        config.fsync,
        index.version,
    )
    if config.fsync:
        files.fsync_directory(directory)
    return GrownIndex(grown, used, None)


class IndexGrowth:
    """The writer's side of growing one hash topic's index (see the module docstring)."""

    def __init__(self, topic: str, directory: Path, config: KesqueConfig) -> None:
        self.topic = topic
        self.directory = directory
        self.config = config
        self.hard_load = max(HARD_LOAD, config.hash_index_max_load)
        self._builder: _Builder | None = None

    @property
    def building(self) -> bool:
        """Whether a child was started and not yet adopted or stopped."""
        return self._builder is not None

    @property
    def builder_pid(self) -> int | None:
        return self._builder.process.pid if self._builder is not None else None

    def step(
        self, index: HashIndex, needed: int, state: TopicState, segments: list[Segment]
    ) -> GrownIndex | None:
        """Writer, at a commit's write-out, with `needed` used slots once its entries are in:
        the next generation if this commit must switch to it (built here, or a child's build
        adopted), else None (nothing due, or a child still builds). `state` is the last commit,
        `segments` the writer's. Raises OSError (building here failed)."""
        if self._builder is None:
            if needed <= self.config.hash_index_max_load * index.slots:
                return None
            if (
                needed < self.config.hash_index_background_entries
                or needed > self.hard_load * index.slots
                or state.segments == 0
            ):
                return grow_in_writer(self.directory, index, needed, self.config)
            try:
                self._start(index, needed, state)
            except OSError as error:
                self._warn(f"cannot start the child: {error}", index.generation + 1)
                return grow_in_writer(self.directory, index, needed, self.config)
            return None
        builder = self._builder
        code = builder.process.poll()
        if code is None:
            if needed <= self.hard_load * index.slots:
                return None
            code = self._wait_at_hard_load(builder, index)
        self._builder = None
        if code is None:
            return self._fall_back(builder, "the child did not finish in time", index, needed)
        stdout, stderr = builder.process.communicate()
        if code != 0:
            said = stderr.strip().splitlines()
            reason = f"killed by signal {-code}" if code < 0 else f"exit {code}"
            if said:
                reason = f"{reason}: {said[-1]}"
            return self._fall_back(builder, reason, index, needed)
        try:
            result = BuildResult.parse(stdout.strip().splitlines()[-1] if stdout.strip() else "")
            return self._adopt(builder, result, index, needed, state, segments)
        except (OSError, ValueError, StoreCorrupted) as error:
            return self._fall_back(builder, f"{type(error).__name__}: {error}", index, needed)

    def stop(self) -> None:
        """Stop a running child (SIGTERM, then SIGKILL after STOP_SECONDS) and remove its
        temporary file. Never raises."""
        builder = self._builder
        if builder is None:
            return
        self._builder = None
        process = builder.process
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        with contextlib.suppress(OSError, ValueError):
            process.communicate()  # closes the pipes
        with contextlib.suppress(OSError):
            builder.request.temporary.unlink(missing_ok=True)

    def _start(self, index: HashIndex, needed: int, state: TopicState) -> None:
        generation = index.generation + 1
        temporary = self.directory / f"{index_file_name(generation)}.grow-{os.getpid()}.tmp"
        temporary.unlink(missing_ok=True)
        request = BuildRequest(
            directory=self.directory,
            generation=index.generation,
            temporary=temporary,
            slots_log2=grown_slots_log2(index, needed, self.config.hash_index_max_load),
            boundary=(state.segments - 1, state.end),
            boundary_records=state.records,
            parent_pid=os.getpid(),
            catch_up_records=CATCH_UP_RECORDS,
            durable=self.config.fsync,
        )
        package_root = str(Path(khipu.__file__).resolve().parent.parent)
        python_path = os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))
        process = subprocess.Popen(
            [sys.executable, "-c", BUILDER_COMMAND, *request.arguments()],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": python_path},
            start_new_session=True,  # a terminal's ^C is for the writer, which stops it
        )
        self._builder = _Builder(process, request, time.monotonic())
        logger.info(
            "kesque index growth started topic=%s generation=%d entries=%d slots=%d pid=%d",
            self.topic,
            generation,
            needed,
            1 << request.slots_log2,
            process.pid,
        )

    def _wait_at_hard_load(self, builder: _Builder, index: HashIndex) -> int | None:
        """The child's exit code once it exits, or None if it does not within the bound."""
        bound = max(WAIT_SECONDS_MIN, WAIT_SECONDS_PER_SLOT * index.slots)
        logger.info(
            "kesque index growth waiting topic=%s generation=%d load=%.3f bound_s=%.0f",
            self.topic,
            index.generation + 1,
            self.hard_load,
            bound,
        )
        try:
            return builder.process.wait(bound)
        except subprocess.TimeoutExpired:
            self._builder = builder
            self.stop()
            return None

    def _adopt(
        self,
        builder: _Builder,
        result: BuildResult,
        index: HashIndex,
        needed: int,
        state: TopicState,
        segments: list[Segment],
    ) -> GrownIndex:
        """Enter the records from the child's point to the committed end, rename the file
        into place. Raises OSError, ValueError (not the build asked for, or too small by now),
        StoreCorrupted (a damaged committed record)."""
        request = builder.request
        if request.generation != index.generation:
            raise ValueError(f"built from generation {request.generation}, not {index.generation}")
        if needed > self.hard_load * (1 << request.slots_log2):
            raise ValueError(f"{needed} entries are too many for {1 << request.slots_log2} slots")
        grown = HashIndex(request.temporary, writable=True)
        try:
            if (grown.generation, grown.slots_log2) != (request.generation + 1, request.slots_log2):
                raise ValueError(f"{request.temporary} is not the generation the child was asked")
            caught_up = enter_committed(grown, segments, result.reached, state)
            if result.records + caught_up != state.records:
                raise ValueError(
                    f"{result.records} + {caught_up} records entered, "
                    f"the commit has {state.records}"
                )
            path = self.directory / index_file_name(request.generation + 1)
            os.replace(request.temporary, path)
            grown.path = path  # the map stays: the pages just entered are mapped already
            if self.config.fsync:
                files.fsync_directory(self.directory)
        except BaseException:
            grown.close()
            raise
        logger.info(
            "kesque index grown topic=%s generation=%d entries=%d caught_up=%d "
            "caught_up_from=%d:%d seconds=%.2f",
            self.topic,
            request.generation + 1,
            result.entries + caught_up,
            caught_up,
            *result.reached,
            time.monotonic() - builder.started,
        )
        replay = result.reached if self.config.fsync else None
        return GrownIndex(grown, result.entries + caught_up, replay)

    def _fall_back(
        self, builder: _Builder, reason: str, index: HashIndex, needed: int
    ) -> GrownIndex:
        self._warn(reason, index.generation + 1)
        builder.request.temporary.unlink(missing_ok=True)
        return grow_in_writer(self.directory, index, needed, self.config)

    def _warn(self, reason: str, generation: int) -> None:
        logger.warning(
            "kesque index growth failed topic=%s generation=%d fallback=writer reason=%r",
            self.topic,
            generation,
            reason,
        )
