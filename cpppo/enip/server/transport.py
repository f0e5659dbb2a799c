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
import struct
import time
from dataclasses import dataclass
from typing import Any

from cpppo.enip.codec import CodecError, cpf, encapsulation
from cpppo.enip.codec.encapsulation import Command, Status
from cpppo.enip.device.dispatch import Dispatcher, Session
from cpppo.enip.device.faults import error_reply
from cpppo.enip.device.model import Device
from cpppo.faults import follow_listening
from cpppo.server.hosting import Delay, delay_seconds

__all__ = ["ServerHandle", "Settings", "serve"]

log = logging.getLogger(__name__)

_HEADER = struct.Struct("<HHII8sI")
_LIST_COMMANDS = (Command.LIST_IDENTITY, Command.LIST_SERVICES, Command.LIST_INTERFACES, Command.LEGACY)


@dataclass(frozen=True)
class Settings:
    """Transport limits.  ``max_payload``: the largest encapsulation payload accepted (a larger
    length gets a 0x0065 reply and the connection is closed); ``idle_timeout``: seconds a TCP
    connection may stay silent; ``max_connections``: concurrent TCP connections per device."""

    max_connections: int = 256
    max_payload: int = 8192
    idle_timeout: float = 120.0
    max_forward_opens: int = 32


class _Responder:
    """Builds the encapsulation replies that TCP and UDP share."""

    def __init__(self, device: Device, host: str, port: int) -> None:
        self.device = device
        self.host = host
        self.port = port
        self.dispatcher = Dispatcher(device)

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
            serial_number=ident["serial_number"], product_name=str(self.device.objects[(1, 1)][7][0]),
            state=ident["state"], sin_addr=addr, sin_port=self.port)
        return cpf.encode_items([cpf.Item(cpf.LIST_IDENTITY, item.encode())])


class _TCPSession(asyncio.Protocol):
    def __init__(self, server: ServerHandle) -> None:
        self.server = server
        self.responder = server.responder
        self.settings = server.settings
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.handle = 0
        self.session = Session(max_connections=self.settings.max_forward_opens)
        self.last = time.monotonic()
        self.idle_timer: asyncio.TimerHandle | None = None
        self.next_send = 0.0
        self.local: Any = None
        self.peer: Any = None  # (host, port) of the client, for the web API's connections group
        self.received = 0  # bytes received
        self.requests = 0  # encapsulation messages framed
        self.faults = server.device.faults  # injected faults (cpppo.faults), consulted per request

    # --- connection life -------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if self.faults.active is not None and self.faults.offline():
            transport.abort()
            return
        if len(self.server.sessions) >= self.settings.max_connections:
            log.warning("refusing a connection: %d connections already", len(self.server.sessions))
            transport.close()
            return
        self.server.sessions.add(self)
        self.local = transport.get_extra_info("sockname")
        self.peer = transport.get_extra_info("peername")
        if self.settings.idle_timeout:
            self.idle_timer = asyncio.get_running_loop().call_later(self.settings.idle_timeout, self._idle)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.sessions.discard(self)
        if self.idle_timer:
            self.idle_timer.cancel()
        self.session.connections.clear()

    def _idle(self) -> None:
        quiet = time.monotonic() - self.last
        if quiet >= self.settings.idle_timeout:
            log.info("closing an idle connection after %.0fs", quiet)
            if self.transport:
                self.transport.close()
            return
        loop = asyncio.get_running_loop()
        self.idle_timer = loop.call_later(self.settings.idle_timeout - quiet, self._idle)

    # --- framing ---------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self.last = time.monotonic()
        self.received += len(data)
        buffer = self.buffer
        buffer += data
        offset, size = 0, len(buffer)
        while size - offset >= 24:
            command, length, handle, status, context, _options = _HEADER.unpack_from(buffer, offset)
            if length > self.settings.max_payload:
                log.info("closing a connection that sent a %d-byte payload", length)
                if self.transport:  # reply at once (no delay), then close: the stream cannot resync
                    self.transport.write(encapsulation.encode(command, b"", session=handle,
                                                              status=Status.INVALID_LENGTH, context=context))
                    self.transport.close()
                buffer.clear()
                return
            end = offset + 24 + length
            if end > size:
                break
            payload = bytes(buffer[offset + 24:end])
            offset = end
            self.requests += 1
            reply = self.frame(command, handle, status, context, payload)
            if self.faults.active is not None:
                reply = self._faulted(reply)
            if reply is not None:
                self._send(reply)
            if self.transport is None or self.transport.is_closing():
                buffer.clear()
                return
        if offset:
            del buffer[:offset]

    def _send(self, reply: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        delay = self.server.delay
        extra = self.faults.latency() if self.faults.active is not None else 0.0
        if delay is None and not extra:
            self.transport.write(reply)
            return
        loop = asyncio.get_running_loop()
        when = max(loop.time() + delay_seconds(delay) + extra, self.next_send)
        self.next_send = when
        loop.call_at(when, self._write_later, reply)

    def _faulted(self, reply: bytes | None) -> bytes | None:
        """What an injected fault makes of a reply: none (timeout), a closed connection (drop),
        or garbage (corrupt); latency is added in ``_send``, error statuses in ``frame``."""
        faults = self.faults
        if faults.silent():
            return None
        if faults.drop():
            if self.transport is not None:
                self.transport.abort()
            return None
        return faults.corrupt(reply) if reply is not None else None

    def _write_later(self, reply: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(reply)

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
                    answer = ((self.faults.active is not None and error_reply(request.data, self.faults))
                              or self.responder.dispatcher.unconnected(request.data, self.session))
                    return reply(cpf.encode_rr_data(answer))
                unit = cpf.decode_unit_data(payload)
                connection = self.session.connections.get(unit.connection)
                if connection is None:
                    return reply(status=Status.INCORRECT_DATA)
                answer = ((self.faults.active is not None and error_reply(unit.data, self.faults))
                          or self.responder.dispatcher.connected(connection, unit.data, self.session))
                return reply(cpf.encode_unit_data(connection.t_o, unit.sequence, answer))
            except CodecError as exc:
                log.info("bad %s payload: %s", Command(command).name, exc)
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
        try:
            consumed, header, _payload = encapsulation.decode(data)
        except CodecError:  # pragma: no cover - decode raises nothing for short input
            return
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
                 backlog: int = 128) -> None:
        self.device = device
        self.host = host
        self.delay = delay
        self.settings = settings
        self.with_udp = udp
        self.backlog = backlog
        self.enabled = False
        self.port = 0
        self.sessions: set[_TCPSession] = set()
        self.tcp: asyncio.base_events.Server | None = None
        self.udp: asyncio.DatagramTransport | None = None
        self.responder: _Responder = None  # type: ignore[assignment]

    def close(self) -> None:
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

    def disable(self) -> None:
        """Stop serving: close the listening port(s) and every connection."""
        self.close()

    async def enable(self) -> None:
        """Serve again on the same port after ``disable()`` (raises OSError if it is taken)."""
        if not self.enabled:
            await self._listen(self.port)

    async def _listen(self, port: int) -> None:
        loop = asyncio.get_running_loop()
        bind_host = self.host or "0.0.0.0"
        for attempt in range(20):
            self.tcp = await loop.create_server(lambda: _TCPSession(self), bind_host, port,
                                                backlog=self.backlog, reuse_address=True)
            self.port = self.tcp.sockets[0].getsockname()[1]
            self.responder = _Responder(self.device, self.host, self.port)
            if not self.with_udp:
                break
            try:
                self.udp, _ = await loop.create_datagram_endpoint(lambda: _UDPEndpoint(self),
                                                                  local_addr=(bind_host, self.port))
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
                delay: Delay = None, settings: Settings | None = None, backlog: int = 128) -> ServerHandle:
    """Start serving ``device`` on (host, port) over TCP (and UDP for list requests).

    ``port=0`` picks a free port (the same number for TCP and UDP).  Raises OSError if the
    address cannot be bound."""
    handle = ServerHandle(device, host, delay, settings or Settings(), udp=udp, backlog=backlog)
    await handle._listen(port)
    follow_listening(device.faults, handle)
    log.info("serving %s on %s:%d", device.identity.get("product_name"), host or "0.0.0.0", handle.port)
    return handle
