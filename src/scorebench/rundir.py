"""The run directory: made once, written by one process at a time.

A run (or ``--resume``) holds an exclusive lock on ``<run dir>/.lock`` for its whole life:
``fcntl.flock`` on POSIX, ``msvcrt.locking`` on Windows.  The operating system releases the
lock when its holder exits, however it exits, so a lock left by a killed run never blocks
the resume that follows it; a second writer fails at once, naming the holder's pid, host and
start time (which the holder writes into the lock file after it has the lock).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import sys
from pathlib import Path
from types import TracebackType

from .results import ResultsError

LOCK_FILE = ".lock"


class RunDirError(ResultsError):
    """A run directory that cannot be used: it cannot be made or written, or another run holds it."""


def make_run_dir(path: Path) -> Path:
    """Create ``path`` (and its parents); one :class:`RunDirError` naming it when that fails."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise RunDirError(f"{path}: exists and is not a directory; give --out a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunDirError(f"{path}: cannot create the run directory: {exc.strerror or exc}") from None
    return path


def _try_lock(fd: int) -> bool:
    if sys.platform == "win32":  # pragma: no cover
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


class RunLock:
    """The exclusive write lock of a run directory (a context manager)."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self._fd: int | None = None

    def holder(self) -> str:
        """Who holds the lock, as the holder wrote it (best effort: the file may be mid-write)."""
        try:
            info = json.loads(self.path.read_text())
            return f"pid {info['pid']} on {info['host']}, started {info['started']}"
        except (OSError, ValueError, KeyError, TypeError):
            return "a process that has not yet said who it is"

    def acquire(self) -> RunLock:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise RunDirError(f"{self.run_dir}: cannot write in the run directory: {exc.strerror or exc}") from None
        if not _try_lock(fd):
            os.close(fd)
            raise RunDirError(
                f"{self.run_dir}: another scorebench run is writing here ({self.holder()}); "
                "wait for it to finish, or give another --out"
            )
        stamp = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        text = json.dumps({"pid": os.getpid(), "host": platform.node(), "started": stamp})
        os.ftruncate(fd, 0)
        os.pwrite(fd, text.encode(), 0) if hasattr(os, "pwrite") else os.write(fd, text.encode())
        self._fd = fd
        return self

    def release(self) -> None:
        """Unlock (closing the descriptor releases the lock; the file stays, removing it would race)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()
