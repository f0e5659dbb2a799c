"""One ``up`` / ``down`` / ``restart`` at a time per state folder: an exclusive ``flock`` on
``<state>/lock``.  A second command waits for the first (then finds the fleet converged, as
``up`` is idempotent) and gives up with one line after ``timeout`` seconds.  The kernel drops
the lock when its holder dies, so a killed command never leaves the fleet locked."""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator

from fleet.backends.base import BackendError, Progress, StateDir, no_progress

LOCK_TIMEOUT = 300.0  # seconds a command waits for another on the same fleet


@contextlib.contextmanager
def state_lock(state: StateDir, what: str, timeout: float | None = None,
               progress: Progress = no_progress) -> Iterator[None]:
    """Hold the state folder's lock for the block (creating the folder if needed)."""
    timeout = LOCK_TIMEOUT if timeout is None else timeout
    state.make()
    path = state.root / "lock"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise BackendError(f"cannot lock the state folder {state.root}: {exc.strerror or exc}") from None
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another command"
                    raise BackendError(f"{holder} still holds {path} after {timeout:g} s; "
                                       "try again when it has finished") from None
                progress(0, 1, "waiting for the lock")
                time.sleep(0.1)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"cpppo-fleet {what} (pid {os.getpid()})\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
