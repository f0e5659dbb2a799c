"""What every simulator process shares, whatever its protocol: response delays, the
file-descriptor limit for many devices per process, and the uvloop event loop.

A response ``Delay`` is None (answer at once), a constant number of seconds, or a ``(low,
high)`` range from which each reply draws its own delay uniformly, as the ``-d/--delay #.#[-#.#]``
option of ``enip_server`` and ``modbus_sim`` gives it.

    >>> parse_delay("0.5"), parse_delay(".1-.3"), parse_delay(None)
    (0.5, (0.1, 0.3), None)
    >>> delay_seconds(None), delay_seconds(0.25)
    (0.0, 0.25)
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import resource
from collections.abc import Callable

__all__ = ["Delay", "bind_error_text", "delay_seconds", "delay_source", "ensure_fd_limit", "new_event_loop",
           "parse_delay"]

log = logging.getLogger(__name__)

Delay = float | tuple[float, float] | None


def parse_delay(text: str | None) -> Delay:
    """``"0.5"`` -> 0.5, ``"0.1-0.3"`` -> (0.1, 0.3), empty -> None; ValueError naming the
    text otherwise (negative, low > high, not a number)."""
    if not text:
        return None
    try:
        low, sep, high = text.partition("-")
        if sep:
            pair = (float(low), float(high))
            if not 0 <= pair[0] <= pair[1]:
                raise ValueError
            return pair
        value = float(text)
        if value < 0:
            raise ValueError
        return value
    except ValueError:
        raise ValueError(f"bad --delay {text!r}: expected #.# or #.#-#.# seconds, low <= high") from None


def bind_error_text(exc: OSError) -> str:
    """Why a listen failed, briefly: ``Address already in use`` (asyncio's own message repeats
    the address: ``error while attempting to bind on address ('h', p): address already in use``).

    >>> import errno
    >>> bind_error_text(OSError(errno.EADDRINUSE, "error while attempting to bind ..."))
    'Address already in use'
    """
    if exc.errno and exc.errno > 0:
        return os.strerror(exc.errno)
    return exc.strerror or str(exc)


def delay_seconds(delay: Delay) -> float:
    """The delay for one reply: 0 for None, the constant, or a uniform draw from the range."""
    if delay is None:
        return 0.0
    if isinstance(delay, tuple):
        return random.uniform(*delay)
    return float(delay)


def delay_source(delay: Delay) -> Callable[[], float] | None:
    """A function giving each reply's delay, or None for no delay (so the hot path can skip it)."""
    if delay is None:
        return None
    if isinstance(delay, tuple):
        low, high = delay
        return lambda: random.uniform(low, high)
    if delay < 0:
        raise ValueError(f"delay {delay} is negative")
    return lambda: delay


def ensure_fd_limit(needed: int) -> int:
    """Raise the soft RLIMIT_NOFILE to at least ``needed`` (up to the hard limit).

    Returns the new soft limit; raises OSError with a clear message when the hard limit is
    too low (raise it with ``ulimit -Hn`` or /etc/security/limits.conf)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return soft
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise OSError(f"need {needed} file descriptors but the system limit (ulimit -Hn) is {hard}; "
                      "raise it (ulimit -n, /etc/security/limits.conf, or the container's nofile limit)")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    log.info("raised the open-file limit from %d to %d", soft, needed)
    return needed


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A loop factory for ``asyncio.Runner``/``asyncio.run(..., loop_factory=)``: uvloop's
    event loop where uvloop is installed (it answers several times faster), asyncio's otherwise."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()
