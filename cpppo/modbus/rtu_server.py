'''Modbus/RTU servers: several devices on one serial line (a port or a pseudo-terminal), and
RTU framing on TCP connections ("RTU over TCP").

:class:`RtuUnits` is the line's population: one :class:`~cpppo.modbus.device.ModbusDevice` per
unit id, each with its own tables.  A frame to a unit id that is not on the line is never
answered (another device may own it: on a shared line two replies would collide); unit id 0
is a broadcast, executed by every device and answered by none.

>>> from cpppo.modbus import rtu
>>> units = RtuUnits.from_specs({1: ["40001-40002=7"], 2: ["40001=9"]})
>>> units.answer(rtu.encode(2, bytes.fromhex("03 0000 0001")))[:-2].hex()
'0203020009'
>>> units.answer(rtu.encode(5, bytes.fromhex("03 0000 0001"))) is None, units.not_ours
(True, 1)

``await serve_serial(units, "/dev/ttyUSB0", settings)`` serves a port (``"pty"`` makes a
pseudo-terminal and serves its master side: ``.path`` is the port a master opens);
``await serve_rtu_tcp(units, host, port)`` serves RTU over TCP, each connection its own byte
stream.  Both decode with :class:`cpppo.modbus.rtu.Decoder` and count what they dropped
(``.counters``).
'''

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from cpppo.faults import FaultState
from cpppo.modbus import rtu
from cpppo.modbus.device import ModbusDevice
from cpppo.modbus.serial_line import LineSettings, make_pty, open_serial
from cpppo.modbus.server import ModbusServer, ServerSettings, _Connection, serve
from cpppo.server.hosting import Delay

__all__ = ["RtuSerialServer", "RtuTcpServer", "RtuUnits", "serve_rtu_tcp", "serve_serial"]

log = logging.getLogger(__name__)


class RtuUnits:
    """The devices on one line by unit id (1..247); see the module's docstring."""

    def __init__(self, devices: Mapping[int, ModbusDevice]) -> None:
        self.devices: dict[int, ModbusDevice] = {}
        self.faults = FaultState()  # injected faults of the line's server (cpppo.faults)
        self.not_ours = 0           # frames addressed to units not on this line (not answered)
        self.broadcasts = 0
        for unit, device in sorted(devices.items()):
            self.add(unit, device)

    def add(self, unit: int, device: ModbusDevice) -> None:
        """Put ``device`` on the line as ``unit`` (1..247, not yet taken): ValueError otherwise."""
        if not 1 <= unit <= 247:
            raise ValueError(f"RTU unit ids must be 1..247: [{unit}]")
        if unit in self.devices:
            raise ValueError(f"RTU unit {unit} is already on the line")
        self.devices[unit] = device

    def remove(self, unit: int) -> None:
        """Take ``unit`` off the line (it falls silent)."""
        self.devices.pop(unit, None)

    @classmethod
    def from_specs(cls, specs: Mapping[int, Sequence[str]],
                   identity: Mapping[str | int, Any] | None = None) -> RtuUnits:
        """One device per unit id, serving its register specs (the one grammar of
        :mod:`cpppo.modbus.address`)."""
        return cls({unit: ModbusDevice.from_specs(list(texts), unit_ids=(unit,), identity=identity)
                    for unit, texts in specs.items()})

    def __repr__(self) -> str:
        return f"<RtuUnits {','.join(map(str, self.devices))}>"

    def answer(self, frame: bytes) -> bytes | None:
        """The reply frame to a request frame (its CRC already checked), or None."""
        unit, pdu = frame[0], frame[1:-2]
        device = self.devices.get(unit)
        if device is not None:
            if device.faults.active is not None:
                return _faulted(unit, device, pdu)
            return rtu.encode(unit, device.handle(unit, pdu))
        if unit == 0:
            self.broadcasts += 1
            for number, each in self.devices.items():
                each.handle(number, pdu)
        else:
            self.not_ours += 1
        return None

    def latency(self, unit: int) -> float:
        """Seconds unit ``unit``'s reply waits under an injected ``latency`` fault (0.0: none)."""
        device = self.devices.get(unit)
        return 0.0 if device is None or device.faults.active is None else device.faults.latency()


def _faulted(unit: int, device: ModbusDevice, pdu: bytes) -> bytes | None:
    """A unit's reply frame under its injected fault (cpppo.faults).  A serial line has no
    connection to refuse or close, so ``timeout``, ``offline``, ``flap`` (its off half) and
    ``drop`` all make the unit silent; ``error`` answers that exception, ``corrupt`` mangles
    the frame (the master sees a bad CRC or a short frame); ``latency`` is :meth:`RtuUnits.latency`."""
    faults = device.faults
    if faults.silent() or faults.offline() or faults.drop():
        return None
    code = faults.error((f"0x{pdu[0]:02X}" if pdu else "",))
    answer = bytes((pdu[0] | 0x80, code)) if code and pdu else device.handle(unit, pdu)
    return faults.corrupt(rtu.encode(unit, answer))


class RtuReceiver:
    """One byte stream of requests: decodes frames (ending broken ones at t3.5 of silence),
    answers them, and hands each reply to ``send(reply, request_length)``."""

    def __init__(self, units: RtuUnits, silence: float, send: Callable[[bytes, int], None],
                 counters: rtu.Counters) -> None:
        self.units = units
        self.decoder = rtu.Decoder(requests=True, silence=silence, counters=counters)
        self.send = send
        self.loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._later: set[asyncio.TimerHandle] = set()  # replies held by a latency fault

    def received(self, data: bytes) -> None:
        self._answer(self.decoder.feed(data, self.loop.time()))

    def _answer(self, frames: list[bytes]) -> None:
        answer, send = self.units.answer, self.send
        for frame in frames:
            reply = answer(frame)
            if reply is None:
                continue
            wait = self.units.latency(frame[0])
            if wait:
                self._later.add(self.loop.call_later(wait, self._late, reply, len(frame)))
            else:
                send(reply, len(frame))
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self.decoder.deadline
        if deadline is not None:
            self._timer = self.loop.call_at(deadline + 1e-4, self._expired)

    def _expired(self) -> None:
        self._timer = None
        self._answer(self.decoder.expire(self.loop.time()))

    def _late(self, reply: bytes, request_length: int) -> None:
        """A reply held by a ``latency`` fault, sent now."""
        self._later = {h for h in self._later if not h.cancelled() and h.when() > self.loop.time()}
        self.send(reply, request_length)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for handle in self._later:
            handle.cancel()
        self._later.clear()


class RtuSerialServer:
    """An RTU line served on a serial port or a pseudo-terminal (``path="pty"``); ``link``
    names the pseudo-terminal by a symbolic link (made on open, removed on close), a name
    that does not change as ``/dev/pts/N`` does."""

    def __init__(self, units: RtuUnits, path: str, settings: LineSettings, link: str | None = None) -> None:
        self.units = units
        self.settings = settings
        self.requested = path
        self.path = path
        self.link = link
        self.counters = rtu.Counters()
        self.loop = asyncio.get_running_loop()
        self._serial: Any = None
        self._fds: tuple[int, ...] = ()
        self._fd = -1
        self._out = bytearray()
        self._busy_until = 0.0
        self._receiver = RtuReceiver(units, settings.silences[1], self._reply, self.counters)
        self._retry: asyncio.TimerHandle | None = None

    def __str__(self) -> str:
        return f"modbus-rtu@{self.path}"

    def open(self) -> None:
        """Open the port (ValueError naming it if that fails) and start serving."""
        if self.requested == "pty":
            master, slave, self.path = make_pty()
            self._fds, self._fd = (master, slave), master
            if self.link:
                try:
                    _replace_link(self.path, self.link)
                except OSError as exc:
                    for fd in self._fds:
                        os.close(fd)
                    raise ValueError(f"cannot link {self.link} to {self.path}: {exc.strerror}") from None
        else:
            self._serial = open_serial(self.requested, self.settings)
            self._fd = self._serial.fileno()
            os.set_blocking(self._fd, False)
        self.loop.add_reader(self._fd, self._readable)

    @property
    def serving(self) -> bool:
        """Whether the port is open and read (not waiting to read again after the far side of
        the line went away)."""
        retry = self._retry
        return self._fd >= 0 and (retry is None or retry.cancelled() or retry.when() <= self.loop.time())

    def _readable(self) -> None:
        try:
            data = os.read(self._fd, 4096)
        except BlockingIOError:
            return
        except OSError as exc:
            data = b""
            if exc.errno != errno.EIO:
                log.warning("%s: read failed: %s", self, exc)
        if data:
            self._receiver.received(data)
            return
        # EIO / EOF: the far side of the line went away (socat exited, adapter unplugged)
        self.loop.remove_reader(self._fd)
        self._retry = self.loop.call_later(0.5, self.loop.add_reader, self._fd, self._readable)

    def _reply(self, reply: bytes, request_length: int) -> None:
        settings = self.settings
        if not settings.timing:
            self._write(reply)
            return
        # The request and the reply take their time on the wire, and a reply waits t3.5.
        now = self.loop.time()
        due = max(now, self._busy_until) + (request_length + len(reply)) * settings.char_time \
            + settings.silences[1]
        self._busy_until = due
        self.loop.call_at(due, self._write, reply)

    def _write(self, data: bytes) -> None:
        if self._fd < 0:
            return
        if self._out:
            self._out += data
            return
        try:
            sent = os.write(self._fd, data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            log.info("%s: reply lost: %s", self, exc)
            return
        if sent < len(data):
            self._out += data[sent:]
            self.loop.add_writer(self._fd, self._drain)

    def _drain(self) -> None:
        try:
            sent = os.write(self._fd, self._out)
        except BlockingIOError:
            return
        except OSError as exc:
            log.info("%s: replies lost: %s", self, exc)
            sent = len(self._out)
        del self._out[:sent]
        if not self._out:
            self.loop.remove_writer(self._fd)

    def close(self) -> None:
        """Stop serving and close the port (a pseudo-terminal disappears)."""
        if self._fd < 0:
            return
        self._receiver.close()
        if self._retry is not None:
            self._retry.cancel()
        self.loop.remove_reader(self._fd)
        self.loop.remove_writer(self._fd)
        if self._serial is not None:
            self._serial.close()
        for fd in self._fds:
            os.close(fd)
        if self._fds and self.link and os.path.islink(self.link) and os.readlink(self.link) == self.path:
            os.unlink(self.link)
        self._fd = -1

    async def wait_closed(self) -> None:
        await asyncio.sleep(0)

    async def __aenter__(self) -> RtuSerialServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


def _replace_link(target: str, link: str) -> None:
    """``link`` -> ``target``, replacing a stale link atomically."""
    temporary = f"{link}.{os.getpid()}.tmp"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temporary)
    os.symlink(target, temporary)
    os.replace(temporary, link)


async def serve_serial(units: RtuUnits, path: str, settings: LineSettings | None = None,
                       link: str | None = None) -> RtuSerialServer:
    """Serve ``units`` on the serial port ``path`` (``"pty"``: a new pseudo-terminal, see
    ``.path``, also named by the symbolic link ``link`` if given).  Raises ValueError naming
    the port if it cannot be opened."""
    server = RtuSerialServer(units, path, settings or LineSettings(), link)
    server.open()
    log.info("%s: serving %s at %s", server, units, server.settings.describe())
    return server


class _RtuConnection(_Connection):
    """One RTU-over-TCP connection: the TCP server's connection handling (limits, idle
    timeout, delays) with RTU framing."""

    __slots__ = ("_receiver",)

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        server = self.server
        self._receiver = RtuReceiver(server.device, server.silence, lambda reply, _: self._send([reply]),
                                     server.counters)

    def data_received(self, data: bytes) -> None:
        self.last = time.monotonic()
        self.received += len(data)
        self._receiver.received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        receiver = getattr(self, "_receiver", None)
        if receiver is not None:
            receiver.close()
        super().connection_lost(exc)


class RtuTcpServer(ModbusServer):
    """RTU over TCP: ``.device`` is the :class:`RtuUnits`; ``.counters`` sums all connections."""

    protocol = _RtuConnection
    kind = "modbus-rtu-tcp"
    # TCP has no character timing and may deliver a frame in pieces some milliseconds apart:
    # a broken frame (or one of a function whose length is unknown) ends after this silence.
    silence = 0.05

    def __init__(self, units: RtuUnits, delay: Delay, settings: ServerSettings, pool: Any = None) -> None:
        super().__init__(units, delay, settings, pool)  # type: ignore[arg-type]
        self.counters = rtu.Counters()


async def serve_rtu_tcp(units: RtuUnits, host: str = "0.0.0.0", port: int = 502, delay: Delay = None,
                        settings: ServerSettings | None = None) -> RtuTcpServer:
    """Serve ``units`` with RTU framing on (``host``, ``port``); OSError if the address is taken."""
    return await serve(units, host, port, delay=delay, settings=settings,  # type: ignore[return-value]
                       server_class=RtuTcpServer)
