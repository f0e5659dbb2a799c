"""Clocks.

``timer()`` is the monotonic, high-resolution clock used to measure elapsed time (the spec's
``start = cpppo.timer(); ...; elapsed = cpppo.timer() - start``).  ``wall()`` is seconds since
the epoch, for timestamps that are stored or compared across processes.  ``deadline()`` fails
an asyncio future that is not done in time (the async clients' reply timeouts).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncio

__all__ = ["timer", "wall"]

timer = time.perf_counter
wall = time.time


def deadline(future: asyncio.Future, timeout: float | None) -> asyncio.TimerHandle | None:
    """Fail ``future`` with TimeoutError unless it is done within ``timeout`` seconds (None:
    never); the timer, to cancel once it is.  One timer a request, not ``asyncio.wait_for``'s
    second future and callbacks; a caller's cancellation cancels the future it awaits, as
    wait_for's would."""
    if timeout is None:
        return None
    return future.get_loop().call_later(timeout, _expire, future)


def _expire(future: asyncio.Future) -> None:
    if not future.done():
        future.set_exception(TimeoutError())
