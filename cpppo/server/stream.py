"""What the EtherNet/IP and Modbus/TCP servers share about one TCP connection: a per-server
cap that evicts rather than refuses, the idle timeout, backpressure, and delayed replies that
leave in request order.

A server keeps its open connections in a :class:`ConnectionSet` and its limits in a settings
object with ``max_connections``, ``idle_timeout`` (seconds, None or 0: never) and
``max_in_flight`` (replies a connection may have waiting).  Its protocol subclasses
:class:`StreamConnection` and implements ``process(data)``: frame the requests at the front
of ``data`` while ``not self.stalled``, answer each with ``self.reply(reply, delay)``, and
return the number of bytes used.

- **Cap**: a connection over ``max_connections`` evicts the one that has waited longest
  without completing a request (the oldest connection that never framed one, else the one
  idle the longest), so idle or slow connections cannot lock well-behaved clients out; the
  set counts ``evictions``.  Servers given one shared ``pool`` (a fleet worker's devices)
  are capped together as well, the same way, by ``pool.cap``.
- **Backpressure**: while the transport's write buffer is over its high-water mark, or
  ``max_in_flight`` delayed replies wait, the connection stops framing requests and stops
  reading; it goes on when the client has read (or the replies have left).  A client that
  sends and never reads costs its write buffer, one read's worth of input and nothing more.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from time import monotonic as _monotonic
from typing import Any, Protocol

from cpppo.server.hosting import RateLimitedLog

__all__ = ["BACKLOG", "ConnectionSet", "Limits", "StreamConnection"]

log = logging.getLogger(__name__)
limited = RateLimitedLog(log)

FLUSH_BYTES = 65536  # replies gathered from one read are written once this many bytes are ready
# Listen backlog: a burst of connections (a crowd of idle ones, say) must not overflow the
# accept queue, or a well-behaved client's SYN is dropped and it waits a second to retry.
BACKLOG = 1024


class Limits(Protocol):
    """What a server's settings give every connection."""

    max_connections: int
    idle_timeout: float | None
    max_in_flight: int


class ConnectionSet(set):
    """Open connections (of a server, or of every server in a process: a *pool*, whose own
    ``cap`` bounds them all), with the count of connections evicted to admit new ones."""

    evictions: int = 0
    idle_closed: int = 0

    def __init__(self, cap: int | None = None) -> None:
        super().__init__()
        self.cap = cap

    def admit(self, connection: StreamConnection, cap: int | None) -> StreamConnection | None:
        """Add ``connection``; if the set holds ``cap`` already, first evict (abort) and
        return the member that waited longest without completing a request."""
        victim = None
        if cap and len(self) >= cap:
            victim = min(self, key=_eviction_order)
            self.evictions += 1
            victim.evict()
        self.add(connection)
        return victim


def _eviction_order(connection: StreamConnection) -> tuple[bool, float]:
    """Never-served connections first (oldest first), then the longest idle."""
    if connection.requests:
        return True, connection.last
    return False, connection.opened


class StreamConnection(asyncio.Protocol):
    """One TCP connection of a server (see the module's documentation)."""

    def __init__(self, members: ConnectionSet, limits: Limits, name: object = "",
                 pool: ConnectionSet | None = None) -> None:
        self.members = members
        self.pool = pool  # every server's connections in this process (capped), or None
        self.limits = limits
        self.name = name  # the server, for log records
        self.transport: asyncio.Transport | None = None
        self.peer: Any = None  # (host, port) of the client
        self.buffer = bytearray()
        self.opened = self.last = 0.0  # time.monotonic() of connecting and of the last bytes received
        self.received = 0  # bytes received
        self.requests = 0  # requests framed (the subclass counts them)
        self._out: list[bytes] = []
        self._out_size = 0
        self._queue: collections.deque[tuple[float, bytes]] = collections.deque()
        self._timer: asyncio.TimerHandle | None = None
        self._idle: asyncio.TimerHandle | None = None
        self.stalled = False  # no requests are answered while the client does not read, or
        self._write_paused = False  # ``max_in_flight`` delayed replies wait
        self._reading = True
        self._drain_soon = False

    # --- connection life -------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.peer = transport.get_extra_info("peername")
        self.opened = self.last = _monotonic()
        victim = self.members.admit(self, self.limits.max_connections)
        if victim is not None:
            limited.log(logging.INFO, "%s: %d connections: evicted %s (idle %.0fs) for %s", self.name,
                        len(self.members), victim.peer, self.opened - victim.last, self.peer)
        if self.pool is not None:
            victim = self.pool.admit(self, self.pool.cap)
            if victim is not None:
                limited.log(logging.INFO, "%d connections in the pool: evicted %s of %s (idle %.0fs) for %s",
                            len(self.pool), victim.peer, victim.name, self.opened - victim.last, self.peer)
        timeout = self.limits.idle_timeout
        if timeout:
            self._idle = asyncio.get_running_loop().call_later(timeout, self._check_idle)

    def evict(self) -> None:
        """Make room: leave the sets at once and drop the connection."""
        self.members.discard(self)
        if self.pool is not None:
            self.pool.discard(self)
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.members.discard(self)
        if self.pool is not None:
            self.pool.discard(self)
        for handle in (self._timer, self._idle):
            if handle is not None:
                handle.cancel()
        self._queue.clear()
        self._out.clear()
        self.buffer.clear()

    def _check_idle(self) -> None:
        timeout = self.limits.idle_timeout or 0.0
        quiet = _monotonic() - self.last
        if quiet >= timeout:
            self._idle = None
            self.members.idle_closed += 1
            log.log(logging.INFO - 5, "%s: closing %s, idle for %.0fs", self.name, self.peer, quiet)
            if self.transport is not None:
                self.transport.close()
            return
        self._idle = asyncio.get_running_loop().call_later(timeout - quiet, self._check_idle)

    # --- input -----------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self.last = _monotonic()
        self.received += len(data)
        if self.buffer or self.stalled:
            self.buffer += data
            self._drain()
            return
        try:
            used = self.process(data)  # the common case: whole requests, nothing left over
        except Exception as exc:
            self._failed(exc)
            return
        if used < len(data):
            self.buffer += memoryview(data)[used:]
        if self._out:
            self.flush()
        if self.stalled:
            self._set_reading(False)

    def _failed(self, exc: Exception) -> None:
        """A request the server could not answer (a bug, not the client's doing): say so in
        one line and drop the connection, rather than let asyncio print a traceback."""
        limited.log(logging.WARNING, "%s: closing %s: failed to answer it: %s", self.name, self.peer,
                    RateLimitedLog.text(exc))
        self.buffer.clear()
        if self.transport is not None:
            self.transport.abort()

    def process(self, data: bytes | bytearray) -> int:  # pragma: no cover - every server overrides it
        """Frame and answer the requests at the front of ``data`` while ``not self.stalled``;
        the number of bytes used."""
        raise NotImplementedError

    def _drain(self) -> None:
        self._drain_soon = False
        buffer = self.buffer
        if buffer and not self.stalled and self.transport is not None and not self.transport.is_closing():
            try:
                used = self.process(buffer)
            except Exception as exc:
                self._failed(exc)
                return
            if used:
                del buffer[:used]
        self.flush()
        self._set_reading(not self.stalled)

    def _set_reading(self, reading: bool) -> None:
        if reading == self._reading or self.transport is None or self.transport.is_closing():
            return
        self._reading = reading
        if reading:
            self.transport.resume_reading()
        else:
            self.transport.pause_reading()

    def _restall(self) -> None:
        """Recompute ``stalled``; go on with buffered requests (on the next loop turn, never
        inside a transport call) if it cleared."""
        self.stalled = self._write_paused or len(self._queue) >= self.limits.max_in_flight
        if not self.stalled and not self._drain_soon and (self.buffer or not self._reading):
            self._drain_soon = True
            asyncio.get_running_loop().call_soon(self._drain)

    # --- output ----------------------------------------------------------------------------------

    def reply(self, data: bytes, delay: float | None = None) -> None:
        """Send ``data`` now (gathered until ``flush``), or ``delay`` seconds from now but never
        before an earlier reply."""
        if delay is None and not self._queue:
            self._out.append(data)
            self._out_size += len(data)
            if self._out_size >= FLUSH_BYTES:
                self.flush()
            return
        loop = asyncio.get_running_loop()
        queue = self._queue
        due = loop.time() + (delay or 0.0)
        if queue and queue[-1][0] > due:
            due = queue[-1][0]
        queue.append((due, data))
        if len(queue) >= self.limits.max_in_flight:
            self.stalled = True
        if self._timer is None:
            self._timer = loop.call_at(queue[0][0], self._release)

    def flush(self) -> None:
        """Write the gathered replies in one write."""
        out = self._out
        if not out:
            return
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        self._out_size = 0
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _release(self) -> None:
        """Write the delayed replies that are due."""
        self._timer = None
        queue = self._queue
        loop = asyncio.get_running_loop()
        now = loop.time()
        ready = []
        while queue and queue[0][0] <= now:
            ready.append(queue.popleft()[1])
        if ready and self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(ready))
        if queue:
            self._timer = loop.call_at(queue[0][0], self._release)
        if self.stalled:
            self._restall()

    def pause_writing(self) -> None:
        """The client is not reading its replies: stop answering and reading."""
        self._write_paused = self.stalled = True
        self._set_reading(False)

    def resume_writing(self) -> None:
        self._write_paused = False
        self._restall()
