"""The few system calls Kesque makes on its files, in one place.

Every write and fsync goes through `write_at`, `fsync`, `sync_data` and `write_file_atomically`,
so a test can inject a full disk by replacing one of them; every record read through a segment
goes through `read_at`, which counts its calls so a benchmark can report reads per get.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


@dataclass
class ReadCounter:
    """How many `read_at` calls (one pread(2) each) this process made."""

    calls: int = 0


READS = ReadCounter()


def read_at(fd: int, length: int, position: int) -> bytes:
    """Read up to `length` bytes at `position` with a single pread(2); shorter only at EOF."""
    READS.calls += 1
    return os.pread(fd, length, position)


def write_at(fd: int, data: bytes | bytearray | memoryview, position: int) -> None:
    """Write all of `data` at `position`; raises OSError (e.g. ENOSPC) on failure."""
    written = os.pwrite(fd, data, position)
    if written == len(data):
        return
    # a short write (a disk filling up): go on from a copy, so no view of a caller's
    # bytearray outlives this call (it could not be cleared while one does)
    view = memoryview(bytes(data[written:]))
    position += written
    while view:
        written = os.pwrite(fd, view, position)
        view = view[written:]
        position += written


def fsync(fd: int) -> None:
    """Flush a file's data and metadata to stable storage; raises OSError on failure."""
    os.fsync(fd)


def sync_data(fd: int) -> None:
    """Flush a file's data (and the metadata needed to read it back); raises OSError."""
    os.fdatasync(fd)


def allocate(fd: int, size: int) -> None:
    """Give a new file `size` bytes of zeros with its disk blocks reserved now, so writes
    through a memory map of it never need space the disk may not have (a map that hits a
    full disk gets SIGBUS, not an error). Raises OSError: ENOSPC, or EFBIG past a size limit."""
    os.ftruncate(fd, size)
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as error:
        if error.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
            raise
        # no fallocate here: write the zeros (what glibc's emulation does)
        zeros = bytes(1 << 20)
        for position in range(0, size, len(zeros)):
            write_at(fd, zeros[: min(len(zeros), size - position)], position)


@contextmanager
def naming(path: Path) -> Iterator[None]:
    """Give an OSError raised in the block the file name `path` (when it names none), so the
    typed error built from it tells which file a write or fsync failed on."""
    try:
        yield
    except OSError as error:
        if error.filename is None:
            error.filename = str(path)
        raise


def fsync_directory(path: Path) -> None:
    """Make the creation, rename or removal of entries in `path` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with naming(path):
            fsync(fd)
    finally:
        os.close(fd)


def write_file_atomically(path: Path, data: bytes, durable: bool) -> None:
    """Replace `path` with `data`: write a temporary file, fsync it, rename it over `path`.

    A reader sees either the old or the new content, never a mix. With `durable`, the file and
    the directory entry are fsynced so the new content survives a power cut. Raises OSError.
    """
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        write_at(fd, data, 0)
        if durable:
            fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
    if durable:
        fsync_directory(path.parent)
