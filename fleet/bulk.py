"""Building many objects at once: a 100,000-device plan, its health rows, its status reports.

CPython's cyclic collector runs a collection every few hundred new container objects, and
each older-generation pass walks every live object: while a plan of 100,000 devices is read,
that doubles the time (``status --json`` 4.5 s instead of 2).  Nothing built here makes
garbage cycles worth collecting meanwhile.
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
