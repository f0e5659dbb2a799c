"""Clocks for behaviours: the system clock, and a fake one that tests move by hand.

A clock gives ``elapsed()`` (seconds since the plant started, never going back) and
``wall()`` (seconds since the epoch, UTC).  Counters, uptime, random walks, lags, integrals
and playback run on elapsed time; periodic shapes (sine, ramp, square, steps) and
``timestamp`` on wall time, so that a restarted device keeps its phase and a daily curve
follows the time of day.
"""

from __future__ import annotations

import time

__all__ = ["Clock", "FakeClock", "SystemClock"]


class Clock:
    """The interface: ``elapsed()`` and ``wall()``, in seconds."""

    def elapsed(self) -> float:  # pragma: no cover - interface
        raise NotImplementedError

    def wall(self) -> float:  # pragma: no cover - interface
        raise NotImplementedError


class SystemClock(Clock):
    """Monotonic elapsed time from construction; wall time from ``time.time``."""

    def __init__(self) -> None:
        self._start = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self._start

    def wall(self) -> float:
        return time.time()


class FakeClock(Clock):
    """A clock that moves only when told: ``clock.advance(1.5)`` or ``clock.set(10)``.

    >>> clock = FakeClock(wall=1_700_000_000.0)
    >>> clock.advance(2.5); clock.elapsed(), clock.wall()
    (2.5, 1700000002.5)
    """

    def __init__(self, elapsed: float = 0.0, wall: float = 1_700_000_000.0) -> None:
        self._elapsed = float(elapsed)
        self._wall0 = float(wall) - self._elapsed

    def elapsed(self) -> float:
        return self._elapsed

    def wall(self) -> float:
        return self._wall0 + self._elapsed

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock does not go back")
        self._elapsed += seconds

    def set(self, elapsed: float) -> None:
        """Jump to ``elapsed`` (back too: a test replaying the same times)."""
        self._elapsed = float(elapsed)
