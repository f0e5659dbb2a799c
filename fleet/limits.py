"""Open-files limits: what a worker or a health poller may hold, how many poller shards a
fleet needs, and the one-line refusal when a worker cannot fit.

Each process raises its soft RLIMIT_NOFILE to the hard limit at start (:func:`raise_fd_limit`).
``$CPPPO_FLEET_NOFILE`` lowers the limit the fleet plans for and its processes use (to try
sharding at small scale, or to leave descriptors to other programs).  A worker holds each
device's listening sockets (``Kind.sockets``: 2 for ENIP, TCP and UDP; 1 for Modbus) plus one
connection per device for the health poller and a margin; a health poller holds one
connection per device it polls, so a fleet past one process's limit is polled by several
poller processes (shards), each within the limit.

The other limit a big fleet meets is the kernel's: its neighbour (ARP) tables hold 1,024
entries by default, which a few hundred containers of one device each fill (seen here: 300
fitted, 600 and 1,000 did not); :func:`make_neighbour_room` raises them before ``up`` starts
more than the default holds with room to spare.
"""

from __future__ import annotations

import contextlib
import math
import os
import resource
from collections.abc import Iterable
from pathlib import Path

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


# -- the kernel's neighbour (ARP) tables -------------------------------------------------------
# One table of each family serves every network namespace; past gc_thresh3 entries the kernel
# refuses new ones ("neighbour table overflow"), and containers stop answering at random.  A
# device address on a bridge costs up to four: the host's entry for it, its container's for the
# gateway, the health poller's for it, and one of IPv6 link-local chatter.
NEIGHBOUR_TABLES = (Path("/proc/sys/net/ipv4/neigh/default"), Path("/proc/sys/net/ipv6/neigh/default"))
NEIGHBOUR_PER_ADDRESS = 4
NEIGHBOUR_HEADROOM = 256  # entries left to the host's other neighbours


def neighbour_entries(addresses: int) -> int:
    """Neighbour-table entries a host needs for ``addresses`` device addresses on bridges.

    >>> neighbour_entries(300), neighbour_entries(1000)
    (1456, 4256)
    """
    return NEIGHBOUR_PER_ADDRESS * addresses + NEIGHBOUR_HEADROOM


def _sysctl(table: Path, key: str) -> str:
    """``net.ipv4.neigh.default.gc_thresh3`` for ``.../net/ipv4/neigh/default`` and the key."""
    return ".".join((*table.parts[-4:], key))


def make_neighbour_room(addresses: int, tables: Iterable[Path] | None = None) -> list[str]:
    """Raise each neighbour table's ``gc_thresh3`` to the power of two that holds the entries of
    ``addresses`` device addresses on bridges (and ``gc_thresh2``, where the kernel starts
    collecting, to half of it); never lower either.  Returns a line for each value raised; a
    table that does not exist is left alone.  PermissionError, one line naming the sysctl to set, when a value
    cannot be raised (not root, a read-only /proc/sys)."""
    need = neighbour_entries(addresses)
    tables = NEIGHBOUR_TABLES if tables is None else tables
    want3 = 1 << (need - 1).bit_length()
    lines = []
    for table in tables:
        try:
            current = {key: int((table / key).read_text()) for key in ("gc_thresh2", "gc_thresh3")}
        except (OSError, ValueError):
            continue
        if current["gc_thresh3"] >= need:
            continue
        for key, value in (("gc_thresh3", want3), ("gc_thresh2", want3 // 2)):
            if current[key] >= value:
                continue
            try:
                (table / key).write_text(f"{value}\n")
            except OSError as exc:
                raise PermissionError(
                    f"{addresses} addresses on bridges need {need} entries in the kernel's neighbour table; "
                    f"{_sysctl(table, key)} is {current[key]} and cannot be raised ({exc.strerror or exc}): "
                    f"run `sysctl -w {_sysctl(table, key)}={value}` as root") from None
            lines.append(f"raised {_sysctl(table, key)} from {current[key]} to {value} "
                         f"for {addresses} addresses on bridges ({need} neighbour entries)")
    return lines
