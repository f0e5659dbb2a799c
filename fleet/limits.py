"""Open-files limits: what a worker or a health poller may hold, how many poller shards a
fleet needs, and the one-line refusal when a worker cannot fit.

Each process raises its soft RLIMIT_NOFILE to the hard limit at start (:func:`raise_fd_limit`).
``$CPPPO_FLEET_NOFILE`` lowers the limit the fleet plans for and its processes use (to try
sharding at small scale, or to leave descriptors to other programs).  A worker holds each
device's listening sockets (``Kind.sockets``: 2 for ENIP, TCP and UDP; 1 for Modbus) plus one
connection per device for the health poller and a margin; a health poller holds one
connection per device it polls, so a fleet past one process's limit is polled by several
poller processes (shards), each within the limit.
"""

from __future__ import annotations

import contextlib
import math
import os
import resource
from collections.abc import Iterable

ENV = "CPPPO_FLEET_NOFILE"
MARGIN = 64  # descriptors a worker keeps for itself (logs, database, control and metrics sockets)
POLLER_RESERVE = 256  # descriptors a poller keeps for itself (database, web page, scrapes of workers;
# a quarter of the limit when that is less)


def nofile_limit() -> int:
    """The open-files limit the fleet's processes get: the hard limit, or ``$CPPPO_FLEET_NOFILE``
    when that is lower."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = 1 << 20 if hard == resource.RLIM_INFINITY else hard
    text = os.environ.get(ENV, "").strip()
    if text.isdigit() and int(text) > 0:
        limit = min(limit, int(text))
    return limit


def raise_fd_limit() -> int:
    """Set the soft open-files limit to :func:`nofile_limit` (the hard one, unless lowered);
    return the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = nofile_limit()
    if soft != want:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            soft = want
    return soft


def limit_name(limit: int) -> str:
    """The limit in a message: ``the open-files limit of 300 ($CPPPO_FLEET_NOFILE)``."""
    lowered = limit < resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return f"the open-files limit of {limit} ({'$' + ENV if lowered else 'ulimit -Hn'})"


def worker_fds(sockets: Iterable[int]) -> int:
    """Descriptors a worker needs for devices holding these many listening sockets each, plus a
    health-poll connection each and the margin."""
    return sum(s + 1 for s in sockets) + MARGIN


def poller_shards(devices: int, limit: int | None = None) -> int:
    """How many health poller processes poll ``devices`` devices, one kept connection each,
    within the limit.

    >>> poller_shards(10_000, 20_000), poller_shards(100_000, 20_000), poller_shards(400, 300)
    (1, 6, 2)
    """
    limit = nofile_limit() if limit is None else limit
    room = max(limit - min(POLLER_RESERVE, limit // 4), 1)
    return max(1, math.ceil(devices / room))
