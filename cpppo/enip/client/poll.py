"""Cyclic polling of an EtherNet/IP CIP device through a ``get_attribute`` proxy (spec 2.1.7).

``poll`` builds a proxy (or uses ``via``) and calls ``run``, which calls ``loop`` once per
``cycle``; ``loop`` calls ``execute`` for one poll.  Each polled ``(parameter, value)`` goes to
``process``; each failure (refused connection, timeout, error status, dropped connection)
goes to ``failure`` as the exception, the gateway is closed, and the next attempt waits an
exponentially growing back-off (``backoff_min`` x ``backoff_multiplier`` ^ n, at most
``backoff_max``) until the device answers again.  Polling stops when ``process.done``
becomes true (checked at least every ``latency`` seconds).

Several threads may poll one ``via`` at different rates: each poll holds the proxy's lock.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["execute", "loop", "poll", "run"]

log = logging.getLogger("enip.poll")

BACKOFF_MIN = 0.5
BACKOFF_MULTIPLIER = 2.0
BACKOFF_MAX = 5.0
LATENCY = 0.5


def execute(via: Any, params: Sequence[Any] | None = None,
            pass_thru: bool | None = None) -> list[tuple[Any, Any]]:
    """One poll: read ``params`` (names or tags) via the proxy; [(param, value), ...].

    Raises on any failure (an error status included: values are read with checking)."""
    params = list(params or [])
    lock = getattr(via, "lock", None) or contextlib.nullcontext()
    with lock, via:
        values = list(via.read(via.parameter_substitution(params, pass_thru=pass_thru), checking=True))
    return list(zip(params, values, strict=True))


def loop(via: Any, cycle: float | None = None, last_poll: float | None = None,
         **kwds: Any) -> tuple[float, list[tuple[Any, Any]]]:
    """One poll cycle: ``execute`` now; returns (start time of this poll, results).

    Logs a premature poll (sooner than ``cycle`` after ``last_poll``) and missed cycles."""
    start = time.monotonic()
    if cycle and last_poll is not None:
        since = start - last_poll
        if since < cycle * 0.9:
            log.info("Premature poll: %.3fs after the last, cycle %.3fs", since, cycle)
        elif since > cycle * 2:
            log.info("Missed %d poll cycle(s) of %.3fs", int(since // cycle) - 1, cycle)
    return start, execute(via, **kwds)


def run(via: Any, process: Callable[[Any, Any], Any] | None = None,
        failure: Callable[[BaseException], Any] | None = None, backoff_min: float | None = None,
        backoff_multiplier: float | None = None, backoff_max: float | None = None,
        latency: float | None = None, cycle: float | None = None, **kwds: Any) -> None:
    """Poll ``via`` every ``cycle`` seconds until ``process.done`` (see the module docstring).

    Other keywords (params, pass_thru) go to ``loop``/``execute``."""
    cycle = 1.0 if cycle is None else float(cycle)
    backoff_min = BACKOFF_MIN if backoff_min is None else backoff_min
    backoff_multiplier = BACKOFF_MULTIPLIER if backoff_multiplier is None else backoff_multiplier
    backoff_max = BACKOFF_MAX if backoff_max is None else backoff_max
    latency = LATENCY if latency is None else latency
    backoff: float | None = None
    last_poll: float | None = None
    due = time.monotonic()
    while not getattr(process, "done", False):
        now = time.monotonic()
        if now < due:
            time.sleep(min(latency, due - now))
            continue
        try:
            last_poll, results = loop(via, cycle=cycle, last_poll=last_poll, **kwds)
        except Exception as exc:
            backoff = backoff_min if backoff is None else min(backoff * backoff_multiplier, backoff_max)
            log.info("Polling failure; backing off %.3fs: %s", backoff, exc)
            closer = getattr(via, "close_gateway", None)
            if closer is not None:
                closer(exc=exc)
            if failure is not None:
                failure(exc)
            due = time.monotonic() + backoff
            continue
        backoff = None
        if process is not None:
            for par, val in results:
                process(par, val)
        due = last_poll + cycle
        if due < time.monotonic():  # missed: poll again at once, but keep to the cycle's phase
            due = time.monotonic()


def poll(proxy_class: Callable[..., Any] | None = None, address: tuple[str, int] | None = None,
         depth: int | None = None, multiple: int | None = None, timeout: float | None = None,
         route_path: Any = None, send_path: Any = None, via: Any = None,
         params: Sequence[Any] | None = None, pass_thru: bool | None = None, cycle: float | None = None,
         process: Callable[[Any, Any], Any] | None = None,
         failure: Callable[[BaseException], Any] | None = None,
         backoff_min: float | None = None, backoff_multiplier: float | None = None,
         backoff_max: float | None = None, latency: float | None = None, **kwds: Any) -> None:
    """Create a ``proxy_class`` for ``address`` (unless ``via`` is given) and ``run`` it."""
    if via is None:
        if proxy_class is None:
            raise ValueError("poll needs a proxy_class (and address) or a via")
        host, port = address or ("localhost", 44818)
        extra = {k: v for k, v in (("route_path", route_path), ("send_path", send_path)) if v is not None}
        via = proxy_class(host=host, port=port, depth=depth, multiple=multiple, timeout=timeout,
                          **extra, **kwds)
    run(via=via, process=process, failure=failure, backoff_min=backoff_min,
        backoff_multiplier=backoff_multiplier, backoff_max=backoff_max, latency=latency, cycle=cycle,
        params=params, pass_thru=pass_thru)

