"""Private files: the store, the audit log and (later) keys are readable by their owner only.

Directories are created 0700 and files 0600 regardless of the umask; SQLite's -wal and -shm
companions get the same mode.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700


def make_private_dirs(directory: Path) -> None:
    """Create ``directory`` and missing ancestors as 0700; leave existing ones alone.

    ``mkdir(mode=...)`` is filtered by the umask, so every directory we create is chmod'ed to
    exactly 0700 afterwards (the store's directory holds secrets from issue 4 on).
    """
    missing: list[Path] = []
    current = directory
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for path in reversed(missing):
        try:
            path.mkdir(mode=DIR_MODE)
        except FileExistsError:
            continue  # created by a concurrent opener: not ours to chmod
        os.chmod(path, DIR_MODE)


def create_private_file(path: Path) -> None:
    """Create the database file as 0600 before SQLite opens it (umask-proof)."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, FILE_MODE)
    except FileExistsError:
        return
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)


def tighten_sqlite_modes(path: Path) -> None:
    """Make the database and its -wal/-shm companions 0600 (when they exist and are ours).

    SQLite gives -wal and -shm the database file's mode, so this mostly repairs a store
    file that someone loosened by hand.
    """
    for candidate in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            st = os.stat(candidate)
        except FileNotFoundError:
            continue
        if stat.S_IMODE(st.st_mode) != FILE_MODE and st.st_uid == os.geteuid():
            os.chmod(candidate, FILE_MODE)
