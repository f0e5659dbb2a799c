"""Building many objects at once: a 100,000-device plan, its health rows, its status reports.

CPython's cyclic collector runs a collection every few hundred new container objects, and
each older-generation pass walks every live object: while a plan of 100,000 devices is read,
that doubles the time (``status --json`` 4.5 s instead of 2).  Nothing built here makes
garbage cycles worth collecting meanwhile.  A server process holding thousands of
connections collects its youngest generation less often (:func:`collect_less`).
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def no_collections(freeze: bool = False) -> Iterator[None]:
    """No cyclic collections inside (nested: the outermost one turns them back on);
    ``freeze``: what exists on leaving goes to the permanent generation, never scanned again
    (for what lives as long as the process: a worker's devices).

    >>> with no_collections():
    ...     gc.isenabled()
    False
    """
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if freeze:
            gc.freeze()
        if collecting:
            gc.enable()


YOUNGEST = 50_000  # new container objects between collections of the youngest generation, in a server


def collect_less(youngest: int = YOUNGEST) -> None:
    """For a long-running process holding thousands of connections (a worker, a health
    poller): collect the youngest generation every ``youngest`` new container objects instead
    of every 700.  Each poll or request makes a few short-lived objects; at 700 they were
    promoted while still alive and the older generations' passes walked every connection's:
    a fifth of a poller's CPU while 100,000 devices came up, 2% with this.  Garbage cycles
    still go, ``youngest`` objects later (a few megabytes at most).

    >>> collect_less(); gc.get_threshold()[0]
    50000
    >>> gc.set_threshold(700, 10, 10)
    """
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(youngest, middle, oldest)
