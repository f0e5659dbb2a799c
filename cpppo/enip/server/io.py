"""The UDP transport of implicit (Class 0/1) I/O: one socket per adapter address (port 2222
by default) and one scheduler per process that sends every connection's T->O packets at its
RPI and times out the silent ones.

    engine = IOEngine()                       # one per worker process / event loop
    io = await engine.serve(assemblies, "127.60.0.1", policy=IOPolicy())
    srv = await serve(device, "127.60.0.1", 44818, io=io.manager)   # Forward Open reaches it
    ...
    io.close(); await engine.close()

Injected faults (``device.faults``): ``offline`` (or flap's off half) silences the I/O socket
both ways, ``timeout`` and ``drop`` stop the T->O packets, so scanners see their connection
time out (0x0203) as with a device pulled off the network.

The scheduler is one task over a heap of due times (not a timer per connection): it sleeps
until the earliest due time, sends every packet due, and keeps each connection on its own
phase (``due += rpi``), skipping ahead when the process fell more than one RPI behind (those
are counted as ``overruns``).  Every sweep also samples each adapter's packet totals for its
packets-per-second figures (``ConnectionManager.rates``).  Time is ``time.monotonic()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from cpppo.enip.codec import CodecError
from cpppo.enip.codec.implicit import IO_PORT, decode_packet, encode_packet
from cpppo.enip.device.assembly import Assemblies
from cpppo.enip.device.connections import (
    SOURCE,
    ConnectionManager,
    IOConnection,
    IOPolicy,
    install_statistics,
)
from cpppo.enip.device.model import Device
from cpppo.enip.server.transport import ServerHandle, serve

__all__ = ["AdapterHandle", "IOEndpoint", "IOEngine", "parse_rpi_range", "parse_t_o_port", "serve_adapter"]

log = logging.getLogger(__name__)

WATCHDOG = 0.02  # seconds between timeout sweeps


class IOEndpoint(asyncio.DatagramProtocol):
    """The I/O socket of one adapter and its ConnectionManager."""

    def __init__(self, engine: IOEngine, manager: ConnectionManager) -> None:
        self.engine = engine
        self.manager = manager
        self.transport: asyncio.DatagramTransport | None = None
        self.port = 0
        self.faults = manager.assemblies.device.faults  # injected faults (cpppo.faults): offline, timeout
        self.bad = 0  # datagrams that are not I/O packets
        self.unknown = 0  # I/O packets for no connection of ours (or not from its originator)
        manager.on_open.append(self._opened)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def error_received(self, exc: Exception) -> None:  # e.g. ICMP port unreachable from a scanner
        log.debug("I/O socket error: %s", exc)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.faults.active is not None and self.faults.offline():
            return  # an offline device hears nothing
        try:
            packet = decode_packet(data)
        except CodecError:
            self.bad += 1
            return
        if self.manager.consume(packet, addr, time.monotonic()) is None:
            self.unknown += 1

    def _opened(self, connection: IOConnection) -> None:
        if connection.produced is not None:
            self.engine.schedule(self, connection)

    def send(self, connection: IOConnection) -> None:
        if connection.destination is None or self.transport is None:
            return  # "source" mode: no O->T packet yet to say where
        faults = self.faults
        if faults.active is not None and (faults.offline() or faults.silent() or faults.drop()):
            return  # an injected offline/timeout/drop fault: the scanner's inputs stop
        ident, sequence, data = self.manager.produce(connection)
        self.transport.sendto(encode_packet(ident, sequence, data), connection.destination)

    def close(self) -> None:
        for connection in list(self.manager.by_o_t.values()):
            self.manager.close(connection, "closed")
        if self.transport is not None:
            self.transport.close()
        self.engine.endpoints.discard(self)

    def status(self) -> dict[str, Any]:
        """Counters and one row per open connection (for status pages and metrics)."""
        now = time.monotonic()
        rows = []
        for c in self.manager.by_o_t.values():
            age = max(now - c.opened, 1e-9)
            rows.append({"peer": c.peer, "kind": c.kind, "o_t": c.o_t, "t_o": c.t_o,
                         "rpi_ms": round(c.t_o_rpi * 1e3, 3), "run": c.run, "sent": c.sent,
                         "received": c.received, "late": c.late, "missing": c.missing,
                         "dropped": c.dropped, "packets_per_s": round((c.sent + c.received) / age, 1)})
        return {"port": self.port, "connections": rows, "refused": self.manager.refused,
                "bad": self.bad, "unknown": self.unknown, "closed": len(self.manager.closed)}


class IOEngine:
    """The per-process scheduler of T->O production and connection timeouts.
    ``IOEngine.of_loop()`` is the one of the running event loop (made on first use)."""

    def __init__(self) -> None:
        self.endpoints: set[IOEndpoint] = set()
        self._heap: list[tuple[float, int, IOEndpoint, IOConnection]] = []
        self._count = 0
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Future[None] | None = None
        self._sleeping_until = 0.0
        self.overruns = 0  # sends more than one RPI late (the process could not keep up)
        self.on_tick: list[Callable[[float], None]] = []

    @classmethod
    def of_loop(cls) -> IOEngine:
        loop = asyncio.get_running_loop()
        engine = _ENGINES.get(loop)
        if engine is None:
            engine = _ENGINES[loop] = cls()
        return engine

    async def serve(self, assemblies: Assemblies, host: str = "0.0.0.0", port: int = IO_PORT,
                    policy: IOPolicy | None = None) -> IOEndpoint:
        """Bind the I/O socket of one adapter; raises OSError if the address is taken."""
        loop = asyncio.get_running_loop()
        policy = policy or IOPolicy()
        manager = ConnectionManager(assemblies, policy)
        transport, endpoint = await loop.create_datagram_endpoint(
            lambda: IOEndpoint(self, manager), local_addr=(host or "0.0.0.0", port))
        endpoint.port = transport.get_extra_info("sockname")[1]
        if endpoint.port != policy.io_port or (host and host != policy.io_host):
            manager.policy = replace(policy, io_host=host or "0.0.0.0", io_port=endpoint.port)
        self.endpoints.add(endpoint)
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())
        return endpoint

    def schedule(self, endpoint: IOEndpoint, connection: IOConnection) -> None:
        due = time.monotonic()  # the first T->O packet at once, then every RPI
        self._count += 1
        heapq.heappush(self._heap, (due, self._count, endpoint, connection))
        wake = self._wake
        if wake is not None and not wake.done() and due < self._sleeping_until:
            wake.set_result(None)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        heap = self._heap
        next_sweep = time.monotonic() + WATCHDOG
        while True:
            now = time.monotonic()
            while heap and heap[0][0] <= now:
                due, _n, endpoint, connection = heapq.heappop(heap)
                if connection.closed or connection.o_t not in endpoint.manager.by_o_t:
                    continue
                try:
                    endpoint.send(connection)
                except Exception:  # a user Attribute raised, or the socket: keep the others going
                    log.exception("T->O production failed on connection 0x%08x", connection.t_o)
                rpi = connection.t_o_rpi
                due += rpi
                if due <= now:
                    self.overruns += 1
                    due += (int((now - due) / rpi) + 1) * rpi
                self._count += 1
                heapq.heappush(heap, (due, self._count, endpoint, connection))
            if now >= next_sweep:
                next_sweep = now + WATCHDOG
                try:
                    for endpoint in list(self.endpoints):
                        endpoint.manager.expired(now)
                        endpoint.manager.sample(now)
                    for hook in self.on_tick:
                        hook(now)
                except Exception:  # a close hook raised: the scheduler must go on for the others
                    log.exception("I/O timeout sweep failed")
            until = min(heap[0][0], next_sweep) if heap else next_sweep
            self._sleeping_until = until
            self._wake = loop.create_future()
            handle = loop.call_later(max(until - time.monotonic(), 0), _done, self._wake)
            try:
                await self._wake
            finally:
                handle.cancel()

    async def close(self) -> None:
        for endpoint in list(self.endpoints):
            endpoint.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


_ENGINES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, IOEngine] = weakref.WeakKeyDictionary()


class AdapterHandle:
    """A served adapter: its ServerHandle (attributes pass through) and its IOEndpoint;
    ``close()`` closes both."""

    def __init__(self, server: ServerHandle, endpoint: IOEndpoint) -> None:
        self.server = server
        self.endpoint = endpoint

    def __getattr__(self, name: str) -> Any:
        return getattr(self.server, name)

    def close(self) -> None:
        self.endpoint.close()
        self.server.close()

    async def wait_closed(self) -> None:
        await self.server.wait_closed()


def _done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def parse_t_o_port(text: str) -> int | str:
    """``--t-o-port``: a port number, or ``source`` (raises ValueError)."""
    if text.strip().lower() == SOURCE:
        return SOURCE
    try:
        port = int(text, 0)
    except ValueError:
        raise ValueError(f"bad T->O port {text!r}: a port number or 'source'") from None
    if not 1 <= port <= 65535:
        raise ValueError(f"bad T->O port {text!r}: must be 1-65535")
    return port


def parse_rpi_range(text: str) -> tuple[int, int]:
    """``<min>-<max>`` milliseconds -> (min, max) microseconds (raises ValueError).

    >>> parse_rpi_range("0.5-100")
    (500, 100000)
    """
    low, sep, high = str(text).partition("-")
    try:
        rpi_min, rpi_max = float(low), float(high if sep else low)
    except ValueError:
        raise ValueError(f"bad RPI range {text!r}: expected <min>-<max> milliseconds") from None
    if not 0 < rpi_min <= rpi_max:
        raise ValueError(f"bad RPI range {text!r}: need 0 < min <= max")
    return int(rpi_min * 1000), int(rpi_max * 1000)


async def serve_adapter(device: Device, specs: Assemblies | Iterable[str], host: str = "0.0.0.0",
                        port: int = 44818, *,
                        engine: IOEngine, io_port: int = IO_PORT, policy: IOPolicy | None = None,
                        **serve_kwds: Any) -> tuple[ServerHandle, IOEndpoint]:
    """Serve ``device`` as an adapter: its assemblies (spec strings, ``device.assembly``) on
    the I/O socket (host, io_port) and Forward Open on the TCP server (host, port).  Raises
    ValueError for a bad assembly spec, OSError if an address is taken."""
    assemblies = specs if isinstance(specs, Assemblies) else Assemblies.from_specs(device, specs)
    endpoint = await engine.serve(assemblies, host, io_port, policy or assemblies.policy)
    install_statistics(device, endpoint.manager)
    try:
        server = await serve(device, host, port, io=endpoint.manager, **serve_kwds)
    except BaseException:
        endpoint.close()
        raise
    return server, endpoint
