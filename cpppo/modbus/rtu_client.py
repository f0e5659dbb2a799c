'''Modbus/RTU masters on the same codec as the servers: over a serial port, or RTU over TCP.

A line carries one request at a time: each master sends a frame, then waits (at most
``timeout``) for the reply of that unit to that function; stray bytes and replies that do not
match are dropped (``.counters``).  A silent unit raises :class:`TimeoutError`; unit id 0 is a
broadcast, which no device answers (the request returns after ``turnaround`` seconds).

>>> async def poll(path):                                                  # doctest: +SKIP
...     async with AsyncRtuClient.serial(path, LineSettings(19200, "E", 1), unit=3) as c:
...         return await c.read_holding_registers(0, 10)

:class:`RtuClient` is the blocking face of the same thing, for threads (the ``poller_modbus``
API, ``modbus_poll``): ``RtuClient(serial="/dev/ttyUSB0")`` or ``RtuClient(host=..., port=...)``.
'''

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import socket
import time
from typing import Any

from cpppo.modbus import pdu as codec
from cpppo.modbus import rtu
from cpppo.modbus.aclient import RequestMethods
from cpppo.modbus.errors import ModbusConnectionError
from cpppo.modbus.serial_line import LineSettings, open_serial

__all__ = ["AsyncRtuClient", "RtuClient", "reply_of"]


def reply_of(frame: bytes, unit: int, function: int) -> bytes | None:
    """The PDU of ``frame`` if it is ``unit``'s reply to ``function`` (or its exception)."""
    if frame[0] == unit and frame[1] & 0x7F == function:
        return frame[1:-2]
    return None


class _SerialLink:
    """A serial port read by the event loop."""

    def __init__(self, path: str, settings: LineSettings, received: Any) -> None:
        self.where = path
        self._port = open_serial(path, settings)            # ValueError: cannot open
        self._fd = self._port.fileno()
        self.lost = False
        self.loop = asyncio.get_running_loop()
        self.loop.add_reader(self._fd, self._readable, received)

    def _readable(self, received: Any) -> None:
        try:
            data = os.read(self._fd, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            received(data)
            return
        # EIO / EOF: the far side went away (a pty whose server closed it): reopen on the next request
        self.lost = True
        self.loop.remove_reader(self._fd)

    def write(self, data: bytes) -> None:
        self._port.write(data)

    def close(self) -> None:
        if not self.lost:
            self.loop.remove_reader(self._fd)
        self._port.close()


class _TcpLink(asyncio.Protocol):
    def __init__(self, received: Any) -> None:
        self.received = received
        self.transport: asyncio.Transport | None = None
        self.lost = False

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True

    def write(self, data: bytes) -> None:
        if self.lost:
            raise ModbusConnectionError("connection lost")
        self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class AsyncRtuClient(RequestMethods):
    """A Modbus/RTU master on asyncio; make one with :meth:`serial` or :meth:`tcp`."""

    def __init__(self, *, path: str | None = None, settings: LineSettings | None = None,
                 host: str | None = None, port: int = 502, unit: int = 1, timeout: float = 1.0,
                 turnaround: float = 0.01) -> None:
        if (path is None) == (host is None):
            raise ValueError("an RTU master needs a serial port or a host, not both")
        self.path, self.settings = path, settings or LineSettings()
        self.host, self.port = host, port
        self.unit, self.timeout, self.turnaround = unit, timeout, turnaround
        self.counters = rtu.Counters()
        self.strays = 0                         # good frames that answered nothing we asked
        self.where = path or f"{host}:{port}"
        silence = self.settings.silences[1] if path else 0.05
        self._decoder = rtu.Decoder(requests=False, silence=silence, counters=self.counters)
        self._link: Any = None
        self._lock = asyncio.Lock()
        self._waiting: tuple[int, int, asyncio.Future] | None = None

    @classmethod
    def serial(cls, path: str, settings: LineSettings | None = None, **kwds: Any) -> AsyncRtuClient:
        return cls(path=path, settings=settings, **kwds)

    @classmethod
    def tcp(cls, host: str, port: int = 502, **kwds: Any) -> AsyncRtuClient:
        return cls(host=host, port=port, **kwds)

    def __str__(self) -> str:
        return f"rtu-master@{self.where}"

    async def connect(self) -> None:
        """Open the port or connect; ModbusConnectionError if that cannot be done."""
        if self._link is not None and not getattr(self._link, "lost", False):
            return
        await self.close()                      # a link lost: its port or socket goes
        if self.path is not None:
            try:
                self._link = _SerialLink(self.path, self.settings, self._received)
            except ValueError as exc:
                raise ModbusConnectionError(str(exc)) from None
            return
        loop = asyncio.get_running_loop()
        try:
            _, self._link = await asyncio.wait_for(
                loop.create_connection(lambda: _TcpLink(self._received), self.host, self.port),
                self.timeout)
        except (OSError, TimeoutError) as exc:
            raise ModbusConnectionError(f"cannot connect to {self.where}: "
                                        f"{getattr(exc, 'strerror', None) or exc or 'timed out'}") from None

    async def close(self) -> None:
        link, self._link = self._link, None
        if link is not None:
            link.close()

    async def __aenter__(self) -> AsyncRtuClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _received(self, data: bytes) -> None:
        for frame in self._decoder.feed(data, time.monotonic()):
            waiting = self._waiting
            reply = reply_of(frame, waiting[0], waiting[1]) if waiting else None
            if reply is None or waiting[2].done():
                self.strays += 1
                continue
            waiting[2].set_result(reply)

    async def transact(self, unit: int, request: bytes) -> bytes:
        """Send the request PDU to ``unit``; its reply PDU (b"" for a broadcast).  Raises
        TimeoutError (the unit is silent) or ModbusConnectionError."""
        async with self._lock:
            await self.connect()
            self._decoder.reset()
            future = asyncio.get_running_loop().create_future()
            self._waiting = (unit, request[0], future)
            try:
                self._link.write(rtu.encode(unit, request))
                if unit == 0:
                    await asyncio.sleep(self.turnaround)
                    return b""
                return await asyncio.wait_for(future, self.timeout)
            except TimeoutError:
                raise TimeoutError(f"unit {unit} on {self.where}: no reply within {self.timeout}s") from None
            except OSError as exc:
                await self.close()
                raise ModbusConnectionError(f"{self.where}: {exc}") from None
            finally:
                self._waiting = None

    async def request(self, request: codec.Request, unit: int | None = None) -> Any:
        """Send ``request`` and return its decoded result (see ``pdu.decode_response``)."""
        unit = self.unit if unit is None else unit
        reply = await self.transact(unit, request.encode())
        return request if unit == 0 else codec.decode_response(request, reply)


class RtuClient:
    """A blocking Modbus/RTU master: ``serial=`` a port (with ``settings``), or ``host=`` and
    ``port=`` for RTU over TCP.  Not thread-safe: one caller at a time (the poller locks)."""

    def __init__(self, serial: str | None = None, settings: LineSettings | None = None,
                 host: str | None = None, port: int = 502, timeout: float = 1.0,
                 turnaround: float = 0.01) -> None:
        if (serial is None) == (host is None):
            raise ValueError("an RTU master needs a serial port or a host, not both")
        self.path, self.settings, self.host, self.port = serial, settings or LineSettings(), host, port
        self.timeout, self.turnaround = timeout, turnaround
        self.where = serial or f"{host}:{port}"
        self.counters = rtu.Counters()
        silence = self.settings.silences[1] if serial else 0.05
        self._decoder = rtu.Decoder(requests=False, silence=silence, counters=self.counters)
        self._port: Any = None
        self._sock: socket.socket | None = None

    def __str__(self) -> str:
        return f"rtu-master@{self.where}"

    def connect(self) -> None:
        if self._port is not None or self._sock is not None:
            return
        if self.path is not None:
            try:
                self._port = open_serial(self.path, self.settings)
            except ValueError as exc:
                raise ModbusConnectionError(str(exc)) from None
            return
        try:
            self._sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        except OSError as exc:
            raise ModbusConnectionError(f"cannot connect to {self.where}: {exc.strerror or exc}") from None
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def close(self) -> None:
        port, sock, self._port, self._sock = self._port, self._sock, None, None
        with contextlib.suppress(OSError):
            if port is not None:
                port.close()
            if sock is not None:
                sock.close()

    def _send(self, data: bytes) -> None:
        if self._port is not None:
            self._port.write(data)
        else:
            self._sock.sendall(data)

    def _recv(self, timeout: float) -> bytes:
        fd = self._port.fileno() if self._port is not None else self._sock.fileno()
        if not select.select([fd], [], [], timeout)[0]:
            return b""
        if self._port is not None:
            try:
                return os.read(fd, 4096)
            except BlockingIOError:
                return b""
        data = self._sock.recv(4096)
        if not data:
            raise ConnectionResetError("closed by the server")
        return data

    def transact(self, unit: int, request: bytes) -> bytes:
        """Send the request PDU to ``unit``; its reply PDU (b"" for a broadcast).  Raises
        TimeoutError (the unit is silent) or ModbusConnectionError."""
        self.connect()
        self._decoder.reset()
        deadline = time.monotonic() + self.timeout
        try:
            self._send(rtu.encode(unit, request))
            if unit == 0:
                time.sleep(self.turnaround)
                return b""
            while (left := deadline - time.monotonic()) > 0:
                data = self._recv(left)
                for frame in self._decoder.feed(data, time.monotonic()) if data else ():
                    reply = reply_of(frame, unit, request[0])
                    if reply is not None:
                        return reply
        except OSError as exc:
            self.close()
            raise ModbusConnectionError(f"{self.where}: {exc.strerror or exc}") from None
        raise TimeoutError(f"unit {unit} on {self.where}: no reply within {self.timeout}s")

    def request(self, request: codec.Request, unit: int = 1) -> Any:
        """Send ``request`` to ``unit``; its decoded result (see ``pdu.decode_response``)."""
        reply = self.transact(unit, request.encode())
        return request if unit == 0 else codec.decode_response(request, reply)
