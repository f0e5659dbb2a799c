'''The Modbus/TCP server: devices on the network, natively on asyncio.

``await serve(device, host, port)`` listens on one (ip, port) for one :class:`ModbusDevice`;
many devices in one process are many ``serve`` calls on one event loop.  Each connection
decodes every complete MBAP frame in what arrives (so pipelined requests in one TCP segment
are all answered, in order), asks the device for the reply PDU and writes the replies back in
one write.  A malformed MBAP header (protocol id not 0, length outside 2..254) closes that
connection only; a malformed PDU gets an exception reply.

Limits are :class:`ServerSettings`: connections per server (a new one over the cap evicts
the longest idle; ``.evictions`` counts them), the largest frame, an idle timeout, and how
many delayed replies may wait before the server stops reading (it stops too while the client
does not read its replies).

``delay`` slows every reply: a float (seconds) or a ``(low, high)`` range drawn at random per
reply; replies on a connection still leave in request order.
'''

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable
from dataclasses import dataclass

from cpppo.faults import follow_listening
from cpppo.modbus import framer
from cpppo.modbus.device import ModbusDevice
from cpppo.modbus.errors import FrameError
from cpppo.server.hosting import Delay, RateLimitedLog, delay_source, listen_tcp, parse_delay
from cpppo.server.stream import BACKLOG, ConnectionSet, StreamConnection

__all__ = ["Delay", "ModbusServer", "ServerSettings", "delay_source", "parse_delay", "serve"]

log = logging.getLogger(__name__)
limited = RateLimitedLog(log)


@dataclass(frozen=True)
class ServerSettings:
    """Per-server limits (see ``cpppo.server.stream`` for what the server does at each)."""

    max_connections: int = 256            # one more evicts the connection idle the longest
    max_frame: int = framer.MAX_LENGTH    # largest MBAP length field accepted (unit id + PDU)
    idle_timeout: float | None = 600.0    # close a connection silent this long (None: never)
    max_in_flight: int = 1000             # delayed replies waiting before reading pauses


class _Connection(StreamConnection):
    """One client connection to a server."""

    def __init__(self, server: ModbusServer) -> None:
        super().__init__(server.connections, server.settings, server, server.pool)
        self.server = server
        self._tail: asyncio.Future | None = None  # the gateway's last relayed reply
        self._inflight = 0  # gateway requests not yet answered

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        faults = self.server.device.faults
        if faults.active is not None and faults.offline():
            self.transport = transport  # type: ignore[assignment]
            transport.abort()
            return
        super().connection_made(transport)

    def process(self, data: bytes | bytearray) -> int:
        server = self.server
        if server.forwarding:
            return self._forward(data)
        handle = server.device.handle
        max_frame = server.settings.max_frame
        delay = server.delay
        faults = server.device.faults
        served = server.served
        decode_from, encode, reply = framer.decode_from, framer.encode, self.reply
        position, size = 0, len(data)
        try:
            while position < size and not self.stalled:
                consumed, header, pdu = decode_from(data, position, max_frame)
                if not consumed:
                    break
                position += consumed
                self.requests += 1
                if faults.active is not None:
                    answer = self._faulted(header, pdu)
                    if answer is None:
                        if self.transport.is_closing():
                            return size
                        continue
                    extra = faults.latency()
                    wait = None if delay is None else delay()
                    reply(answer, (wait or 0.0) + extra if extra else wait)
                    continue
                answer = handle(header.unit_id, pdu)
                function = pdu[0] if pdu else 0
                served[function] += 1
                if answer[:1] and answer[0] & 0x80:  # an exception reply
                    server.failed[function] += 1
                reply(encode(header.transaction_id, header.unit_id, answer),
                      None if delay is None else delay())
        except FrameError as exc:
            limited.log(logging.INFO, "%s: closing %s: %s", server, self.peer, exc)
            self.flush()
            self.transport.close()
            return size
        return position

    def _forward(self, data: bytes | bytearray) -> int:
        """A gateway: each request is answered by ``await device.forward(unit, pdu)``; the
        replies still leave in request order, and reading pauses while ``max_in_flight`` wait."""
        position, size = 0, len(data)
        try:
            while position < size:
                consumed, header, pdu = framer.decode_from(data, position, self.server.settings.max_frame)
                if not consumed:
                    break
                position += consumed
                self.requests += 1
                faults = self.server.device.faults
                if faults.active is None:
                    reply = asyncio.ensure_future(self.server.device.forward(header.unit_id, pdu))
                elif faults.silent():
                    continue
                elif faults.drop():
                    self.transport.abort()
                    return size
                else:
                    reply = asyncio.ensure_future(self._faulted_forward(header.unit_id, pdu))
                self._tail = asyncio.ensure_future(self._relay(self._tail, reply, header))
                self._inflight += 1
            if self._inflight > self.server.settings.max_in_flight:
                self._set_reading(False)
        except FrameError as exc:
            limited.log(logging.INFO, "%s: closing %s: %s", self.server, self.peer, exc)
            self.transport.close()
            return size
        return position

    async def _relay(self, previous: asyncio.Future | None, reply: asyncio.Future,
                     header: framer.MBAPHeader) -> None:
        try:
            if previous is not None:
                await previous
            pdu = await reply
            if self.transport is not None and not self.transport.is_closing():
                frame = framer.encode(header.transaction_id, header.unit_id, pdu)
                faults = self.server.device.faults
                self._send([frame if faults.active is None else faults.corrupt(frame)])
        finally:
            self._inflight -= 1
            if self._inflight <= self.server.settings.max_in_flight // 2:
                self._set_reading(True)

    async def _faulted_forward(self, unit: int, pdu: bytes) -> bytes:
        """A gateway's reply under its injected fault: held (latency), an exception (error), or
        forwarded; silent, drop and corrupt are :meth:`_forward`'s and :meth:`_relay`'s."""
        faults = self.server.device.faults
        wait = faults.latency()
        if wait:
            await asyncio.sleep(wait)
        code = faults.error((f"0x{pdu[0]:02X}" if pdu else "",))
        if code and pdu:
            return bytes((pdu[0] | 0x80, code))
        return await self.server.device.forward(unit, pdu)

    def _send(self, replies: list[bytes]) -> None:
        """Send replies made outside ``process`` (the gateway's, RTU over TCP's), in order."""
        for reply in replies:
            self.reply(reply, None if self.server.delay is None else self.server.delay())
        self.flush()

    def _faulted(self, header: framer.MBAPHeader, pdu: bytes) -> bytes | None:
        """One reply under an injected fault (cpppo.faults): none (timeout), a closed
        connection (drop), an exception (error), garbage (corrupt); latency is in ``process``."""
        faults = self.server.device.faults
        if faults.silent():
            return None
        if faults.drop():
            self.transport.abort()
            return None
        code = faults.error((f"0x{pdu[0]:02X}" if pdu else "",))
        if code:
            answer = bytes((pdu[0] | 0x80, code)) if pdu else b""
        else:
            answer = self.server.device.handle(header.unit_id, pdu)
        return faults.corrupt(framer.encode(header.transaction_id, header.unit_id, answer))


class ModbusServer:
    """A running server for one device: ``.host``, ``.port`` (the real one, for port 0),
    ``.connections``, ``close()`` and ``await wait_closed()``; also an async context manager."""

    protocol: type = _Connection  # one client connection (a subclass changes the framing)

    def __init__(self, device: ModbusDevice, delay: Delay, settings: ServerSettings,
                 pool: ConnectionSet | None = None) -> None:
        self.device = device
        self.pool = pool
        self.forwarding = hasattr(device, "forward")  # a gateway: requests go on to RTU units
        self.delay = delay_source(delay)
        self.settings = settings
        self.connections: ConnectionSet = ConnectionSet()
        self.served: collections.Counter[int] = collections.Counter()  # function code -> requests
        self.failed: collections.Counter[int] = collections.Counter()  # function code -> exception replies
        self.loop = asyncio.get_running_loop()
        self.host = ""
        self.port = 0
        self.enabled = False
        self._unfollow: Callable[[], None] = lambda: None  # set by serve(): stop following faults
        self._server: asyncio.Server | None = None

    @property
    def evictions(self) -> int:
        """Connections closed so far to make room for new ones (``max_connections``)."""
        return self.connections.evictions

    def __str__(self) -> str:
        return f"modbus@{self.host}:{self.port}"

    async def _start(self, host: str, port: int) -> None:
        self._server = await listen_tcp(lambda: self.protocol(self), host, port, backlog=BACKLOG)
        self.host, self.port = self._server.sockets[0].getsockname()[:2]
        self.enabled = True

    def disable(self) -> None:
        """Stop serving (an ``offline`` fault): close the port and every connection."""
        self.enabled = False
        if self._server is not None:
            self._server.close()
        for connection in list(self.connections):
            connection.transport.close()

    async def enable(self) -> None:
        """Serve again on the same address after ``disable()`` (OSError if it is taken)."""
        if not self.enabled:
            await self._start(self.host, self.port)

    def close(self) -> None:
        """Stop listening and close every open connection, for good (faults no longer followed)."""
        self.disable()
        self._unfollow()

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
                settings: ServerSettings | None = None, pool: ConnectionSet | None = None,
                server_class: type[ModbusServer] | None = None) -> ModbusServer:
    """Serve ``device`` on (``host``, ``port``) on the running event loop; returns the handle.
    ``port=0`` picks a free port (see ``.port``).  Raises OSError if the address is taken.
    ``pool``: connections shared with other servers in this process, capped as a whole;
    ``server_class`` (a :class:`ModbusServer` subclass) changes the framing, e.g. RTU over TCP."""
    server = (server_class or ModbusServer)(device, delay, settings or ServerSettings(), pool)
    await server._start(host, port)
    server._unfollow = follow_listening(device.faults, server)
    log.info("%s: serving %s", server, device)
    return server
