"""One writer per run directory: an exclusive ``flock`` on ``<logdir>/.lock``, held while a run
(or an evaluation that logs into it) writes there.

The operating system releases the lock when its process ends in any way, ``kill -9`` included, so
a lock is never stale; the file only records the holder's pid for the message.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_NAME = ".lock"


class RunLockedError(RuntimeError):
    """Another process writes to the run directory; the message names its pid."""


class RunLock:
    """Context manager; ``acquire`` creates the directory if needed and raises `RunLockedError`
    at once (never waits) when another process holds it."""

    def __init__(self, logdir: str | Path):
        self.path = Path(logdir) / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunLockedError(
                f"run directory {self.path.parent} is in use by process {holder}: only one process may "
                f"write a run. Wait for it to end (or stop it with: kill -INT {holder}), then continue "
                "with --resume, or pick another --logdir."
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> bool:
        self.release()
        return False
