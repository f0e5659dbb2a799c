"""A web site whose port is bound now and whose aiohttp application is made at its first
connection: a process that serves one (a fleet worker's ``/metrics``) but is never asked
does not import aiohttp (about 20 MiB and 0.2 s of CPU per process).

:func:`start_lazy_site` binds (host, port) on the running loop with a one-line
:class:`~cpppo.server.hosting.WebBindError` as :func:`cpppo.server.aioweb.start_site` does;
the first connection holds its bytes while ``make_app()`` is called and the
:func:`~cpppo.server.aioweb.capped_runner` set up, then is handed to aiohttp as if aiohttp had
accepted it (``transport.set_protocol``); later connections go to aiohttp directly.  What is
served, its connection cap and eviction are :mod:`cpppo.server.aioweb`'s.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from cpppo.server.hosting import WebBindError, bind_error_text
from cpppo.server.stream import BACKLOG

__all__ = ["LazySite", "start_lazy_site"]

log = logging.getLogger(__name__)


class _Held(asyncio.Protocol):
    """A connection accepted before the application exists: its bytes are kept until it does."""

    def __init__(self, site: LazySite) -> None:
        self.site = site
        self.transport: Any = None
        self.data: list[bytes] = []
        self.eof = self.lost = False

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.pause_reading()
        self.site.ready().add_done_callback(self._hand_over)

    def data_received(self, data: bytes) -> None:
        self.data.append(data)

    def eof_received(self) -> bool:
        self.eof = True
        return True  # the transport stays open: _hand_over does what aiohttp's protocol asks

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost = True

    def _hand_over(self, ready: asyncio.Future[Any]) -> None:
        if self.lost:
            return
        if ready.cancelled() or ready.exception() is not None or self.site.runner is None:
            self.transport.abort()
            return
        protocol = self.site.runner.server()
        self.transport.set_protocol(protocol)
        protocol.connection_made(self.transport)
        for data in self.data:
            protocol.data_received(data)
        if self.eof and not protocol.eof_received():  # as the transport does with an EOF
            self.transport.close()
            return
        self.transport.resume_reading()


class LazySite:
    """A bound site (``host``, ``port``); ``runner``: its CappedRunner once made; ``cleanup()``."""

    def __init__(self, make_app: Callable[[], Any], what: str, max_connections: int) -> None:
        self.make_app, self.what, self.max_connections = make_app, what, max_connections
        self.runner: Any = None
        self.server: asyncio.Server | None = None
        self.host, self.port = "", 0
        self._ready: asyncio.Task[None] | None = None

    def protocol(self) -> asyncio.BaseProtocol:
        return self.runner.server() if self.runner is not None else _Held(self)

    def ready(self) -> asyncio.Task[None]:
        """The making of the application (begun at the first call)."""
        if self._ready is None:
            self._ready = asyncio.ensure_future(self._make())
        return self._ready

    async def _make(self) -> None:
        from cpppo.server.aioweb import capped_runner

        try:
            self.runner = await capped_runner(self.make_app(), self.what, self.max_connections)
        except Exception:
            log.exception("%s: cannot start", self.what)
            raise

    async def cleanup(self) -> None:
        if self.server is not None:
            self.server.close()
        if self._ready is not None and not self._ready.done():
            self._ready.cancel()
        if self._ready is not None:
            await asyncio.gather(self._ready, return_exceptions=True)
        if self.runner is not None:
            await self.runner.cleanup()


async def start_lazy_site(make_app: Callable[[], Any], host: str, port: int, what: str,
                          max_connections: int) -> LazySite:
    """Bind (host, port) on the running loop for the aiohttp application ``make_app()`` (called
    at the first connection); ``port=0`` picks a free port (``site.port``).  Raises
    WebBindError (one line) if it cannot be bound."""
    site = LazySite(make_app, what, max_connections)
    loop = asyncio.get_running_loop()
    try:
        site.server = await loop.create_server(site.protocol, host or "127.0.0.1", port,
                                               reuse_address=True, backlog=BACKLOG)
    except OSError as exc:
        raise WebBindError(exc.errno, f"cannot serve {what} on {host or '127.0.0.1'}:{port}: "
                                      f"{bind_error_text(exc)}") from None
    site.host, site.port = site.server.sockets[0].getsockname()[:2]
    return site
