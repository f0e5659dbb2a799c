"""Helpers for the Modbus tests and benchmark (no tests here): our server on a background
event loop for synchronous clients, raw MBAP frames, and a pymodbus 3.x server subprocess."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import sys
import threading
from collections.abc import Iterator
from typing import Any

from cpppo.modbus.device import ModbusDevice
from cpppo.modbus.server import ModbusServer, serve
from tests.support import free_port, running

HOST = "127.0.0.1"

# A pymodbus 3.x server: holding registers 0..99 (40001-40100) = 99, unit ids all answered.
PYMODBUS_SERVER = """
import asyncio, logging, sys, warnings
warnings.simplefilter("ignore")
logging.disable(logging.CRITICAL)
from pymodbus.server import StartAsyncTcpServer
from pymodbus.datastore import ModbusDeviceContext, ModbusServerContext, ModbusSequentialDataBlock
block = ModbusSequentialDataBlock(1, [99] * 100)
context = ModbusServerContext(devices=ModbusDeviceContext(hr=block), single=True)
asyncio.run(StartAsyncTcpServer(context, address=(sys.argv[1], int(sys.argv[2]))))
"""


def pymodbus_server_argv(port: int, host: str = HOST) -> list[str]:
    """argv running the pymodbus 3.x server above on ``host:port``."""
    return [sys.executable, "-c", PYMODBUS_SERVER, host, str(port)]


@contextlib.contextmanager
def pymodbus_server(host: str = HOST) -> Iterator[int]:
    """A running pymodbus server subprocess; yields its port."""
    port = free_port(host)
    with running(pymodbus_server_argv(port, host), listen=(host, port)):
        yield port


class ServerThread:
    """An event loop in a background thread serving our devices, for synchronous clients."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.servers: list[ModbusServer] = []

    def run(self, coro: Any, timeout: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def serve(self, device: ModbusDevice, host: str = HOST, port: int = 0, **kwds: Any) -> ModbusServer:
        server = self.run(serve(device, host, port, **kwds))
        self.servers.append(server)
        return server

    def close(self) -> None:
        async def shutdown() -> None:
            for server in self.servers:
                server.close()
                await server.wait_closed()
        self.run(shutdown())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@contextlib.contextmanager
def simulator(specs: list[str] | None = None, **kwds: Any) -> Iterator[tuple[ServerThread, ModbusServer]]:
    """Our server for one device (``specs`` default: 40001-40100=99, 1-16=0, 10001-10008=1,
    30001-30010=5) on an ephemeral loopback port."""
    device_kwds = {k: kwds.pop(k) for k in ("unit_ids", "identity") if k in kwds}
    device = ModbusDevice.from_specs(
        specs or ["40001-40100=99", "1-16=0", "10001-10008=1", "30001-30010=5"], **device_kwds)
    thread = ServerThread()
    try:
        yield thread, thread.serve(device, **kwds)
    finally:
        thread.close()


def frame(tid: int, unit: int, pdu: bytes, protocol: int = 0, length: int | None = None) -> bytes:
    """A raw MBAP frame (``length`` overrides the computed length field)."""
    return struct.pack(">HHHB", tid, protocol, len(pdu) + 1 if length is None else length, unit) + pdu


def exchange(port: int, data: bytes, host: str = HOST, timeout: float = 1.0,
             expect: int | None = None) -> bytes:
    """Send ``data`` on a new connection and collect what comes back until EOF, ``expect``
    bytes, or ``timeout`` seconds of silence."""
    out = b""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(data)
        try:
            while expect is None or len(out) < expect:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                out += chunk
        except (TimeoutError, ConnectionResetError):
            pass
    return out
