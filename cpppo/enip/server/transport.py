"""The asyncio EtherNet/IP transport: TCP sessions and UDP list requests for one Device.

``srv = await serve(device, host, port, udp=True, delay=None)`` returns a ``ServerHandle``
(``.port``, ``.close()``, ``await .wait_closed()``).  Many devices in one process are many
``serve()`` calls on one event loop (each device uses 2 file descriptors plus one per
connection: call ``cpppo.server.hosting.ensure_fd_limit(n)`` first, which raises a clear
OSError when the system limit is too low).  ``Settings`` bounds connections, frame size and
idle time.

Encapsulation handling: Register/UnRegister Session, NOP, List Identity / Services /
Interfaces and Legacy 0x0001 (TCP and UDP), SendRRData and SendUnitData (TCP, registered
session only).  Errors get the encapsulation status a device gives (0x0001 unsupported
command, 0x0003 bad data, 0x0064 bad session, 0x0065 bad length) and the session goes on,
except for an oversized frame, after which the connection is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import random
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cpppo.enip.codec import CodecError, cpf, encapsulation
from cpppo.enip.codec.encapsulation import Command, Status
from cpppo.enip.device.dispatch import Dispatcher, Session
from cpppo.enip.device.faults import error_reply
from cpppo.enip.device.model import Device
from cpppo.faults import follow_listening
from cpppo.server.hosting import Delay, RateLimitedLog, delay_seconds, listen_tcp, listen_udp
from cpppo.server.stream import BACKLOG, ConnectionSet, StreamConnection

__all__ = ["ServerHandle", "Settings", "serve"]

log = logging.getLogger(__name__)
limited = RateLimitedLog(log)

_HEADER = encapsulation.HEADER
_LIST_COMMANDS = (Command.LIST_IDENTITY, Command.LIST_SERVICES, Command.LIST_INTERFACES, Command.LEGACY)


@dataclass(frozen=True)
class Settings:
    """Transport limits.  ``max_payload``: the largest encapsulation payload accepted (a larger
    length gets a 0x0065 reply and the connection is closed); ``idle_timeout``: seconds a TCP
    connection may stay silent (0: forever); ``max_connections``: concurrent TCP connections
    per device (one more evicts the connection idle the longest, see ``cpppo.server.stream``);
    ``max_in_flight``: delayed replies one connection may have waiting before the server stops
    reading its requests (the write buffer's high-water mark bounds undelayed ones)."""

    max_connections: int = 256
    max_payload: int = 8192
    idle_timeout: float = 120.0
    max_forward_opens: int = 32
    max_in_flight: int = 256


class _Responder:
    """Builds the encapsulation replies that TCP and UDP share."""

    def __init__(self, device: Device, host: str, port: int, io: Any = None) -> None:
        self.device = device
        self.host = host
        self.port = port
        self.dispatcher = Dispatcher(device)
        self.dispatcher.io = io  # Class 0/1 connections (cpppo.enip.server.io), if any

    def address(self, local: Any) -> str:
        configured = self.device.tcpip.get("ip_address", "0.0.0.0")
        if configured and configured != "0.0.0.0":
            return configured
        if self.host not in ("", "0.0.0.0"):
            return self.host
        return local[0] if local else "0.0.0.0"

    def list_reply(self, command: int, local: Any) -> bytes:
        """The CPF payload of a List Identity / Services / Interfaces / Legacy reply."""
        if command == Command.LIST_SERVICES:
            return cpf.encode_items([cpf.Item(cpf.LIST_SERVICES, cpf.CommunicationsService().encode())])
        if command == Command.LIST_INTERFACES:
            return cpf.encode_items([])
        addr = self.address(local)
        if command == Command.LEGACY:
            return cpf.encode_items([cpf.Item(cpf.LEGACY_ADDRESS, cpf.LegacyItem(addr, self.port).encode())])
        ident = self.device.identity
        item = cpf.IdentityItem(
            vendor_id=ident["vendor_id"], device_type=ident["device_type"],
            product_code=ident["product_code"], revision=tuple(ident["revision"]), status=ident["status"],
            serial_number=ident["serial_number"], product_name=self.device.product_name(),
            state=ident["state"], sin_addr=addr, sin_port=self.port)
        return cpf.encode_items([cpf.Item(cpf.LIST_IDENTITY, item.encode())])


class _TCPSession(StreamConnection):
    def __init__(self, server: ServerHandle) -> None:
        super().__init__(server.sessions, server.settings, server, server.pool)
        self.server = server
        self.responder = server.responder
        self.settings = server.settings
        self.handle = 0
        self.session = Session(max_connections=self.settings.max_forward_opens)
        self.local: Any = None
        self.faults = server.device.faults  # injected faults (cpppo.faults), consulted per request

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.faults.active is not None and self.faults.offline():
            self.transport = transport  # type: ignore[assignment]
            transport.abort()
            return
        super().connection_made(transport)
        self.local = transport.get_extra_info("sockname")
        self.session.peer = self.peer[0] if self.peer else ""

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.session.connections.clear()

    # --- framing ---------------------------------------------------------------------------------

    def process(self, buffer: bytes | bytearray) -> int:
        offset, size = 0, len(buffer)
        max_payload = self.settings.max_payload
        delay = self.server.delay
        transport = self.transport
        while size - offset >= 24 and not self.stalled:
            command, length, handle, status, context, _options = _HEADER.unpack_from(buffer, offset)
            if length > max_payload:
                limited.log(logging.INFO, "enip: closing %s: it sent a %d-byte payload", self.peer, length)
                self.flush()  # reply at once (no delay), then close: the stream cannot resync
                transport.write(encapsulation.encode(command, b"", session=handle,
                                                     status=Status.INVALID_LENGTH, context=context))
                transport.close()
                return size
            end = offset + 24 + length
            if end > size:
                break
            payload = bytes(buffer[offset + 24:end])
            offset = end
            self.requests += 1
            reply = self.frame(command, handle, status, context, payload)
            wait = None if delay is None else delay_seconds(delay)
            if self.faults.active is not None:
                reply = self._faulted(reply)
                extra = self.faults.latency()
                if extra:
                    wait = (wait or 0.0) + extra
            if reply is not None:
                self.reply(reply, wait)
            if transport.is_closing():
                return size
        return offset

    def _faulted(self, reply: bytes | None) -> bytes | None:
        """What an injected fault makes of a reply: none (timeout), a closed connection (drop),
        or garbage (corrupt); latency is added in ``process``, error statuses in ``frame``."""
        faults = self.faults
        if faults.silent():
            return None
        if faults.drop():
            if self.transport is not None:
                self.transport.abort()
            return None
        return faults.corrupt(reply) if reply is not None else None

    # --- commands --------------------------------------------------------------------------------

    def frame(self, command: int, handle: int, status: int, context: bytes, payload: bytes) -> bytes | None:
        """The reply (or None) to one framed message."""
        def reply(body: bytes = b"", status: int = 0, session: int = handle) -> bytes:
            return encapsulation.encode(command, body, session=session, status=status, context=context)

        if command == Command.SEND_RR_DATA or command == Command.SEND_UNIT_DATA:
            if not handle or handle != self.handle:
                return reply(status=Status.INVALID_SESSION)
            try:
                if command == Command.SEND_RR_DATA:
                    request = cpf.decode_rr_data(payload)
                    self.session.items = request.items
                    answer = ((self.faults.active is not None and error_reply(request.data, self.faults))
                              or self.responder.dispatcher.unconnected(request.data, self.session))
                    extra, self.session.reply_items = self.session.reply_items, []
                    return reply(cpf.encode_rr_data(answer, extra=extra))
                unit = cpf.decode_unit_data(payload)
                connection = self.session.connections.get(unit.connection)
                if connection is None:
                    return reply(status=Status.INCORRECT_DATA)
                answer = ((self.faults.active is not None and error_reply(unit.data, self.faults))
                          or self.responder.dispatcher.connected(connection, unit.data, self.session))
                return reply(cpf.encode_unit_data(connection.t_o, unit.sequence, answer))
            except CodecError as exc:
                limited.log(logging.INFO, "enip: bad %s payload from %s: %s", Command(command).name,
                            self.peer, RateLimitedLog.text(exc))
                return reply(status=Status.INCORRECT_DATA)
        if command == Command.REGISTER_SESSION:
            try:
                version, _options = encapsulation.decode_register_session(payload)
            except CodecError:
                return reply(payload, status=Status.INCORRECT_DATA)
            if version != 1:
                return reply(encapsulation.register_session_data(1), status=Status.UNSUPPORTED_PROTOCOL)
            if self.handle:
                return reply(payload, status=Status.INVALID_COMMAND)
            self.handle = random.randrange(1, 1 << 32)
            return reply(payload, session=self.handle)
        if command == Command.UNREGISTER_SESSION:
            if self.transport:
                self.transport.close()
            return None
        if command == Command.NOP:
            return None
        if command in _LIST_COMMANDS:
            return reply(self.responder.list_reply(command, self.local))
        return reply(status=Status.INVALID_COMMAND)


class _UDPEndpoint(asyncio.DatagramProtocol):
    def __init__(self, server: ServerHandle) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        consumed, header, _payload = encapsulation.decode(data)
        if header is None or consumed != len(data) or header.command == Command.NOP:
            return
        if header.command in _LIST_COMMANDS:
            body = self.server.responder.list_reply(header.command, self._local_for(addr))
            status = 0
        else:
            body, status = b"", Status.INVALID_COMMAND
        reply = encapsulation.encode(header.command, body, session=header.session, status=status,
                                     context=header.context)
        delay = delay_seconds(self.server.delay)
        if self.transport is None:
            return
        if delay:
            asyncio.get_running_loop().call_later(delay, self._sendto, reply, addr)
        else:
            self._sendto(reply, addr)

    def _local_for(self, addr: tuple[str, int]) -> Any:
        """Our address as the sender sees it: the bound one, or (bound to all interfaces) the
        local address the kernel routes replies to ``addr`` from."""
        local = self.transport.get_extra_info("sockname") if self.transport else None
        if local and local[0] == "0.0.0.0":
            with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                probe.connect((addr[0], addr[1] or 9))
                return probe.getsockname()
        return local

    def _sendto(self, reply: bytes, addr: tuple[str, int]) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(reply, addr)


class ServerHandle:
    """A serving device: ``.port``, ``.close()``, ``await .wait_closed()``.  ``.delay`` may be
    changed while serving; ``disable()`` closes the port and every connection until ``await
    enable()`` binds the same port again."""

    def __init__(self, device: Device, host: str, delay: Delay, settings: Settings, udp: bool = True,
                 backlog: int = BACKLOG, pool: ConnectionSet | None = None, io: Any = None) -> None:
        self.device = device
        self.io = io
        self.host = host
        self.pool = pool
        self.delay = delay
        self.settings = settings
        self.with_udp = udp
        self.backlog = backlog
        self.enabled = False
        self._unfollow: Callable[[], None] = lambda: None  # set by serve(): stop following faults
        self.port = 0
        self.sessions: ConnectionSet = ConnectionSet()
        self.tcp: asyncio.base_events.Server | None = None
        self.udp: asyncio.DatagramTransport | None = None
        self.responder: _Responder = None  # type: ignore[assignment]

    @property
    def evictions(self) -> int:
        """Connections closed so far to make room for new ones (``Settings.max_connections``)."""
        return self.sessions.evictions

    def __str__(self) -> str:
        return f"enip@{self.host or '0.0.0.0'}:{self.port}"

    def close(self) -> None:
        """Stop serving for good (``disable()`` and stop following the device's faults)."""
        self.disable()
        self._unfollow()

    def disable(self) -> None:
        """Stop serving: close the listening port(s) and every connection."""
        self.enabled = False
        if self.tcp is not None:
            self.tcp.close()
        if self.udp is not None:
            self.udp.close()
        for session in list(self.sessions):
            if session.transport is not None:
                session.transport.close()

    async def wait_closed(self) -> None:
        if self.tcp is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.tcp.wait_closed(), 5.0)

    async def enable(self) -> None:
        """Serve again on the same port after ``disable()`` (raises OSError if it is taken)."""
        if not self.enabled:
            await self._listen(self.port)

    async def _listen(self, port: int) -> None:
        bind_host = self.host or "0.0.0.0"
        for attempt in range(20):
            self.tcp = await listen_tcp(lambda: _TCPSession(self), bind_host, port, backlog=self.backlog)
            self.port = self.tcp.sockets[0].getsockname()[1]
            self.responder = _Responder(self.device, self.host, self.port, self.io)
            if not self.with_udp:
                break
            try:
                self.udp, _ = await listen_udp(lambda: _UDPEndpoint(self), bind_host, self.port)
                break
            except OSError as exc:
                self.tcp.close()
                if port or exc.errno != errno.EADDRINUSE or attempt == 19:
                    raise
        self.enabled = True

    async def __aenter__(self) -> ServerHandle:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
        await self.wait_closed()


async def serve(device: Device, host: str = "0.0.0.0", port: int = 44818, *, udp: bool = True,
                delay: Delay = None, settings: Settings | None = None, backlog: int = BACKLOG,
                pool: ConnectionSet | None = None, io: Any = None) -> ServerHandle:
    """Start serving ``device`` on (host, port) over TCP (and UDP for list requests).
    ``pool``: connections shared with other servers in this process, capped as a whole
    (``cpppo.server.stream``).

    ``port=0`` picks a free port (the same number for TCP and UDP).  ``io``: the device's
    Class 0/1 ``ConnectionManager`` (``cpppo.enip.server.io.serve_adapter``).  Raises OSError if
    the address cannot be bound."""
    handle = ServerHandle(device, host, delay, settings or Settings(), udp=udp, backlog=backlog, pool=pool,
                          io=io)
    await handle._listen(port)
    handle._unfollow = follow_listening(device.faults, handle)
    log.info("serving %s on %s:%d", device.identity.get("product_name"), host or "0.0.0.0", handle.port)
    return handle
