"""The adapter's Connection Manager for Class 0/1 (implicit I/O) connections.  No sockets:
the I/O transport (``cpppo.enip.server.io``) feeds it packets and the clock, and asks it
what to send.

``forward_open(service, request, peer, items)`` checks a Forward Open against the device's
assemblies and answers with the CIP reply (and the Sockaddr Info items for the reply's CPF);
``forward_close(request)``, ``consume(packet, sender, now)`` (an O->T packet: a bad or stale
one is dropped silently), ``expired(now)`` (connections silent for multiplier x RPI).

Connection points (the path ``@4/<config>/<consumed point>/<produced point>``, CIP Vol 1
3-5.4.1.10): an ``out`` point consumed O->T makes an *exclusive owner* connection (one at a
time per output assembly: 0x0106 otherwise); an ``input-only`` point, an input-only one; a
``listen-only`` point, a listen-only one, allowed only while a non-listen-only connection
produces the same input assembly, and closed with the last of them (0x0119 otherwise).

Refusals (general status 0x01, extended status): 0x0100 triad in use, 0x0103 transport
class/trigger, 0x0106 ownership conflict, 0x0108 connection type, 0x0109 size (with the
size expected as a second word), 0x0112 RPI (with the acceptable RPIs: five more words),
0x0113 out of connections, 0x0117 connection point, 0x0118 configuration path, 0x0119 no
owner for a listen-only, 0x0315 path segment.
"""

from __future__ import annotations

import itertools
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from cpppo.enip.codec import CodecError, cip, cpf
from cpppo.enip.codec.cip import Reply, Status
from cpppo.enip.codec.epath import Data, Key, Logical, Port
from cpppo.enip.codec.implicit import (
    IO_PORT,
    NULL,
    POINT_TO_POINT,
    RPI_ACCEPTABLE,
    RPI_MAXIMUM,
    RPI_MINIMUM,
    NetworkParams,
    Packet,
    Sockaddr,
    Transport,
    decode_data,
    decode_sockaddr,
    encode_data,
    encode_sockaddr,
    rpi_refusal_words,
    sequence_gap,
    timeout_multiplier,
)
from cpppo.enip.codec.types import UDINT
from cpppo.enip.device.assembly import Assemblies, Assembly
from cpppo.enip.device.model import Attribute, Device

__all__ = ["STATISTICS", "STATISTICS_CLASS", "ConnectionManager", "IOConnection", "IOPolicy", "Refused",
           "install_statistics"]

log = logging.getLogger(__name__)

EXT_CONNECTION_IN_USE = 0x0100
EXT_TRANSPORT_NOT_SUPPORTED = 0x0103
EXT_OWNERSHIP_CONFLICT = 0x0106
EXT_CONNECTION_NOT_FOUND = 0x0107
EXT_INVALID_CONNECTION_TYPE = 0x0108
EXT_INVALID_CONNECTION_SIZE = 0x0109
EXT_RPI_NOT_ACCEPTABLE = 0x0112  # (0x0111 "RPI not supported" is deprecated)
EXT_OUT_OF_CONNECTIONS = 0x0113
EXT_INVALID_CONNECTION_POINT = 0x0117
EXT_INVALID_CONFIGURATION = 0x0118
EXT_NO_OWNER = 0x0119
EXT_CONNECTION_TIMED_OUT = 0x0203
EXT_INVALID_SEGMENT = 0x0315

COUNTERS = ("sent", "received", "late", "missing", "dropped")  # per connection, summed by counters()
RATE_WINDOW = 5.0  # seconds of packet totals rates() spans
SOURCE = "source"  # IOPolicy.t_o_port: send T->O data to the port the O->T data comes from


class Refused(Exception):
    def __init__(self, ext: int, reason: str, *more: int) -> None:
        super().__init__(reason)
        self.ext = (ext, *more)


@dataclass(frozen=True)
class IOPolicy:
    """What this adapter accepts.  RPIs in microseconds; ``t_o_port``: where T->O data goes
    when the Forward Open names no T->O Sockaddr Info: IO_PORT (2222, as ODVA says) on the
    originator's address, another port number, or ``"source"`` (the address and port the
    scanner's O->T packets come from)."""

    rpi_min: int = 1_000
    rpi_max: int = 10_000_000
    max_connections: int = 64
    t_o_port: int | str = IO_PORT
    io_host: str = "0.0.0.0"  # our I/O address (for the reply's Sockaddr Info)
    io_port: int = IO_PORT
    lenient_sizes: bool = False  # also accept Class 1 sizes that leave out the 2-byte sequence count


@dataclass(eq=False)
class IOConnection:
    """One open Class 0/1 connection; times are ``time.monotonic()`` seconds (``opened``,
    ``last``: the caller's clock, which must be the same one)."""

    o_t: int  # the id O->T packets carry (we chose it)
    t_o: int  # the id our T->O packets carry (the scanner chose it)
    triad: tuple[int, int, int]
    kind: str  # "owner", "input-only", "listen-only"
    consumed: Assembly | None  # the output assembly O->T data lands in
    produced: Assembly | None  # the input assembly T->O data is read from
    o_t_rpi: float  # seconds
    t_o_rpi: float
    o_t_size: int
    t_o_size: int
    transport: int  # class: 0 or 1
    header: bool  # O->T data carries the 32-bit run/idle header
    timeout: float  # seconds of O->T silence before the connection times out
    peer: str  # the originator's IP address (its TCP session)
    destination: tuple[str, int] | None  # where T->O data goes (None: learn from O->T)
    opened: float = field(default_factory=time.monotonic)
    last: float = 0.0  # time of the last O->T packet accepted
    o_t_sequence: int = -1  # the last encapsulation sequence number accepted
    cip_sequence: int = -1
    t_o_sequence: int = 0  # our encapsulation sequence number
    t_o_cip: int = 0  # our CIP sequence count
    run: bool = False  # the scanner's run/idle bit
    sent: int = 0
    received: int = 0
    dropped: int = 0  # O->T packets refused: stale sequence, wrong size
    missing: int = 0  # O->T packets the sequence numbers say never came
    late: int = 0  # O->T packets that came later than 1.5 x RPI after the previous one
    closed: str = ""  # why it closed: "closed", "timed out", "owner gone"

    def deadline(self) -> float:
        """When the connection times out: its timeout after the last O->T packet, and before
        the first one at least 10 s after the Forward Open (CIP Vol 1 3-4.5.2 starts the
        watchdog at 10 s, so a scanner has time to begin producing)."""
        if self.last:
            return self.last + self.timeout
        return self.opened + max(10.0, self.timeout)


class ConnectionManager:
    """The Class 0/1 connections of one adapter, over its ``Assemblies``."""

    def __init__(self, assemblies: Assemblies, policy: IOPolicy | None = None) -> None:
        self.assemblies = assemblies
        self.policy = policy or IOPolicy()
        self.by_o_t: dict[int, IOConnection] = {}
        self.by_triad: dict[tuple[int, int, int], IOConnection] = {}
        self._ids = itertools.count(random.randrange(1 << 20, 1 << 30))
        self.on_open: list[Callable[[IOConnection], None]] = []
        self.on_close: list[Callable[[IOConnection], None]] = []
        self.refused = 0
        self.timed_out = 0
        self.closed: list[IOConnection] = []  # the last few closed, for status
        self._gone = dict.fromkeys(COUNTERS, 0)  # the counters of connections closed so far
        self._samples: deque[tuple[float, int, int]] = deque()  # (time, received, sent), for rates()

    # --- Forward Open / Close ----------------------------------------------------------------------

    def forward_open(self, service: int, request: cip.ForwardOpen, peer: str,
                     items: Iterable[cpf.Item] = ()) -> tuple[bytes, list[cpf.Item]]:
        """The CIP reply to a Class 0/1 Forward Open, and the CPF items to add to its reply."""
        triad = (request.serial, request.vendor, request.originator_serial)
        try:
            connection = self._open(request, peer, items)
        except Refused as exc:
            self.refused += 1
            log.info("Forward Open %s from %s refused: 0x%04x %s", triad, peer, exc.ext[0], exc)
            failure = cip.ForwardOpenFailure(*triad).encode()
            return Reply(service, Status.CONNECTION_FAILURE, exc.ext, failure).encode(), []
        self.by_o_t[connection.o_t] = connection
        self.by_triad[triad] = connection
        for hook in self.on_open:
            hook(connection)
        log.info("I/O connection %s (%s) from %s: O->T 0x%08x, T->O 0x%08x to %s", triad, connection.kind,
                 peer, connection.o_t, connection.t_o, connection.destination or "the O->T source")
        reply = cip.ForwardOpenReply(connection.o_t, connection.t_o, *triad, request.o_t_rpi, request.t_o_rpi)
        extra = []
        if self.policy.io_port != IO_PORT:  # only a port other than 2222 needs saying
            extra.append(cpf.Item(cpf.SOCKADDR_O_T, encode_sockaddr(Sockaddr(self.policy.io_host,
                                                                               self.policy.io_port))))
        return Reply(service, 0, (), reply.encode()).encode(), extra

    def _open(self, request: cip.ForwardOpen, peer: str, items: Iterable[cpf.Item]) -> IOConnection:
        triad = (request.serial, request.vendor, request.originator_serial)
        if triad in self.by_triad:
            raise Refused(EXT_CONNECTION_IN_USE, "connection triad already in use")
        if len(self.by_o_t) >= self.policy.max_connections:
            raise Refused(EXT_OUT_OF_CONNECTIONS, "out of connections")
        transport = Transport.decode(request.transport)
        if transport.cls not in (0, 1) or transport.trigger != 0:
            raise Refused(EXT_TRANSPORT_NOT_SUPPORTED,
                          f"transport 0x{request.transport:02x} (cyclic class 0/1 only)")
        large = request.large
        o_t = NetworkParams.decode(request.o_t_params, large)
        t_o = NetworkParams.decode(request.t_o_params, large)
        if o_t.kind not in (NULL, POINT_TO_POINT) or t_o.kind not in (NULL, POINT_TO_POINT):
            raise Refused(EXT_INVALID_CONNECTION_TYPE, "connection type: point-to-point only (no multicast)")
        config, points, data = _application_path(request.path)
        consumed, produced = self._points(points, o_t, t_o)
        if config is not None:
            self._configure(config, data)
        kind = "owner"
        if consumed is not None and consumed.kind in ("input-only", "listen-only"):
            kind, consumed = consumed.kind, None
        elif consumed is None and o_t.kind == NULL:
            kind = "input-only"
        if produced is None and kind != "owner":
            raise Refused(EXT_INVALID_CONNECTION_POINT, f"a {kind} connection needs an input assembly")
        self._check_rpis((request.o_t_rpi, o_t), (request.t_o_rpi, t_o))
        overhead = (2 if transport.cls == 1 else 0)
        slack = overhead if self.policy.lenient_sizes else 0
        if kind == "owner":
            header = transport.cls == 1
            want_o_t = (consumed.size if consumed else 0) + overhead + (4 if header else 0)
            fits = o_t.size in (want_o_t, want_o_t - slack) or (o_t.variable and o_t.size >= want_o_t)
        else:  # a heartbeat: no data, with or without the sequence count and run/idle header
            header = transport.cls == 1 and o_t.size == 6
            want_o_t = overhead
            fits = o_t.size in (0, overhead, overhead + 4)
        if o_t.kind != NULL and not fits:
            raise Refused(EXT_INVALID_CONNECTION_SIZE, f"O->T size {o_t.size}, expected {want_o_t}", want_o_t)
        want_t_o = (produced.size if produced else 0) + overhead
        if t_o.kind != NULL and t_o.size not in (want_t_o, want_t_o - slack) and not (
                t_o.variable and t_o.size >= want_t_o):
            raise Refused(EXT_INVALID_CONNECTION_SIZE, f"T->O size {t_o.size}, expected {want_t_o}", want_t_o)
        owned = consumed is not None and any(c.consumed is consumed for c in self.by_o_t.values())
        if kind == "owner" and owned:
            raise Refused(EXT_OWNERSHIP_CONFLICT, f"assembly {consumed.instance} already has an owner")
        if kind == "listen-only" and not any(
                c.produced is produced and c.kind != "listen-only" for c in self.by_o_t.values()):
            raise Refused(EXT_NO_OWNER, f"no connection produces assembly {produced.instance} yet")  # type: ignore[union-attr]
        o_t_rpi = request.o_t_rpi / 1e6
        watched = o_t_rpi if o_t.kind != NULL else request.t_o_rpi / 1e6
        return IOConnection(
            o_t=next(self._ids) & 0xFFFFFFFF, t_o=request.t_o_connection, triad=triad, kind=kind,
            consumed=consumed, produced=produced if t_o.kind != NULL else None,
            o_t_rpi=o_t_rpi, t_o_rpi=request.t_o_rpi / 1e6,
            o_t_size=want_o_t if kind == "owner" else o_t.size, t_o_size=t_o.size,
            transport=transport.cls, header=header,
            timeout=timeout_multiplier(request.multiplier) * watched,
            peer=peer, destination=self._destination(peer, items))

    def _check_rpis(self, *directions: tuple[int, NetworkParams]) -> None:
        """Refuse an RPI outside the policy's range with 0x0112 "RPI value(s) not acceptable"
        and the five words that follow it in the CIP Vol 1 failure reply: the acceptable O->T
        and T->O RPI types (a USINT each: 0 acceptable, 2 the minimum, 3 the maximum) and
        the acceptable O->T and T->O RPIs (a UDINT each, microseconds)."""
        low, high = self.policy.rpi_min, self.policy.rpi_max
        types, values, wrong = [], [], []
        for rpi, params in directions:
            if params.kind == NULL or low <= rpi <= high:
                types.append(RPI_ACCEPTABLE)
                values.append(rpi if params.kind != NULL else 0)
            else:
                types.append(RPI_MINIMUM if rpi < low else RPI_MAXIMUM)
                values.append(low if rpi < low else high)
                wrong.append(rpi)
        if wrong:
            words = rpi_refusal_words(*types, *values)
            raise Refused(EXT_RPI_NOT_ACCEPTABLE, f"RPI {wrong[0]} us outside {low}-{high} us", *words)

    def _points(self, points: list[int], o_t: NetworkParams,
                t_o: NetworkParams) -> tuple[Assembly | None, Assembly | None]:
        """(consumed, produced) assemblies from the path's connection points."""
        if len(points) == 1:  # one point: the direction that is not null uses it
            points = [points[0], points[0]] if o_t.kind != NULL and t_o.kind != NULL else (
                [points[0], -1] if t_o.kind == NULL else [-1, points[0]])
        if len(points) != 2:
            raise Refused(EXT_INVALID_SEGMENT, f"{len(points)} connection points (1 or 2)")
        found = []
        for point, params, wanted in ((points[0], o_t, ("out", "input-only", "listen-only")),
                                      (points[1], t_o, ("in",))):
            if point < 0 or params.kind == NULL:
                found.append(None)
                continue
            assembly = self.assemblies.get(point)
            if assembly is None or assembly.kind not in wanted:
                raise Refused(EXT_INVALID_CONNECTION_POINT, f"no {'/'.join(wanted)} assembly {point}")
            found.append(assembly)
        return found[0], found[1]

    def _configure(self, instance: int, data: bytes) -> None:
        assembly = self.assemblies.get(instance)
        if assembly is None or assembly.kind != "config":
            if not data and assembly is None:
                return  # a config point of no data that we do not have: nothing to apply
            raise Refused(EXT_INVALID_CONFIGURATION, f"no configuration assembly {instance}")
        if data:
            if len(data) != assembly.size:
                raise Refused(EXT_INVALID_CONNECTION_SIZE, f"configuration of {len(data)} bytes, expected "
                                                           f"{assembly.size}", assembly.size)
            assembly.write(data)

    def _destination(self, peer: str, items: Iterable[cpf.Item]) -> tuple[str, int] | None:
        for item in items:
            if item.type_id == cpf.SOCKADDR_T_O:
                try:
                    addr = decode_sockaddr(item.data)
                except CodecError:
                    raise Refused(EXT_INVALID_SEGMENT, "bad T->O Sockaddr Info item") from None
                return (peer if addr.host == "0.0.0.0" else addr.host), addr.port
        if self.policy.t_o_port == SOURCE:
            return None
        return peer, int(self.policy.t_o_port)

    def forward_close(self, request: cip.ForwardClose) -> bytes | None:
        """The reply to a Forward Close of one of our connections; None if it is not ours."""
        triad = (request.serial, request.vendor, request.originator_serial)
        connection = self.by_triad.get(triad)
        if connection is None:
            return None
        self.close(connection, "closed")
        return Reply(cip.Service.FORWARD_CLOSE, 0, (), cip.ForwardCloseReply(*triad).encode()).encode()

    def close(self, connection: IOConnection, why: str) -> None:
        if self.by_o_t.pop(connection.o_t, None) is None:
            return
        self.by_triad.pop(connection.triad, None)
        connection.closed = why
        self.closed = [*self.closed[-15:], connection]
        self.timed_out += why == "timed out"
        for name in COUNTERS:
            self._gone[name] += getattr(connection, name)
        log.info("I/O connection %s %s", connection.triad, why)
        for hook in self.on_close:
            hook(connection)
        if connection.kind != "listen-only" and connection.produced is not None:
            produced = connection.produced
            if not any(c.produced is produced and c.kind != "listen-only" for c in self.by_o_t.values()):
                for other in [c for c in self.by_o_t.values() if c.produced is produced]:
                    self.close(other, "owner gone")

    def counters(self) -> dict[str, int]:
        """Totals since start: packets ``sent`` (T->O), ``received`` (O->T), ``late``,
        ``missing``, ``dropped``; open ``connections``, ``refused`` Forward Opens, ``timed_out``."""
        totals = dict(self._gone)
        for connection in self.by_o_t.values():
            for name in COUNTERS:
                totals[name] += getattr(connection, name)
        return {"connections": len(self.by_o_t), **totals, "refused": self.refused,
                "timed_out": self.timed_out}

    def sample(self, now: float) -> None:
        """Note the packet totals (at most once a second; the I/O scheduler calls this), for
        ``rates()`` over the last RATE_WINDOW seconds."""
        samples = self._samples
        if samples and now - samples[-1][0] < 1.0:
            return
        totals = self.counters()
        samples.append((now, totals["received"], totals["sent"]))
        while len(samples) > 2 and now - samples[1][0] >= RATE_WINDOW:
            samples.popleft()

    def rates(self) -> tuple[float, float]:
        """(O->T packets received, T->O packets sent) per second over the samples' span (up
        to RATE_WINDOW seconds, to the last sample); 0.0 before two samples."""
        if len(self._samples) < 2:
            return 0.0, 0.0
        (t0, in0, out0), (t1, in1, out1) = self._samples[0], self._samples[-1]
        return (in1 - in0) / (t1 - t0), (out1 - out0) / (t1 - t0)

    # --- data ---------------------------------------------------------------------------------------

    def consume(self, packet: Packet, sender: tuple[str, int], now: float) -> IOConnection | None:
        """Take an O->T packet; returns its connection, or None if it was dropped."""
        connection = self.by_o_t.get(packet.connection)
        if connection is None:
            return None
        if sender[0] != connection.peer:
            return None  # not from the originator that opened it
        data = packet.data
        if len(data) != connection.o_t_size:
            connection.dropped += 1  # not this connection's size
            return None
        if connection.o_t_sequence >= 0:
            gap = sequence_gap(connection.o_t_sequence, packet.sequence)
            if gap is None:  # a duplicate, an old packet, or a stray far ahead of this connection's
                connection.dropped += 1
                return None
            connection.missing += gap
        if connection.transport == 1 and len(data) >= 2:
            sequence, run, data = decode_data(data, connection.header)
            if run is not None:
                connection.run = run
            fresh = sequence != connection.cip_sequence
            connection.cip_sequence = sequence
        else:
            fresh = True
        if connection.last and now - connection.last > 1.5 * connection.o_t_rpi:
            connection.late += 1
        connection.o_t_sequence = packet.sequence
        connection.last = now
        connection.received += 1
        if connection.destination is None:
            connection.destination = sender
        if fresh and connection.consumed is not None and (connection.run or not connection.header):
            try:
                connection.consumed.write(data)
            except Exception as exc:  # a tag refused the value (a user hook): the others go on
                connection.dropped += 1
                log.debug("O->T data of connection 0x%08x not applied: %s", connection.o_t, exc)
        return connection

    def produce(self, connection: IOConnection) -> tuple[int, int, bytes]:
        """(T->O connection id, encapsulation sequence, data) of the next T->O packet."""
        connection.t_o_sequence = (connection.t_o_sequence + 1) & 0xFFFFFFFF
        data = connection.produced.read() if connection.produced is not None else b""
        if connection.transport == 1:
            connection.t_o_cip = (connection.t_o_cip + 1) & 0xFFFF
            data = encode_data(connection.t_o_cip, data)
        connection.sent += 1
        return connection.t_o, connection.t_o_sequence, data

    def expired(self, now: float) -> list[IOConnection]:
        """Close (and return) the connections whose O->T data stopped for their timeout."""
        gone = [c for c in self.by_o_t.values() if now >= c.deadline()]
        for connection in gone:
            self.close(connection, "timed out")
        return gone


def _application_path(path: tuple) -> tuple[int | None, list[int], bytes]:
    """(config instance, connection points, config data) of ``[port...] [key] @4/<inst>/<cp>[/<cp>]
    [data]`` (raises Refused 0x0315 for anything else)."""
    segments = [s for s in path if not isinstance(s, (Port, Key))]
    data = b""
    if segments and isinstance(segments[-1], Data):
        data = segments.pop().data
    if (len(segments) < 2 or not isinstance(segments[0], Logical) or segments[0].kind != "class"
            or segments[0].value != 4):
        raise Refused(EXT_INVALID_SEGMENT, "the connection path must name the Assembly class (@4)")
    config = None
    points = []
    for seg in segments[1:]:
        if not isinstance(seg, Logical):
            raise Refused(EXT_INVALID_SEGMENT, f"unexpected segment {seg} in the connection path")
        if seg.kind == "instance" and config is None and not points:
            config = seg.value
        elif seg.kind in ("connection_point", "instance"):
            points.append(seg.value)
        else:
            raise Refused(EXT_INVALID_SEGMENT, f"unexpected {seg.kind} segment in the connection path")
    if not points and config is not None:  # @4/<instance> alone: that instance is the point
        points, config = [config], None
    return config, points, data


STATISTICS_CLASS = 0x3A0  # vendor-specific: this adapter's I/O counters, instance 1
STATISTICS = ("connections", "sent", "received", "late", "missing", "dropped", "refused", "timed_out")


class _Counter(Attribute):
    """A read-only UDINT attribute showing one of a ConnectionManager's counters."""

    def __init__(self, manager: ConnectionManager, name: str) -> None:
        super().__init__(f"io.{name}", UDINT)
        self.manager, self.counter = manager, name
        self.mask = 1

    def __getitem__(self, key: int | slice) -> Any:
        self._validate_key(key)
        return [self.manager.counters()[self.counter] & 0xFFFFFFFF][key]


def install_statistics(device: Device, manager: ConnectionManager) -> None:
    """Show ``manager.counters()`` as ``@0x3A0/1/<n>`` (UDINT, n = 1 + index in STATISTICS):
    any EtherNet/IP client (``enip_get_attribute '@0x3A0/1/1'``, the fleet's poller) reads an
    adapter's open connections, packets sent and received, late, missing and dropped packets,
    refused Forward Opens and timeouts."""
    counters = {n + 1: _Counter(manager, name) for n, name in enumerate(STATISTICS)}
    device.objects[(STATISTICS_CLASS, 1)] = counters
