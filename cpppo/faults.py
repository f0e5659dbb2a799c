"""Faults on demand: the small record a simulator consults to misbehave like a failing PLC.

A :class:`Fault` is data (kind, arguments, since, until, seed); a :class:`FaultState` is the
per-device slot that servers consult on each connection and request.  Consulting it costs one
attribute test when no fault is active, so a healthy plant pays nothing::

    >>> state = FaultState()
    >>> state.active is None
    True
    >>> f = parse_fault("latency", "200ms..800ms", now=0.0, duration="30s")
    >>> f.describe(), f.until
    ('latency 200-800ms', 30.0)
    >>> state.set(f)
    >>> 0.2 <= state.latency(now=1.0) <= 0.8
    True
    >>> state.latency(now=31.0)      # expired: the slot clears itself
    0.0

Kinds (the argument each takes, as the command line writes it):

==========  ===============================================  ==================================
kind        argument                                         what the device does
==========  ===============================================  ==================================
latency     ``300ms`` or a range ``200ms..800ms``            every reply waits that long
timeout     none                                             reads requests, never answers
offline     none                                             stops listening: connections refused
drop        probability ``0..1`` (default 1)                 closes connections (each request)
error       ENIP general status (``0x08``) or Modbus         replies carry that status/exception
            exception code (``4``); ``0x05:Tag1,Tag2`` for
            named services or tags only
freeze      none                                             moving values stop moving
corrupt     fraction ``0..1`` (default 1)                    replies carry garbage or bad length
flap        period ``10s`` (offline half of it)              offline and back, with that period
==========  ===============================================  ==================================
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

__all__ = ["KINDS", "Fault", "FaultError", "FaultState", "follow_listening", "parse_duration", "parse_fault"]

log = logging.getLogger(__name__)

KINDS = ("latency", "timeout", "offline", "drop", "error", "freeze", "corrupt", "flap")

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|min|m|h)?\s*$")
MAX_SECONDS = 7 * 24 * 3600.0  # a week: anything longer is a typo


class FaultError(ValueError):
    """A fault that cannot be applied; the message is one line saying why."""


def parse_duration(text: str | float | int, what: str = "duration") -> float:
    """``"300ms"`` -> 0.3, ``"30s"``/``"30"`` -> 30.0, ``"2m"`` -> 120.0, ``"1h"`` -> 3600.0.

    >>> parse_duration("300ms"), parse_duration("1.5s"), parse_duration("2m"), parse_duration(5)
    (0.3, 1.5, 120.0, 5.0)
    >>> parse_duration("soon")
    Traceback (most recent call last):
    ...
    cpppo.faults.FaultError: bad duration 'soon': expected a number with ms, s, m or h (300ms, 30s)
    """
    if isinstance(text, int | float) and not isinstance(text, bool):
        seconds = float(text)
    else:
        match = _DURATION.match(str(text))
        if not match:
            raise FaultError(f"bad {what} {text!r}: expected a number with ms, s, m or h (300ms, 30s)")
        seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    if not (0 <= seconds <= MAX_SECONDS) or math.isnan(seconds):
        raise FaultError(f"bad {what} {text!r}: must be between 0 and {MAX_SECONDS / 86400:.0f} days")
    return seconds


def _fraction(text: str | None, kind: str) -> float:
    if text in (None, ""):
        return 1.0
    try:
        value = float(text)
    except ValueError:
        raise FaultError(f"{kind}: bad probability {text!r}: expected a number from 0 to 1") from None
    if not 0 < value <= 1:
        raise FaultError(f"{kind}: probability {text!r} is out of range: expected more than 0, at most 1")
    return value


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:g}ms" if seconds < 1 else f"{seconds:g}s"


@dataclass(frozen=True)
class Fault:
    """One injected fault.  ``low``/``high``: latency bounds (seconds); ``probability``: for
    drop and corrupt; ``code``: the error status/exception; ``only``: the services or tags an
    error applies to (empty: all); ``period``: flap period; ``since``/``until``: wall-clock
    seconds (``until`` None: until cleared); ``seed``: for reproducible random draws."""

    kind: str
    low: float = 0.0
    high: float = 0.0
    probability: float = 1.0
    code: int = 0
    only: tuple[str, ...] = ()
    period: float = 0.0
    since: float = 0.0
    until: float | None = None
    seed: int | None = None

    def describe(self) -> str:
        """``latency 200-500ms``, ``error 0x08``, ``drop 0.5``, ``flap 10s`` (no times)."""
        if self.kind == "latency":
            if self.low == self.high:
                return f"latency {_ms(self.low)}"
            if self.high < 1:
                return f"latency {self.low * 1000:g}-{self.high * 1000:g}ms"
            return f"latency {_ms(self.low)}-{_ms(self.high)}"
        if self.kind == "error":
            return f"error 0x{self.code:02X}" + (f" for {','.join(self.only)}" if self.only else "")
        if self.kind in ("drop", "corrupt") and self.probability < 1:
            return f"{self.kind} {self.probability:g}"
        if self.kind == "flap":
            return f"flap {_ms(self.period)}"
        return self.kind

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["only"] = list(self.only)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Fault:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["only"] = tuple(known.get("only") or ())
        fault = cls(**known)
        if fault.kind not in KINDS:
            raise FaultError(f"unknown fault kind {fault.kind!r}: expected one of {', '.join(KINDS)}")
        return fault


def parse_fault(kind: str, arg: str | None = None, *, now: float | None = None,
                duration: str | float | None = None, seed: int | None = None) -> Fault:
    """The fault the command line ``KIND [ARG] [--for DURATION]`` names; FaultError otherwise.

    ``error``'s code is a CIP general status (1..0xFF) or a Modbus exception (1..0xFF); the
    protocol of each device decides which it is.

    >>> parse_fault("error", "0x08").code, parse_fault("error", "4").code
    (8, 4)
    >>> parse_fault("drop", "0.5").probability, parse_fault("flap", "10s").period
    (0.5, 10.0)
    >>> parse_fault("melt")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    cpppo.faults.FaultError: unknown fault kind 'melt': expected one of latency, timeout, offline, ...
    """
    now = time.time() if now is None else now
    until = None if duration in (None, "") else now + parse_duration(duration, "--for")
    if until is not None and until <= now:
        raise FaultError(f"--for {duration!r} must be longer than 0")
    base = {"kind": kind, "since": now, "until": until, "seed": seed}
    if kind not in KINDS:
        raise FaultError(f"unknown fault kind {kind!r}: expected one of {', '.join(KINDS)}")
    if kind == "latency":
        if not arg:
            raise FaultError("latency needs a delay: 300ms, or a range 200ms..800ms")
        low_text, sep, high_text = arg.partition("..")
        low = parse_duration(low_text, "latency")
        high = parse_duration(high_text, "latency") if sep else low
        if high < low:
            raise FaultError(f"latency {arg!r}: the low end is above the high end")
        return Fault(low=low, high=high, **base)
    if kind in ("drop", "corrupt"):
        return Fault(probability=_fraction(arg, kind), **base)
    if kind == "error":
        if not arg:
            raise FaultError("error needs a code: a CIP general status (0x08) or a Modbus exception (4)")
        code_text, _, only = arg.partition(":")
        try:
            code = int(code_text, 0)
        except ValueError:
            raise FaultError(f"error: bad code {code_text!r}: expected a number such as 0x08 or 4") from None
        if not 1 <= code <= 0xFF:
            raise FaultError(f"error: code {code_text!r} is out of range 1..0xFF")
        names = tuple(n.strip() for n in only.split(",") if n.strip())
        return Fault(code=code, only=names, **base)
    if kind == "flap":
        period = parse_duration(arg or "10s", "flap period")
        if period < 0.1:
            raise FaultError(f"flap period {arg!r} is too short: at least 100ms")
        return Fault(period=period, **base)
    if arg not in (None, ""):
        raise FaultError(f"{kind} takes no argument (got {arg!r})")
    return Fault(**base)


@dataclass(slots=True)
class FaultState:
    """The fault slot of one device.  ``active`` is None while healthy: servers test it first."""

    active: Fault | None = None
    _rng: random.Random | None = field(default=None, repr=False)  # made when a fault first draws
    clock: Any = field(default=time.time, repr=False)
    listeners: list[Any] = field(default_factory=list, repr=False)

    @property
    def rng(self) -> random.Random:
        """The slot's random numbers (made on first use: a Mersenne Twister is 2.5 kB, and a
        worker has a slot per device)."""
        if self._rng is None:
            self._rng = random.Random()
        return self._rng

    def set(self, fault: Fault | None) -> None:
        self.active = fault
        if fault is not None and fault.seed is not None:
            self.rng.seed(fault.seed)
        for listener in list(self.listeners):
            listener(fault)

    def clear(self) -> None:
        self.set(None)

    def current(self, now: float | None = None) -> Fault | None:
        """The active fault, clearing it (and telling the listeners) once its ``until`` passes."""
        fault = self.active
        if fault is None:
            return None
        if fault.until is not None and (self.clock() if now is None else now) >= fault.until:
            self.set(None)
            return None
        return fault

    def _is(self, kind: str, now: float | None) -> Fault | None:
        fault = self.current(now)
        return fault if fault is not None and fault.kind == kind else None

    # --- what servers ask ---------------------------------------------------------------
    def latency(self, now: float | None = None) -> float:
        """Seconds to hold the next reply (0.0 for none)."""
        fault = self._is("latency", now)
        if fault is None:
            return 0.0
        return fault.low if fault.low == fault.high else self.rng.uniform(fault.low, fault.high)

    def silent(self, now: float | None = None) -> bool:
        """True: read the request and never answer it (``timeout``)."""
        return self._is("timeout", now) is not None

    def offline(self, now: float | None = None) -> bool:
        """True: the device must not be listening now (``offline``, or ``flap`` in its off half)."""
        fault = self.current(now)
        if fault is None:
            return False
        if fault.kind == "offline":
            return True
        if fault.kind == "flap":
            t = (self.clock() if now is None else now) - fault.since
            return (t % fault.period) < fault.period / 2
        return False

    def next_change(self, now: float | None = None) -> float | None:
        """Seconds until :meth:`offline` may change (flap's half period, or the expiry)."""
        fault = self.current(now)
        if fault is None:
            return None
        now = self.clock() if now is None else now
        steps = []
        if fault.until is not None:
            steps.append(max(0.0, fault.until - now))
        if fault.kind == "flap":
            half = fault.period / 2
            steps.append(half - ((now - fault.since) % half))
        return min(steps) if steps else None

    def drop(self, now: float | None = None) -> bool:
        """True: close this connection now instead of answering."""
        fault = self._is("drop", now)
        return fault is not None and (fault.probability >= 1 or self.rng.random() < fault.probability)

    def error(self, names: Iterable[str] = (), now: float | None = None) -> int:
        """The status/exception code to answer with (0: answer normally).  ``names``: the
        service name and tag names of the request, matched against the fault's ``only``."""
        fault = self._is("error", now)
        if fault is None:
            return 0
        if fault.only and not set(fault.only).intersection(names):
            return 0
        return fault.code

    def frozen(self, now: float | None = None) -> bool:
        return self._is("freeze", now) is not None

    def corrupt(self, reply: bytes, now: float | None = None) -> bytes:
        """``reply``, or with the given probability a mangled one: truncated (a wrong length)
        or with its payload bytes replaced by garbage, keeping the frame's size."""
        fault = self._is("corrupt", now)
        if fault is None or not reply or (fault.probability < 1 and self.rng.random() >= fault.probability):
            return reply
        if self.rng.random() < 0.5 and len(reply) > 2:
            return reply[: self.rng.randrange(1, len(reply))]
        head = min(len(reply) // 2, 8)
        return reply[:head] + bytes(self.rng.randrange(256) for _ in range(len(reply) - head))

    def snapshot(self) -> dict[str, Any] | None:
        fault = self.current()
        return None if fault is None else {**fault.to_dict(), "describe": fault.describe()}


def with_until(fault: Fault, until: float | None) -> Fault:
    """``fault`` with another expiry (the schedule uses it)."""
    return replace(fault, until=until)


_LISTENING_KINDS = ("offline", "flap")


def follow_listening(state: FaultState, server: Any) -> Callable[[], None]:
    """Keep ``server`` (``.enabled``, ``.disable()``, ``await .enable()``) listening exactly
    while ``state`` is not offline: ``offline`` closes its port (connections refused) until
    cleared, ``flap`` closes and reopens it with its period.  Costs nothing until such a fault
    is set: a task runs only while one is active (call on the server's running loop).

    Returns ``stop()``, which the server calls when it closes for good: it stops following
    (the listener is removed and a running task cancelled, so none is left pending when the
    loop ends)."""
    import asyncio

    loop = asyncio.get_running_loop()
    changed = asyncio.Event()
    running: list[asyncio.Task] = []

    async def follow() -> None:
        try:
            for _ in range(10_000_000):  # bounded: a week of 100 ms flaps
                offline = state.offline()
                if offline and server.enabled:
                    server.disable()
                elif not offline and not server.enabled:
                    try:
                        await server.enable()
                    except OSError as exc:  # the port is taken meanwhile: try again shortly
                        log.warning("cannot listen again yet: %s", exc.strerror or exc)
                        await asyncio.sleep(1.0)
                        continue
                fault = state.current()
                if (fault is None or fault.kind not in _LISTENING_KINDS) and server.enabled:
                    return
                changed.clear()
                wait = state.next_change()
                try:
                    await asyncio.wait_for(changed.wait(), None if wait is None else max(wait, 0.001))
                except TimeoutError:
                    pass
        finally:
            running.clear()

    def on_change(fault: Fault | None) -> None:
        changed.set()
        if fault is not None and fault.kind == "offline" and server.enabled:
            server.disable()  # at once: the caller's answer must find the port closed
        if not running and ((fault is not None and fault.kind in _LISTENING_KINDS) or not server.enabled):
            running.append(loop.create_task(follow()))

    owner = threading.get_ident()

    def listener(fault: Fault | None) -> None:
        if threading.get_ident() == owner:
            on_change(fault)
        else:
            loop.call_soon_threadsafe(on_change, fault)

    def stop() -> None:
        with contextlib.suppress(ValueError):
            state.listeners.remove(listener)
        for task in running:
            with contextlib.suppress(RuntimeError):  # its loop is closed already
                task.cancel()
        running.clear()

    state.listeners.append(listener)
    if state.active is not None:
        on_change(state.active)
    return stop
