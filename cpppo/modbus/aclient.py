'''An asyncio Modbus/TCP client on the same codec as the server, for many concurrent polls.

>>> async def poll(host, port):                                   # doctest: +SKIP
...     async with AsyncModbusClient(host, port, unit=1, timeout=2.0) as c:
...         return await c.read_holding_registers(0, 10)           # zero-based address

Requests may be issued concurrently on one client: each gets its own transaction id and they
are pipelined on the one connection.  Errors: :class:`ModbusConnectionError` (cannot connect,
connection lost), :class:`ExceptionResponse` (the device answered an exception code),
:class:`ResponseError` (a reply that does not fit), all :class:`ModbusException`; a request
not answered within ``timeout`` raises :class:`TimeoutError`.
'''

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from typing import Any

from cpppo.modbus import framer
from cpppo.modbus import pdu as codec
from cpppo.modbus.errors import (
    ExceptionResponse,
    FrameError,
    ModbusConnectionError,
    ModbusException,
    ResponseError,
)
from cpppo.timing import deadline

__all__ = ["AsyncModbusClient", "ExceptionResponse", "ModbusConnectionError", "ModbusException",
           "RequestMethods"]


class _ClientProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.pending: dict[int, tuple[asyncio.Future, codec.Request]] = {}
        self.buffer = bytearray()
        self.lost: Exception | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        try:
            while True:
                consumed, header, pdu = framer.decode(self.buffer)
                if not consumed:
                    return
                del self.buffer[:consumed]
                entry = self.pending.pop(header.transaction_id, None)
                if entry is None:                    # a reply after its request timed out
                    continue
                future, request = entry
                if future.done():
                    continue
                try:
                    future.set_result(codec.decode_response(request, pdu))
                except ModbusException as exc:
                    future.set_exception(exc)
        except FrameError as exc:
            self._fail(ResponseError(f"malformed reply: {exc}"))
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = ModbusConnectionError(f"connection lost{f': {exc}' if exc else ''}")
        self._fail(self.lost)

    def _fail(self, exc: Exception) -> None:
        for future, _ in self.pending.values():
            if not future.done():
                future.set_exception(exc)
        self.pending.clear()


class RequestMethods:
    """The function-code methods of an asyncio client, on its ``request(request, unit)``;
    shared by the Modbus/TCP and the Modbus/RTU clients."""

    async def request(self, request: codec.Request, unit: int | None = None) -> Any:
        raise NotImplementedError

    async def read_coils(self, address: int, count: int = 1) -> list[bool]:
        return list(await self.request(codec.ReadRequest(1, address, count)))

    async def read_discrete_inputs(self, address: int, count: int = 1) -> list[bool]:
        return list(await self.request(codec.ReadRequest(2, address, count)))

    async def read_holding_registers(self, address: int, count: int = 1) -> list[int]:
        return list(await self.request(codec.ReadRequest(3, address, count)))

    async def read_input_registers(self, address: int, count: int = 1) -> list[int]:
        return list(await self.request(codec.ReadRequest(4, address, count)))

    async def write_coil(self, address: int, value: bool) -> None:
        await self.request(codec.WriteSingleRequest(5, address, bool(value)))

    async def write_register(self, address: int, value: int) -> None:
        await self.request(codec.WriteSingleRequest(6, address, value))

    async def write_coils(self, address: int, values: Sequence[bool]) -> None:
        await self.request(codec.WriteMultipleRequest(15, address, tuple(bool(v) for v in values)))

    async def write_registers(self, address: int, values: Sequence[int]) -> None:
        await self.request(codec.WriteMultipleRequest(16, address, tuple(values)))

    async def mask_write_register(self, address: int, and_mask: int, or_mask: int) -> None:
        await self.request(codec.MaskWriteRequest(address, and_mask, or_mask))

    async def read_write_registers(self, read_address: int, read_count: int, write_address: int,
                                   values: Sequence[int]) -> list[int]:
        return list(await self.request(
            codec.ReadWriteRequest(read_address, read_count, write_address, tuple(values))))

    async def read_device_identification(self, read_code: int = 2) -> dict[int, bytes]:
        """All identification objects of category ``read_code`` (1 basic, 2 regular,
        3 extended), following "more follows" replies (at most 256 of them)."""
        objects: dict[int, bytes] = {}
        object_id = 0
        for _ in range(256):
            reply = await self.request(codec.DeviceIdRequest(read_code, object_id))
            objects.update(reply.objects)
            if not reply.more_follows:
                break
            object_id = reply.next_object_id
        return objects


class AsyncModbusClient(RequestMethods):
    """One Modbus/TCP connection to ``host:port``, addressing unit ``unit`` by default."""

    def __init__(self, host: str, port: int = 502, unit: int = 1, timeout: float = 2.0) -> None:
        self.host, self.port, self.unit, self.timeout = host, port, unit, timeout
        self._protocol: _ClientProtocol | None = None
        self._ids = itertools.count(1)

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, self._protocol = await asyncio.wait_for(
                loop.create_connection(_ClientProtocol, self.host, self.port), self.timeout)
        except OSError as exc:
            raise ModbusConnectionError(f"cannot connect to {self.host}:{self.port}: "
                                        f"{exc.strerror or exc}") from None

    @property
    def connected(self) -> bool:
        """Whether the connection is open: a request that timed out leaves it so (a late reply
        is matched to no request and skipped)."""
        protocol = self._protocol
        return (protocol is not None and protocol.lost is None and protocol.transport is not None
                and not protocol.transport.is_closing())

    async def close(self) -> None:
        protocol, self._protocol = self._protocol, None
        if protocol is not None and protocol.transport is not None:
            protocol.transport.close()

    async def __aenter__(self) -> AsyncModbusClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def request(self, request: codec.Request, unit: int | None = None) -> Any:
        """Send ``request`` and return its decoded result (see ``pdu.decode_response``)."""
        protocol = self._protocol
        if protocol is None:
            raise ModbusConnectionError(f"not connected to {self.host}:{self.port}")
        if protocol.lost is not None:
            raise protocol.lost
        tid = next(self._ids) & 0xFFFF
        future = asyncio.get_running_loop().create_future()
        protocol.pending[tid] = (future, request)
        protocol.transport.write(framer.encode(tid, self.unit if unit is None else unit,
                                               request.encode()))
        timer = deadline(future, self.timeout)
        try:
            return await future
        except TimeoutError:
            raise TimeoutError(f"no reply from {self.host}:{self.port} within {self.timeout}s") from None
        finally:
            if timer is not None:
                timer.cancel()
            protocol.pending.pop(tid, None)
