"""Replay records in (scaled) time.

``Pacer`` is the sans-IO part: given a record's time and the clock, how long to wait before
handing it on.  The first record is handed on at once and anchors history to the clock; record
``r`` is then due at ``anchor + (r - first) / speed``, so waits do not drift when the consumer
is slow (a late consumer gets the overdue records without waits until it has caught up).  Records
earlier than one already played are due at once.  ``max_gap`` (history seconds) shortens long
quiet spells in the history to that length.

``playback`` and ``aplayback`` wrap a ``Pacer`` around an iterable of records, with the clock and
sleep injectable (tests pass fakes and assert on the waits requested).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from typing import Any

__all__ = ["Pacer", "aplayback", "playback"]


class Pacer:
    """Waits for replaying history at ``speed`` times real time (``None`` or ``math.inf``: as
    fast as possible, no waits)."""

    def __init__(self, speed: float | None = 1.0, max_gap: float | None = None) -> None:
        if speed is not None and not speed > 0:
            raise ValueError(f"Playback speed must be > 0 (or None for as fast as possible), not {speed!r}")
        if max_gap is not None and max_gap < 0:
            raise ValueError(f"max_gap must be >= 0 seconds, not {max_gap!r}")
        self.speed = math.inf if speed is None else float(speed)
        self.max_gap = max_gap
        self._anchor: tuple[float, float] | None = None  # (history seconds, clock seconds)
        self._latest = -math.inf  # the latest history time played
        self._skipped = 0.0  # history seconds cut out by max_gap

    def delay(self, when: float, now: float) -> float:
        """Seconds to wait (>= 0) before handing on the record of history time ``when``, the
        clock reading ``now``."""
        if self._anchor is None:
            self._anchor, self._latest = (when, now), when
            return 0.0
        if self.max_gap is not None and when - self._latest > self.max_gap:
            self._skipped += when - self._latest - self.max_gap
        self._latest = max(self._latest, when)
        if math.isinf(self.speed):
            return 0.0
        first, start = self._anchor
        due = start + (when - first - self._skipped) / self.speed
        return max(0.0, due - now)


def playback(records: Iterable[Any], speed: float | None = 1.0, *, max_gap: float | None = None,
             clock: Callable[[], float] = time.monotonic,
             sleep: Callable[[float], Any] = time.sleep) -> Iterator[Any]:
    """Yield ``records`` (anything with a ``.timestamp``, or ``(timestamp, ...)`` tuples) paced
    at ``speed`` x real time: 1.0 as recorded, 10.0 ten times faster, None as fast as possible."""
    pacer = Pacer(speed, max_gap)
    for record in records:
        wait = pacer.delay(_when(record), clock())
        if wait > 0:
            sleep(wait)
        yield record


async def aplayback(records: Iterable[Any], speed: float | None = 1.0, *,
                    max_gap: float | None = None, clock: Callable[[], float] = time.monotonic,
                    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep) -> AsyncIterator[Any]:
    """``playback`` for asyncio: the same pacing, waiting with ``await sleep(...)``."""
    pacer = Pacer(speed, max_gap)
    for record in records:
        wait = pacer.delay(_when(record), clock())
        if wait > 0:
            await sleep(wait)
        yield record


def _when(record: Any) -> float:
    """A record's history time in seconds: ``record.timestamp`` or ``record[0]``."""
    when = getattr(record, "timestamp", None)
    if when is None or callable(when):
        when = record[0]
    return float(when)
