'''The Modbus/TCP server: devices on the network, natively on asyncio.

``await serve(device, host, port)`` listens on one (ip, port) for one :class:`ModbusDevice`;
many devices in one process are many ``serve`` calls on one event loop.  Each connection
decodes every complete MBAP frame in what arrives (so pipelined requests in one TCP segment
are all answered, in order), asks the device for the reply PDU and writes the replies back in
one write.  A malformed MBAP header (protocol id not 0, length outside 2..254) closes that
connection only; a malformed PDU gets an exception reply.

Limits are :class:`ServerSettings`: connections per server, the largest frame, an idle
timeout, and how many delayed replies may wait before the server stops reading.

``delay`` slows every reply: a float (seconds) or a ``(low, high)`` range drawn at random per
reply; replies on a connection still leave in request order.
'''

from __future__ import annotations

import asyncio
import collections
import logging
from dataclasses import dataclass

from cpppo.modbus import framer
from cpppo.modbus.device import ModbusDevice
from cpppo.modbus.errors import FrameError
from cpppo.server.hosting import Delay, delay_source, parse_delay

__all__ = ["Delay", "ModbusServer", "ServerSettings", "delay_source", "parse_delay", "serve"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerSettings:
    """Per-server limits."""

    max_connections: int = 256            # further connections are closed at once
    max_frame: int = framer.MAX_LENGTH    # largest MBAP length field accepted (unit id + PDU)
    idle_timeout: float | None = 600.0    # close a connection silent this long (None: never)
    max_pending: int = 1000               # delayed replies queued before reading pauses


class _Connection(asyncio.Protocol):
    """One client connection to a server."""

    __slots__ = ("_buffer", "_idle", "_inflight", "_last", "_paused", "_queue", "_tail", "_timer", "peer",
                 "server", "transport")

    def __init__(self, server: ModbusServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.peer: object = None
        self._buffer = b""
        self._queue: collections.deque[tuple[float, bytes]] = collections.deque()
        self._timer: asyncio.TimerHandle | None = None
        self._idle: asyncio.TimerHandle | None = None
        self._last = 0.0
        self._paused = False
        self._tail: asyncio.Future | None = None
        self._inflight = 0                              # gateway requests not yet answered

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.peer = transport.get_extra_info("peername")
        server = self.server
        if len(server.connections) >= server.settings.max_connections:
            log.warning("%s: refusing %s: %d connections already", server, self.peer,
                        len(server.connections))
            transport.abort()
            return
        server.connections.add(self)
        log.log(logging.INFO - 5, "%s: connection from %s", server, self.peer)
        if server.settings.idle_timeout:
            loop = server.loop
            self._last = loop.time()
            self._idle = loop.call_later(server.settings.idle_timeout, self._check_idle)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        for handle in (self._timer, self._idle):
            if handle is not None:
                handle.cancel()
        self._queue.clear()
        log.log(logging.INFO - 5, "%s: %s closed%s", self.server, self.peer, f": {exc}" if exc else "")

    def _check_idle(self) -> None:
        timeout = self.server.settings.idle_timeout or 0.0
        quiet = self.server.loop.time() - self._last
        if quiet >= timeout:
            log.info("%s: closing %s, idle for %.1fs", self.server, self.peer, quiet)
            self.transport.close()
        else:
            self._idle = self.server.loop.call_later(timeout - quiet, self._check_idle)

    def data_received(self, data: bytes) -> None:
        server = self.server
        if self._idle is not None:
            self._last = server.loop.time()
        if self._buffer:
            data = self._buffer + data
        if server.forwarding:
            self._forward(data)
            return
        replies = []
        handle = server.device.handle
        max_frame = server.settings.max_frame
        decode_from, encode = framer.decode_from, framer.encode
        position, size = 0, len(data)
        try:
            while position < size:
                consumed, header, pdu = decode_from(data, position, max_frame)
                if not consumed:
                    break
                position += consumed
                replies.append(encode(header.transaction_id, header.unit_id, handle(header.unit_id, pdu)))
        except FrameError as exc:
            log.info("%s: closing %s: %s", server, self.peer, exc)
            self._send(replies)
            self._buffer = b""
            self.transport.close()
            return
        self._buffer = data[position:] if position < size else b""
        self._send(replies)

    def _forward(self, data: bytes) -> None:
        """A gateway: each request is answered by ``await device.forward(unit, pdu)``; the
        replies still leave in request order."""
        position = 0
        try:
            while position < len(data):
                consumed, header, pdu = framer.decode_from(data, position, self.server.settings.max_frame)
                if not consumed:
                    break
                position += consumed
                reply = asyncio.ensure_future(self.server.device.forward(header.unit_id, pdu))
                self._tail = asyncio.ensure_future(self._relay(self._tail, reply, header))
                self._inflight += 1
            if self._inflight > self.server.settings.max_pending and not self._paused:
                self._paused = True
                self.transport.pause_reading()
        except FrameError as exc:
            log.info("%s: closing %s: %s", self.server, self.peer, exc)
            self.transport.close()
            return
        self._buffer = data[position:]

    async def _relay(self, previous: asyncio.Future | None, reply: asyncio.Future,
                     header: framer.MBAPHeader) -> None:
        try:
            if previous is not None:
                await previous
            pdu = await reply
            if not self.transport.is_closing():
                self._send([framer.encode(header.transaction_id, header.unit_id, pdu)])
        finally:
            self._inflight -= 1
            if self._paused and self._inflight <= self.server.settings.max_pending // 2 \
                    and not self.transport.is_closing():
                self._paused = False
                self.transport.resume_reading()

    def _send(self, replies: list[bytes]) -> None:
        if not replies:
            return
        delay = self.server.delay
        if delay is None:
            self.transport.write(b"".join(replies) if len(replies) > 1 else replies[0])
            return
        now = self.server.loop.time()
        queue = self._queue
        for reply in replies:
            due = max(now + delay(), queue[-1][0] if queue else 0.0)
            queue.append((due, reply))
        if self._timer is None:
            self._timer = self.server.loop.call_at(queue[0][0], self._flush)
        if len(queue) > self.server.settings.max_pending and not self._paused:
            self._paused = True
            self.transport.pause_reading()

    def _flush(self) -> None:
        self._timer = None
        queue = self._queue
        now = self.server.loop.time()
        ready = []
        while queue and queue[0][0] <= now:
            ready.append(queue.popleft()[1])
        if ready and not self.transport.is_closing():
            self.transport.write(b"".join(ready))
        if queue:
            self._timer = self.server.loop.call_at(queue[0][0], self._flush)
        if self._paused and len(queue) <= self.server.settings.max_pending // 2:
            self._paused = False
            self.transport.resume_reading()

    def pause_writing(self) -> None:
        """The client is not reading its replies: stop reading its requests."""
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        if not self._paused:
            self.transport.resume_reading()


class ModbusServer:
    """A running server for one device: ``.host``, ``.port`` (the real one, for port 0),
    ``.connections``, ``close()`` and ``await wait_closed()``; also an async context manager.
    A device with an ``async forward(unit, pdu)`` method (a gateway) is awaited per request."""

    protocol: type[asyncio.Protocol] = _Connection      # one per client connection
    kind = "modbus"

    def __init__(self, device: ModbusDevice, delay: Delay, settings: ServerSettings) -> None:
        self.device = device
        self.forwarding = hasattr(device, "forward")
        self.delay = delay_source(delay)
        self.settings = settings
        self.connections: set[_Connection] = set()
        self.loop = asyncio.get_running_loop()
        self.host = ""
        self.port = 0
        self._server: asyncio.Server | None = None

    def __str__(self) -> str:
        return f"{self.kind}@{self.host}:{self.port}"

    async def _start(self, host: str, port: int) -> None:
        self._server = await self.loop.create_server(lambda: self.protocol(self), host, port,
                                                     reuse_address=True, backlog=256)
        self.host, self.port = self._server.sockets[0].getsockname()[:2]

    def close(self) -> None:
        """Stop listening and close every open connection."""
        if self._server is not None:
            self._server.close()
        for connection in list(self.connections):
            connection.transport.close()

    async def wait_closed(self) -> None:
        if self._server is not None:
            await self._server.wait_closed()
        for _ in range(1000):               # connection_lost runs on the next loop turns
            if not self.connections:
                break
            await asyncio.sleep(0.001)

    async def __aenter__(self) -> ModbusServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
        await self.wait_closed()


async def serve(device: ModbusDevice, host: str = "0.0.0.0", port: int = 502, delay: Delay = None,
                settings: ServerSettings | None = None,
                server_class: type[ModbusServer] | None = None) -> ModbusServer:
    """Serve ``device`` on (``host``, ``port``) on the running event loop; returns the handle.
    ``port=0`` picks a free port (see ``.port``).  Raises OSError if the address is taken.
    ``server_class`` (a :class:`ModbusServer` subclass) changes the framing, e.g. RTU over TCP."""
    server = (server_class or ModbusServer)(device, delay, settings or ServerSettings())
    await server._start(host, port)
    log.info("%s: serving %s", server, device)
    return server
