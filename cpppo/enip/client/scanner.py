"""A Class 1 I/O scanner (originator): opens an implicit connection to an adapter with a
Forward Open over a TCP session, produces outputs (O->T) every RPI with the run/idle header,
and consumes inputs (T->O).

    async with Scanner("127.60.0.1", inputs=(100, 8), outputs=(150, 4), rpi=0.01) as io:
        io.output = b"\\x01\\x00\\x00\\x00"          # what the adapter's output assembly gets
        async for packet in io:                      # an InputPacket per T->O packet
            print(packet.sequence, packet.data.hex())

or ``Scanner(..., on_input=callback)`` and ``await io.wait_closed()``.  ``inputs`` /
``outputs`` / ``config`` are ``(assembly instance, data size in bytes)``; an ``input-only``
or ``listen-only`` connection names its heartbeat point in ``outputs`` with size 0.  Inputs
arrive on the UDP socket ``io_address`` (default ``0.0.0.0:2222`` as ODVA says; port 0 picks
a free port, which the Forward Open then names in a T->O Sockaddr Info item; a host there
is also the TCP session's source address, so that the adapter sees one originator).  Several
scanners may share one ``IOSocket``.  When no input comes for the timeout (multiplier x
RPI) the iterator ends and ``.error`` says ``connection timed out (0x0203)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import os
import random
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from cpppo.enip.codec import CodecError, cip, cpf, encapsulation
from cpppo.enip.codec.encapsulation import Command
from cpppo.enip.codec.epath import Data, Logical
from cpppo.enip.codec.implicit import (
    IO_PORT,
    NULL,
    POINT_TO_POINT,
    NetworkParams,
    Sockaddr,
    Transport,
    decode_data,
    decode_packet,
    decode_sockaddr,
    encode_data,
    encode_packet,
    encode_sockaddr,
    sequence_gap,
    timeout_multiplier,
)

__all__ = ["ForwardOpenError", "IOSocket", "InputPacket", "Scanner"]

_serials = itertools.count(random.randrange(1, 0xFFFF))
KEEPALIVE = 30.0  # seconds between NOPs on the TCP session (adapters close idle sessions)


class ForwardOpenError(Exception):
    """The adapter refused the Forward Open: ``status`` and ``ext_status`` say why."""

    def __init__(self, status: int, ext_status: tuple[int, ...]) -> None:
        ext = ", ".join(f"0x{e:04x}" for e in ext_status)
        super().__init__(f"Forward Open refused: status 0x{status:02x} ({ext or 'no extended status'})")
        self.status = status
        self.ext_status = ext_status


@dataclass(frozen=True, slots=True)
class InputPacket:
    """One T->O packet: encapsulation ``sequence``, CIP ``count``, application ``data``,
    ``time`` (monotonic seconds) it arrived."""

    sequence: int
    count: int
    data: bytes
    time: float


class IOSocket(asyncio.DatagramProtocol):
    """A UDP socket that delivers T->O packets to the scanners registered on it by
    connection id."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.scanners: dict[int, Scanner] = {}
        self.port = 0

    @classmethod
    async def bind(cls, host: str = "0.0.0.0", port: int = IO_PORT) -> IOSocket:
        loop = asyncio.get_running_loop()
        transport, sock = await loop.create_datagram_endpoint(cls, local_addr=(host, port))
        sock.port = transport.get_extra_info("sockname")[1]
        return sock

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP unreachable while an adapter restarts: the timeout decides

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            packet = decode_packet(data)
        except CodecError:
            return
        scanner = self.scanners.get(packet.connection)
        if scanner is not None:
            scanner._received(packet.sequence, packet.data, addr)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class Scanner:
    """One Class 1 connection to an adapter (see the module docstring)."""

    def __init__(self, host: str, port: int = 44818, *, inputs: tuple[int, int] = (100, 0),
                 outputs: tuple[int, int] = (150, 0), config: tuple[int, bytes] | None = None,
                 rpi: float = 0.01, t_o_rpi: float | None = None, multiplier: int = 2, large: bool = False,
                 kind: str = "owner", io_address: tuple[str, int] = ("0.0.0.0", IO_PORT),
                 io_socket: IOSocket | None = None, on_input: Callable[[InputPacket], None] | None = None,
                 timeout: float = 5.0, keep: int = 0) -> None:
        if kind not in ("owner", "input-only", "listen-only"):
            raise ValueError(f"kind must be owner, input-only or listen-only, not {kind!r}")
        self.host, self.port = host, port
        self.inputs, self.outputs, self.config = inputs, outputs, config
        self.rpi = rpi
        self.t_o_rpi = rpi if t_o_rpi is None else t_o_rpi
        self.multiplier, self.large, self.kind = multiplier, large, kind
        self.io_address, self.on_input, self.timeout = io_address, on_input, timeout
        self._socket, self._own_socket = io_socket, io_socket is None
        self.output = bytes(outputs[1] if kind == "owner" else 0)
        self.run = True  # the run/idle bit sent with outputs
        self.producing = True  # False: send nothing (to let the adapter time the connection out)
        self._open = False
        self._o_t_sequence = self._o_t_count = 0
        self.error = ""
        self.target: tuple[str, int] = (host, IO_PORT)
        self.o_t = self.t_o = 0
        originator = (os.getpid() << 8 ^ random.randrange(1 << 24)) & 0xFFFFFFFF
        self.triad = (next(_serials) & 0xFFFF, 0x0001, originator)
        self.sent = self.received = self.missing = self.late = 0
        self.intervals: deque[float] = deque(maxlen=keep)  # T->O arrival intervals, if kept
        self._queue: asyncio.Queue[InputPacket | None] = asyncio.Queue(maxsize=1024)
        self._last_seq = -1
        self._last_time = 0.0
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._session = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = asyncio.Event()

    # --- life --------------------------------------------------------------------------------------

    async def __aenter__(self) -> Scanner:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self) -> None:
        """Register a session, Forward Open, start producing; raises ForwardOpenError/OSError."""
        local = (self.io_address[0], 0) if self.io_address[0] not in ("", "0.0.0.0") else None
        self._reader, self._writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port, local_addr=local), self.timeout)
        reply = await self._request(Command.REGISTER_SESSION, encapsulation.register_session_data(1))
        self._session = reply[0].session
        if self._socket is None:
            self._socket = await IOSocket.bind(*self.io_address)
        items: tuple[cpf.Item, ...] = ()
        if self._socket.port != IO_PORT:  # tell the adapter where our inputs go
            items = (cpf.Item(cpf.SOCKADDR_T_O, encode_sockaddr(Sockaddr("0.0.0.0", self._socket.port))),)
        request = self._forward_open()
        _header, payload = await self._request(Command.SEND_RR_DATA, cpf.encode_rr_data(
            request.request().encode(), extra=items))
        rr = cpf.decode_rr_data(payload)
        answer = cip.Reply.decode(rr.data)
        if answer.status != 0:
            await self._end_session()
            raise ForwardOpenError(answer.status, answer.ext_status)
        opened = cip.ForwardOpenReply.decode(answer.data)
        self.o_t, self.t_o = opened.o_t_connection, opened.t_o_connection
        for item in rr.items:
            if item.type_id == cpf.SOCKADDR_O_T:
                addr = decode_sockaddr(item.data)
                self.target = (self.host if addr.host == "0.0.0.0" else addr.host, addr.port)
        self._socket.scanners[self.t_o] = self
        self._last_time = time.monotonic()
        self._open = True
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._watch())]
        _Producer.of_loop().add(self)

    def _forward_open(self) -> cip.ForwardOpen:
        heartbeat = self.kind != "owner"
        o_t_size = 2 + (0 if heartbeat else 4 + self.outputs[1])
        t_o_size = 2 + self.inputs[1]
        path = [Logical("class", 4), Logical("instance", self.config[0] if self.config else 1)]
        path += [Logical("connection_point", self.outputs[0]), Logical("connection_point", self.inputs[0])]
        if self.config and self.config[1]:
            path.append(Data(self.config[1]))
        o_t = NetworkParams(o_t_size, priority=2, kind=POINT_TO_POINT)
        t_o = NetworkParams(t_o_size, priority=2, kind=POINT_TO_POINT if self.inputs[0] else NULL)
        return cip.ForwardOpen(
            0, random.randrange(1, 1 << 31), *self.triad, multiplier=self.multiplier,
            o_t_rpi=int(self.rpi * 1e6), o_t_params=o_t.encode(self.large), t_o_rpi=int(self.t_o_rpi * 1e6),
            t_o_params=t_o.encode(self.large), transport=Transport(1).encode(), path=tuple(path),
            large=self.large)

    async def close(self) -> None:
        """Forward Close (if the session still answers) and release the sockets."""
        self._open = False
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        if self._socket is not None:
            self._socket.scanners.pop(self.t_o, None)
        if self._writer is not None and not self._writer.is_closing():
            with contextlib.suppress(OSError, CodecError, asyncio.TimeoutError, asyncio.IncompleteReadError):
                close = cip.ForwardClose(*self.triad, ())
                await self._request(Command.SEND_RR_DATA, cpf.encode_rr_data(close.request().encode()))
        await self._end_session()
        if self._own_socket and self._socket is not None:
            self._socket.close()
        self._finish("")

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def _end_session(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(OSError):
                self._writer.write(encapsulation.encode(Command.UNREGISTER_SESSION, session=self._session))
                self._writer.close()
            self._writer = None

    def _finish(self, error: str) -> None:
        if self._closed.is_set():
            return
        self.error = self.error or error
        self._closed.set()
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(None)

    async def _request(self, command: int, payload: bytes) -> tuple[encapsulation.Header, bytes]:
        assert self._writer is not None and self._reader is not None
        self._writer.write(encapsulation.encode(command, payload, session=self._session))
        head = await asyncio.wait_for(self._reader.readexactly(encapsulation.HEADER_SIZE), self.timeout)
        length = encapsulation.peek_length(head)
        body = await asyncio.wait_for(self._reader.readexactly(length), self.timeout) if length else b""
        _consumed, header, data = encapsulation.decode(head + body)
        assert header is not None
        if header.status:
            raise CodecError(f"encapsulation status 0x{header.status:04x} for command 0x{command:04x}")
        return header, data

    # --- data --------------------------------------------------------------------------------------

    def _send(self) -> None:
        """Send the next O->T packet (the producer calls this every RPI)."""
        transport = self._socket.transport if self._socket else None
        if transport is None or not self.producing:
            return
        self._o_t_sequence = (self._o_t_sequence + 1) & 0xFFFFFFFF
        self._o_t_count = (self._o_t_count + 1) & 0xFFFF
        if self.kind == "owner":
            data = encode_data(self._o_t_count, self.output, run=self.run)
        else:
            data = encode_data(self._o_t_count)  # a heartbeat: the count alone
        transport.sendto(encode_packet(self.o_t, self._o_t_sequence, data), self.target)
        self.sent += 1

    async def _watch(self) -> None:
        limit = timeout_multiplier(self.multiplier) * self.t_o_rpi
        keepalive = time.monotonic() + KEEPALIVE
        while True:  # before the first input, allow 10 s (as the adapter's watchdog starts)
            allowed = limit if self.received else max(limit, 10.0)
            now = time.monotonic()
            if now >= keepalive and self._writer is not None:  # keep the idle TCP session open
                keepalive = now + KEEPALIVE
                with contextlib.suppress(OSError):
                    self._writer.write(encapsulation.encode(Command.NOP, session=self._session))
            quiet = now - self._last_time
            if quiet >= allowed:
                self._finish(f"connection timed out (0x0203) after {quiet:.3f}s without inputs")
                for task in self._tasks:
                    if task is not asyncio.current_task():
                        task.cancel()
                return
            await asyncio.sleep(min(allowed - quiet, limit, KEEPALIVE))

    def _received(self, sequence: int, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) != 2 + self.inputs[1]:
            return
        if self._last_seq >= 0:
            gap = sequence_gap(self._last_seq, sequence)
            if gap is None:
                return  # duplicate, old, or a stray far ahead
            self.missing += gap
        now = time.monotonic()
        if self.received:
            interval = now - self._last_time
            if interval > 1.5 * self.t_o_rpi:
                self.late += 1
            if self.intervals.maxlen:
                self.intervals.append(interval)
        self._last_seq, self._last_time = sequence, now
        self.received += 1
        count, _run, inputs = decode_data(data, header=False)
        packet = InputPacket(sequence, count, inputs, now)
        if self.on_input is not None:
            self.on_input(packet)
        if self._queue.full():
            self._queue.get_nowait()  # keep the newest
        self._queue.put_nowait(packet)

    async def __aiter__(self) -> AsyncIterator[InputPacket]:
        while True:
            packet = await self._queue.get()
            if packet is None:
                return
            yield packet


class _Producer:
    """One task per event loop that sends every open scanner's O->T packets at its RPI (a heap
    of due times, each scanner on its own phase), rather than a task per connection."""

    _loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Producer] = weakref.WeakKeyDictionary()

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Scanner]] = []
        self._count = 0
        self._wake: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def of_loop(cls) -> _Producer:
        loop = asyncio.get_running_loop()
        producer = cls._loops.get(loop)
        if producer is None:
            producer = cls._loops[loop] = cls()
        return producer

    def add(self, scanner: Scanner) -> None:
        self._count += 1
        heapq.heappush(self._heap, (time.monotonic(), self._count, scanner))
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
        elif self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        heap = self._heap
        while heap:
            now = time.monotonic()
            while heap and heap[0][0] <= now:
                due, _n, scanner = heapq.heappop(heap)
                if not scanner._open:
                    continue
                scanner._send()
                due += scanner.rpi
                if due <= now:
                    due += (int((now - due) / scanner.rpi) + 1) * scanner.rpi
                self._count += 1
                heapq.heappush(heap, (due, self._count, scanner))
            if not heap:
                break
            self._wake = loop.create_future()
            handle = loop.call_later(max(heap[0][0] - time.monotonic(), 0), _done, self._wake)
            try:
                await self._wake
            finally:
                handle.cancel()


def _done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
