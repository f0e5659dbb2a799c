"""What every simulator process shares, whatever its protocol: response delays, the
file-descriptor limit for many devices per process, the uvloop event loop, and a rate-limited
one-line log for what clients get wrong (``RateLimitedLog``).

A response ``Delay`` is None (answer at once), a constant number of seconds, or a ``(low,
high)`` range from which each reply draws its own delay uniformly, as the ``-d/--delay #.#[-#.#]``
option of ``enip_server`` and ``modbus_sim`` gives it.

    >>> parse_delay("0.5"), parse_delay(".1-.3"), parse_delay(None)
    (0.5, (0.1, 0.3), None)
    >>> delay_seconds(None), delay_seconds(0.25)
    (0.0, 0.25)
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import resource
import socket
import time
from collections.abc import Callable
from typing import Any

__all__ = ["Delay", "RateLimitedLog", "bind_error_text", "bound_socket", "delay_seconds", "delay_source",
           "ensure_fd_limit", "listen_tcp", "listen_udp", "new_event_loop", "parse_delay"]

log = logging.getLogger(__name__)

Delay = float | tuple[float, float] | None


def parse_delay(text: str | None) -> Delay:
    """``"0.5"`` -> 0.5, ``"0.1-0.3"`` -> (0.1, 0.3), empty -> None; ValueError naming the
    text otherwise (negative, low > high, not a number)."""
    if not text:
        return None
    try:
        low, sep, high = text.partition("-")
        if sep:
            pair = (float(low), float(high))
            if not 0 <= pair[0] <= pair[1]:
                raise ValueError
            return pair
        value = float(text)
        if value < 0:
            raise ValueError
        return value
    except ValueError:
        raise ValueError(f"bad --delay {text!r}: expected #.# or #.#-#.# seconds, low <= high") from None


class WebBindError(OSError):
    """A web address could not be bound (the message names it); here, not in
    :mod:`cpppo.server.aioweb`, so that catching it does not import aiohttp."""


def bind_error_text(exc: OSError) -> str:
    """Why a listen failed, briefly: ``Address already in use`` (asyncio's own message repeats
    the address: ``error while attempting to bind on address ('h', p): address already in use``).

    >>> import errno
    >>> bind_error_text(OSError(errno.EADDRINUSE, "error while attempting to bind ..."))
    'Address already in use'
    """
    if exc.errno and exc.errno > 0:
        return os.strerror(exc.errno)
    return exc.strerror or str(exc)


def bound_socket(host: str, port: int, kind: socket.SocketKind,
                 reuse_address: bool = False) -> socket.socket | None:
    """A non-blocking socket of ``kind`` bound to (host, port) when ``host`` is an IP address;
    None for a name or "" (every interface), which the event loop's own lookup resolves.  The
    loop's ``create_server(host=...)`` looks even an address up (getaddrinfo, in its executor):
    at 5,000 devices a process that was half the CPU of starting to listen.  A failed bind
    raises OSError as the loop's does: the errno, and the address in the message.

    >>> sock = bound_socket("127.0.0.1", 0, socket.SOCK_STREAM)
    >>> sock.getsockname()[0], sock.getblocking(), bound_socket("localhost", 0, socket.SOCK_STREAM)
    ('127.0.0.1', False, None)
    >>> sock.close()
    """
    family = _address_family(host)
    if family is None:
        return None
    sock = socket.socket(family, kind)
    try:
        if reuse_address:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"error while attempting to bind on address {(host, port)!r}: "
                                 f"{(exc.strerror or str(exc)).lower()}") from None
    return sock


def _address_family(host: str) -> socket.AddressFamily | None:
    """AF_INET or AF_INET6 for an IP address (``inet_pton``: a tenth of ``ipaddress``' time),
    else None (a name, "", an IPv6 address with a scope)."""
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
        except OSError:
            continue
        return family
    return None


async def listen_tcp(factory: Callable[[], asyncio.Protocol], host: str, port: int, *, backlog: int,
                     reuse_address: bool = True) -> asyncio.Server:
    """``loop.create_server(factory, host, port, ...)``, without the address lookup for an IP
    address (:func:`bound_socket`)."""
    loop = asyncio.get_running_loop()
    sock = bound_socket(host, port, socket.SOCK_STREAM, reuse_address)
    if sock is None:
        return await loop.create_server(factory, host, port, backlog=backlog, reuse_address=reuse_address)
    try:
        return await loop.create_server(factory, sock=sock, backlog=backlog)
    except BaseException:
        sock.close()
        raise


async def listen_udp(factory: Callable[[], asyncio.DatagramProtocol], host: str,
                     port: int) -> tuple[asyncio.DatagramTransport, Any]:
    """``loop.create_datagram_endpoint(factory, local_addr=(host, port))``, without the address
    lookup for an IP address (:func:`bound_socket`)."""
    loop = asyncio.get_running_loop()
    sock = bound_socket(host, port, socket.SOCK_DGRAM)
    if sock is None:
        return await loop.create_datagram_endpoint(factory, local_addr=(host, port))
    try:
        return await loop.create_datagram_endpoint(factory, sock=sock)
    except BaseException:
        sock.close()
        raise


def delay_seconds(delay: Delay) -> float:
    """The delay for one reply: 0 for None, the constant, or a uniform draw from the range."""
    if delay is None:
        return 0.0
    if isinstance(delay, tuple):
        return random.uniform(*delay)
    return float(delay)


def delay_source(delay: Delay) -> Callable[[], float] | None:
    """A function giving each reply's delay, or None for no delay (so the hot path can skip it)."""
    if delay is None:
        return None
    if isinstance(delay, tuple):
        low, high = delay
        return lambda: random.uniform(low, high)
    if delay < 0:
        raise ValueError(f"delay {delay} is negative")
    return lambda: delay


def ensure_fd_limit(needed: int) -> int:
    """Raise the soft RLIMIT_NOFILE to at least ``needed`` (up to the hard limit).

    Returns the new soft limit; raises OSError with a clear message when the hard limit is
    too low (raise it with ``ulimit -Hn`` or /etc/security/limits.conf)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return soft
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise OSError(f"need {needed} file descriptors but the system limit (ulimit -Hn) is {hard}; "
                      "raise it (ulimit -n, /etc/security/limits.conf, or the container's nofile limit)")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    log.info("raised the open-file limit from %d to %d", soft, needed)
    return needed


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A loop factory for ``asyncio.Runner``/``asyncio.run(..., loop_factory=)``: uvloop's
    event loop where uvloop is installed (it answers several times faster), asyncio's otherwise."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class RateLimitedLog:
    """One-line log records about what clients send, at most ``burst`` per ``interval`` seconds
    per instance; what is dropped is counted and said in the next record that gets through.

    A client must not be able to fill the log (or spend the server's time formatting
    tracebacks): servers report a malformed or hostile request through one of these, never
    with ``log.exception``.  ``text(exc)`` is an exception as one short line.

    >>> limited = RateLimitedLog(logging.getLogger("doctest"), interval=60.0, burst=2)
    >>> [limited.log(logging.WARNING, "bad frame %d", n) for n in range(5)]
    [True, True, False, False, False]
    >>> limited.suppressed
    3
    >>> RateLimitedLog.text(ValueError("line one\\nline two"))
    'ValueError: line one line two'
    """

    def __init__(self, logger: logging.Logger, interval: float = 10.0, burst: int = 10) -> None:
        self.logger = logger
        self.interval = interval
        self.burst = burst
        self.suppressed = 0
        self._window = -interval
        self._count = 0

    def log(self, level: int, msg: str, *args: object) -> bool:
        """Log ``msg % args`` in one line unless this window's burst is spent; True if logged."""
        if not self.logger.isEnabledFor(level):
            return False
        now = time.monotonic()
        if now - self._window >= self.interval:
            self._window, self._count = now, 0
        if self._count >= self.burst:
            self.suppressed += 1
            return False
        self._count += 1
        if self.suppressed:
            msg, args = msg + " (%d similar records suppressed)", (*args, self.suppressed)
            self.suppressed = 0
        self.logger.log(level, msg, *args)
        return True

    @staticmethod
    def text(exc: BaseException, limit: int = 200) -> str:
        """``Type: message`` on one line, at most ``limit`` characters."""
        line = " ".join(f"{type(exc).__name__}: {exc}".split())
        return line if len(line) <= limit else line[:limit - 3] + "..."
