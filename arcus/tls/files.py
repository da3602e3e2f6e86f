"""Atomic, private writes for the CA's files, and the lock that serialises changes to a CA home.

Every file is written to a temporary name in the same directory (created 0600, umask-proof),
optionally fsync'ed, then renamed over its final name: a reader sees the old file or the new one,
never half of one, and a failure leaves no temporary behind. Keys and the ``current`` pointer are
fsync'ed (they must survive a power cut); cached leaves are not (a torn cache file is detected when
it is read and the leaf is issued again).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from arcus.privfiles import FILE_MODE, make_private_dirs

PUBLIC_MODE = 0o644


def atomic_write(path: Path, data: bytes, *, mode: int = FILE_MODE, durable: bool = True, exclusive: bool = False) -> None:
    """Write ``data`` to ``path`` all at once.

    ``exclusive``: fail with FileExistsError instead of replacing an existing ``path`` (a hard
    link of the finished temporary file, so the check and the creation are one step).
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, mode)
    done = False
    try:
        try:
            if durable:
                os.fchmod(fd, mode)  # exactly ``mode`` whatever the umask (a cache file is never wider)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        if exclusive:
            os.link(tmp, path)
            os.unlink(tmp)
        else:
            os.replace(tmp, path)
        done = True
    finally:
        if not done:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
    if durable:
        sync_dir(path.parent)


def sync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def locked(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``directory`` (created 0700) while changing what it holds."""
    make_private_dirs(directory)
    fd = os.open(directory / ".lock", os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
