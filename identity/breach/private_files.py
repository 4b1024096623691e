"""Reopening a breach run's own files (``OUT``, ``OUT.unresolved.csv``, ``OUT.state``) safely.

A resumed run and the notices reopen files that an earlier run created. Each reopen refuses to
follow a symbolic link (``O_NOFOLLOW``: a link planted at ``OUT`` would otherwise send e-mail
addresses into whatever file it names) and checks, on the open descriptor, that the file is a
regular file of ours with one name and no access for anyone else. ``O_NONBLOCK`` keeps a FIFO
planted there from hanging the run; it is cleared again once the file is known to be regular.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

OPEN_FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK


class UnsafeFile(Exception):
    """The file is a symbolic link, not a regular file, not ours, has a second name or is open to others."""


def problem_with(info: os.stat_result) -> str | None:
    """Why a file with this ``stat`` must not be reopened, or None."""
    if stat.S_ISLNK(info.st_mode):
        return "is a symbolic link"
    if not stat.S_ISREG(info.st_mode):
        return "is not a regular file"
    if info.st_uid != os.getuid():
        return "is not yours"
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        return "is readable by others"
    if info.st_nlink != 1:
        return "has another name (a hard link)"
    return None


def open_own_file(path: Path, flags: int) -> int:
    """A descriptor of ``path`` opened with ``flags`` and never through a symbolic link.

    :raises UnsafeFile: the file cannot be opened, or ``problem_with`` names a reason (the
        descriptor is closed again).
    """
    try:
        fd = os.open(path, flags | OPEN_FLAGS)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafeFile(f"{path} is a symbolic link; refusing to follow it") from exc
        raise UnsafeFile(f"cannot open {path}: {exc.strerror}") from exc
    try:
        problem = problem_with(os.fstat(fd))
        if problem:
            raise UnsafeFile(f"{path} {problem}; refusing to reopen it")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def same_file(checked: os.stat_result, path: Path) -> bool:
    """Whether ``path`` names (without following a link) the file that was ``checked``, still private."""
    try:
        named = os.lstat(path)
    except OSError:
        return False
    return problem_with(named) is None and (named.st_dev, named.st_ino) == (checked.st_dev, checked.st_ino)
