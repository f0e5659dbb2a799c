"""Clocks.

``timer()`` is the monotonic, high-resolution clock used to measure elapsed time (the spec's
``start = cpppo.timer(); ...; elapsed = cpppo.timer() - start``).  ``wall()`` is seconds since
the epoch, for timestamps that are stored or compared across processes.
"""

from __future__ import annotations

import time

__all__ = ["timer", "wall"]

timer = time.perf_counter
wall = time.time
