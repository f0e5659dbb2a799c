"""Helpers for the implicit I/O tests: an adapter served from a background thread, and
loopback addresses of their own for each test process (so port 2222 and 44818 are free)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from cpppo.enip.client.scanner import Scanner
from cpppo.enip.device.connections import IOPolicy
from cpppo.enip.device.model import Device
from cpppo.enip.server.io import IOEndpoint, IOEngine, serve_adapter
from cpppo.enip.server.transport import ServerHandle

TAGS = ["Inputs=DINT[2]", "Status=INT", "Outputs=INT[2]", "Setup=SINT[2]"]
ASSEMBLIES = ["100=in:Inputs,Status", "150=out:Outputs", "151=config:Setup", "198=input-only",
              "199=listen-only"]
_hosts = iter(range(1, 250))


def io_host() -> str:
    """A loopback address no other test process uses: 127.118.<pid>.<n>."""
    return f"127.118.{os.getpid() % 250 + 1}.{next(_hosts)}"


@dataclass
class Adapter:
    device: Device
    server: ServerHandle
    endpoint: IOEndpoint
    engine: IOEngine
    loop: asyncio.AbstractEventLoop

    def call(self, fn: Callable[[], Any], timeout: float = 10.0) -> Any:
        """Run ``fn()`` on the adapter's event loop thread and return its result."""
        async def run() -> Any:
            return fn()
        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout)

    def status(self) -> dict[str, Any]:
        return self.call(self.endpoint.status)


@contextlib.contextmanager
def adapter(tags: list[str], assemblies: list[str], host: str, port: int = 44818, io_port: int = 2222,
            **policy: Any) -> Iterator[Adapter]:
    """Serve a device as an I/O adapter from a daemon thread for the block."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name=f"io-adapter-{host}", daemon=True)
    thread.start()
    device = Device.from_specs(tags)
    engine = IOEngine()

    async def start() -> tuple[ServerHandle, IOEndpoint]:
        return await serve_adapter(device, assemblies, host, port, engine=engine, io_port=io_port,
                                   policy=IOPolicy(io_host=host, io_port=io_port, **policy))

    try:
        server, endpoint = asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    except BaseException:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        raise
    try:
        yield Adapter(device, server, endpoint, engine, loop)
    finally:
        async def stop() -> None:
            server.close()
            await server.wait_closed()
            await engine.close()
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        if not thread.is_alive():
            loop.close()


def scan(host: str, local: str, count: int = 30, **kwds: Any) -> tuple[list, Scanner]:
    """Our scanner against the TAGS/ASSEMBLIES adapter at ``host``: ``count`` input packets."""
    async def run():
        packets = []
        async with Scanner(host, inputs=(100, 10), outputs=(150, 4), config=(151, b"\x05\x06"), rpi=0.01,
                           io_address=(local, kwds.pop("io_port", 0)), **kwds) as scanner:
            scanner.output = struct.pack("<hh", 12, -13)
            async for packet in scanner:
                packets.append(packet)
                if len(packets) >= count:
                    break
        return packets, scanner
    return asyncio.run(run())
