"""What every aiohttp site of the project shares: binding one on the running loop (with a
one-line error naming the address), a cap on its connections that evicts rather than refuses
(as the ENIP and Modbus servers do: :mod:`cpppo.server.stream`), and the write token (where it
comes from, how a request proves it has it).

A site holds at most ``max_connections`` connections: one more evicts the connection that has
waited longest without a request (never-served first, then the longest idle; one with a
request in progress, an event stream say, is not idle), so idle or slow clients can neither
lock others out nor exhaust the process's descriptors (which its devices need too).
``runner.connections`` counts ``evictions``.  A request body the application does not read
(an endless one sent with a GET, say) is drained for ``LINGER`` seconds at most.

A token is compared in constant time (:func:`hmac.compare_digest`) with the one a request
sends as ``Authorization: Bearer <token>``.

    >>> len(new_token()) >= 32
    True
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from time import monotonic as _monotonic
from typing import Any

from aiohttp import web

from cpppo.server.hosting import RateLimitedLog, WebBindError, bind_error_text
from cpppo.server.stream import BACKLOG, ConnectionSet

__all__ = ["MAX_CONNECTIONS", "CappedRunner", "WebBindError", "capped_runner", "check_token",
           "load_or_create_token", "new_token", "start_site"]

limited = RateLimitedLog(logging.getLogger(__name__))

# aiohttp's request limits, stated: a request line or header over them gets a 4xx answer
MAX_LINE = 8190
MAX_FIELD = 8190
MAX_HEADERS = 64
MAX_CONNECTIONS = 128  # a site's connections (one more evicts the longest waiting)
LINGER = 1.0  # seconds a body nobody reads is drained after the answer, before the connection closes


class _Seat:
    """One HTTP connection as a member of a :class:`ConnectionSet` (what eviction orders by)."""

    __slots__ = ("busy", "members", "name", "opened", "peer", "requests", "seen", "transport")

    def __init__(self, members: ConnectionSet, transport: Any, name: str) -> None:
        self.members = members
        self.transport = transport
        self.name = name
        self.peer = transport.get_extra_info("peername")
        self.opened = self.seen = _monotonic()
        self.requests = 0  # requests begun
        self.busy = 0  # requests in progress

    @property
    def last(self) -> float:
        """When it was last busy: now while a request is in progress and its client reads
        what it is sent (an event stream whose client stopped reading is idle since then)."""
        if self.busy and not self.transport.get_write_buffer_size():
            return _monotonic()
        return self.seen

    def evict(self) -> None:
        self.members.discard(self)
        self.transport.abort()


class CappedRunner(web.AppRunner):
    """An AppRunner whose connections are capped at ``max_connections`` (see the module's
    documentation); ``.connections`` is their :class:`ConnectionSet`."""

    __slots__ = ("_seats", "connections", "what")

    def __init__(self, app: web.Application, max_connections: int = MAX_CONNECTIONS,
                 what: str = "the web page", **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.connections = ConnectionSet(max_connections)
        self.what = what
        self._seats: dict[Any, _Seat] = {}
        app.middlewares.insert(0, self._served)

    @web.middleware
    async def _served(self, request: web.Request,
                      handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        seat = self._seats.get(request.protocol)
        if seat is None:
            return await handler(request)
        seat.requests += 1
        seat.busy += 1
        seat.seen = _monotonic()
        try:
            return await handler(request)
        finally:
            seat.busy -= 1
            seat.seen = _monotonic()

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        made, lost = server.connection_made, server.connection_lost
        seats, connections = self._seats, self.connections

        def connection_made(handler: Any, transport: Any) -> None:
            made(handler, transport)
            seat = seats[handler] = _Seat(connections, transport, self.what)
            victim = connections.admit(seat, connections.cap)
            if victim is not None:
                limited.log(logging.INFO, "%s: %d connections: evicted %s (idle %.0fs) for %s", self.what,
                            len(connections), victim.peer, seat.opened - victim.seen, seat.peer)

        def connection_lost(handler: Any, exc: BaseException | None = None) -> None:
            seat = seats.pop(handler, None)
            if seat is not None:
                connections.discard(seat)
            lost(handler, exc)

        server.connection_made = connection_made  # type: ignore[method-assign]
        server.connection_lost = connection_lost  # type: ignore[method-assign]
        return server


async def capped_runner(app: web.Application, what: str = "the web page",
                        max_connections: int = MAX_CONNECTIONS) -> CappedRunner:
    """A set-up :class:`CappedRunner` of ``app`` with the project's request limits, no site yet."""
    runner = CappedRunner(app, max_connections, what, access_log=None, handle_signals=False,
                          max_line_size=MAX_LINE, max_field_size=MAX_FIELD, max_headers=MAX_HEADERS,
                          lingering_time=LINGER, shutdown_timeout=1.0)
    await runner.setup()
    return runner


async def start_site(app: web.Application, host: str, port: int, what: str = "the web page",
                     max_connections: int = MAX_CONNECTIONS) -> tuple[CappedRunner, str, int]:
    """Serve ``app`` on (host, port) of the running event loop, at most ``max_connections``
    at once; (runner, host, port bound).  ``port=0`` picks a free port.  Raises WebBindError
    (one line) if it cannot be bound."""
    runner = await capped_runner(app, what, max_connections)
    site = web.TCPSite(runner, host or "127.0.0.1", port, reuse_address=True, backlog=BACKLOG)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise WebBindError(exc.errno, f"cannot serve {what} on {host or '127.0.0.1'}:{port}: "
                                      f"{bind_error_text(exc)}") from None
    bound = site._server.sockets[0].getsockname()[:2]  # type: ignore[union-attr]
    return runner, bound[0], bound[1]


def new_token() -> str:
    return secrets.token_urlsafe(32)


def load_or_create_token(path: Path) -> str:
    """The token in ``path``, created there (mode 0600) when missing."""
    try:
        text = path.read_text().strip()
        if text:
            return text
    except FileNotFoundError:
        pass
    token = new_token()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(token + "\n")
    os.chmod(path, 0o600)
    return token


def check_token(request: web.BaseRequest, token: str) -> str | None:
    """Why ``request`` may not write (None: it sends ``token``)."""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return "this changes state: send the write token as 'Authorization: Bearer <token>'"
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        return "wrong write token"
    return None
