"""Fuzzing live servers: batches of mutated valid frames over many connections at once, with
a well-behaved probe client between batches.  Used by ``tests/test_server_fuzz.py`` (a short
run) and ``benchmarks/fuzz_servers.py`` (a long one, reporting figures).

Every byte a server sends back must frame as whole, plausible replies (encapsulation headers
with a status a device gives; MBAP frames answering the function asked or its exception),
and the probe must get the right answer every time; ``FuzzResult`` holds the figures.
"""

from __future__ import annotations

import random
import selectors
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cpppo.enip.codec import cip, cpf, encapsulation, logix
from cpppo.enip.codec.encapsulation import Command
from cpppo.enip.codec.epath import Logical, Port, Symbolic
from cpppo.modbus import framer
from tests.test_enip_codec_fuzz import mutate

IDENTITY = (Logical("class", 1), Logical("instance", 1))
ENIP_STATUSES = {0x0000, 0x0001, 0x0002, 0x0003, 0x0064, 0x0065, 0x0069}
MODBUS_PROBE = (bytes.fromhex("04 0000 0001"), bytes.fromhex("04 02 0005"))  # 30001 (read-only) holds 5


def rss(pid: int | None = None) -> int:
    """Resident set size of ``pid`` (default: this process), bytes."""
    for line in Path(f"/proc/{pid or 'self'}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


@dataclass
class FuzzResult:
    kind: str
    frames: int = 0            # mutated frames sent
    batches: int = 0
    connections: int = 0
    replies: int = 0           # whole replies framed from what came back
    seconds: float = 0.0
    probe_latencies: list[float] = field(default_factory=list)
    rss_before: int = 0
    rss_after: int = 0

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0

    @property
    def worst_probe(self) -> float:
        return max(self.probe_latencies, default=0.0)

    @property
    def p99_probe(self) -> float:
        ordered = sorted(self.probe_latencies)
        return ordered[int(len(ordered) * 0.99)] if ordered else 0.0


# --- EtherNet/IP -----------------------------------------------------------------------------------

def _read(name: str, element: int | None = None, count: int = 1) -> bytes:
    path = (Symbolic(name),) + ((Logical("element", element),) if element is not None else ())
    return cip.Request(cip.Service.READ_TAG, path, logix.ReadTag(count).encode()).encode()


def enip_messages() -> list[bytes]:
    """Valid CIP requests for a device with SCADA=INT[100] (direct, routed, multiple)."""
    direct = [_read("SCADA", 1, 3), _read("SCADA", 0, 100),
              cip.Request(0x4D, (Symbolic("SCADA"), Logical("element", 2)),
                          logix.WriteTag(0xC3, 2, b"\1\0\2\0").encode()).encode(),
              cip.Request(0x52, (Symbolic("SCADA"),), logix.ReadTagFragmented(100, 20).encode()).encode(),
              cip.Request(0x0E, (*IDENTITY, Logical("attribute", 7))).encode(),
              cip.Request(0x01, IDENTITY).encode(),
              cip.Request(0x55, (Logical("class", 0x6B), Logical("instance", 0)),
                          logix.GetInstanceAttributeList((1, 2, 8)).encode()).encode()]
    routed = [cip.UnconnectedSend(m, (Port(1, 0),)).request().encode() for m in direct]
    multiple = cip.Request(0x0A, cip.MESSAGE_ROUTER_PATH, cip.encode_multiple(direct[:3])).encode()
    forward_open = cip.ForwardOpen(t_o_connection=1, serial=2, path=(Port(1, 0), Logical("class", 2),
                                                                     Logical("instance", 1)))
    return direct + routed + [multiple, forward_open.request().encode()]


def enip_frames(session: int) -> list[bytes]:
    """Whole encapsulated requests on registered session ``session``."""
    frames = [encapsulation.encode(Command.SEND_RR_DATA, cpf.encode_rr_data(m), session=session)
              for m in enip_messages()]
    frames.append(encapsulation.encode(Command.SEND_UNIT_DATA, cpf.encode_unit_data(5, 1, _read("SCADA")),
                                       session=session))
    for command in (Command.LIST_IDENTITY, Command.LIST_SERVICES, Command.LIST_INTERFACES, Command.NOP):
        frames.append(encapsulation.encode(command, session=session))
    return frames


def enip_check(data: bytes) -> int:
    """The number of replies in ``data``; AssertionError if it is not whole, plausible replies."""
    count = 0
    while data:
        consumed, header, _payload = encapsulation.decode(data)
        assert consumed, f"partial or malformed ENIP reply {data[:32].hex()}"
        assert header.status in ENIP_STATUSES, f"ENIP reply status 0x{header.status:04x}"
        data = data[consumed:]
        count += 1
    return count


class EnipProbe:
    """A registered session reading SCADA[0] (routed) and checking the answer."""

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reply = self._exchange(encapsulation.encode(Command.REGISTER_SESSION,
                                                    encapsulation.register_session_data()))
        self.session = reply[0].session
        send = cip.UnconnectedSend(_read("SCADA", 0), (Port(1, 0),)).request().encode()
        self.request = encapsulation.encode(Command.SEND_RR_DATA, cpf.encode_rr_data(send),
                                            session=self.session)

    def _exchange(self, frame: bytes) -> tuple[encapsulation.Header, bytes]:
        self.sock.sendall(frame)
        buffer = b""
        while True:
            consumed, header, payload = encapsulation.decode(buffer)
            if consumed:
                return header, payload
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the probe's connection was closed")
            buffer += chunk

    def __call__(self) -> float:
        start = time.perf_counter()
        header, payload = self._exchange(self.request)
        elapsed = time.perf_counter() - start
        reply = cip.Reply.decode(cpf.decode_rr_data(payload).data)
        assert header.status == 0 and reply.status == 0 and len(reply.data) == 4, reply
        return elapsed

    def close(self) -> None:
        self.sock.close()


def _register(sock: socket.socket) -> int:
    sock.sendall(encapsulation.encode(Command.REGISTER_SESSION, encapsulation.register_session_data()))
    buffer = b""
    while len(buffer) < 28:
        chunk = sock.recv(64)
        if not chunk:
            raise ConnectionError("closed while registering")
        buffer += chunk
    return struct.unpack_from("<I", buffer, 4)[0]


# --- Modbus ----------------------------------------------------------------------------------------

MODBUS_PDUS = [bytes.fromhex(h) for h in (
    "01 0000 0010", "02 0000 0008", "03 0000 000a", "04 0000 0005", "05 0003 ff00", "06 0004 1234",
    "0f 0000 0010 02 ffff", "10 0000 0002 04 00010002", "16 0000 fff0 0005", "17 0000 0002 0010 0001 02 0007",
    "2b 0e 01 00", "03 0062 0004", "41 0000")]


def modbus_frames() -> list[bytes]:
    return [framer.encode(n, 1, pdu) for n, pdu in enumerate(MODBUS_PDUS)]


def modbus_check(data: bytes) -> int:
    count = 0
    while data:
        consumed, header, pdu = framer.decode(data)
        assert consumed, f"partial or malformed Modbus reply {data[:32].hex()}"
        assert header.protocol_id == 0 and pdu, data[:32].hex()
        if pdu[0] & 0x80:
            assert len(pdu) == 2 and 1 <= pdu[1] <= 0x0B, f"exception reply {pdu.hex()}"
        data = data[consumed:]
        count += 1
    return count


class ModbusProbe:
    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.tid = 0

    def __call__(self) -> float:
        self.tid = (self.tid + 1) & 0xFFFF
        request, expected = MODBUS_PROBE
        start = time.perf_counter()
        self.sock.sendall(framer.encode(self.tid, 1, request))
        buffer = b""
        while len(buffer) < 6 + 1 + len(expected):
            chunk = self.sock.recv(256)
            if not chunk:
                raise ConnectionError("the probe's connection was closed")
            buffer += chunk
        elapsed = time.perf_counter() - start
        _, header, pdu = framer.decode(buffer)
        assert header.transaction_id == self.tid and pdu == expected, buffer.hex()
        return elapsed

    def close(self) -> None:
        self.sock.close()


# --- the run ---------------------------------------------------------------------------------------

def _variant(kind: str, rng: random.Random, frame: bytes) -> bytes:
    """``frame`` as it is (10%), with its header mutated too (5%: the stream is then lost,
    and the connection closed), or with a mutated body under a header that frames it."""
    choice = rng.random()
    if choice < 0.1:
        return frame
    if choice < 0.15:
        return mutate(rng, frame)
    if kind == "enip":
        _, header, payload = encapsulation.decode(frame)
        body = mutate(rng, payload)[:4000]
        return encapsulation.encode(header.command, body, session=header.session, context=header.context)
    _, header, pdu = framer.decode(frame)
    body = mutate(rng, pdu)[:framer.MAX_PDU] or pdu
    return framer.encode(header.transaction_id, header.unit_id, body)


def _batch(kind: str, host: str, port: int, rng: random.Random, connections: int, per_connection: int,
           result: FuzzResult) -> None:
    """``connections`` connections at once, each sending ``per_connection`` frames (most of
    them mutated) then half-closing; every reply read back and checked."""
    socks = []
    try:
        for _ in range(connections):
            sock = socket.create_connection((host, port), timeout=10)
            socks.append(sock)
            seeds = enip_frames(_register(sock)) if kind == "enip" else modbus_frames()
            frames = [_variant(kind, rng, rng.choice(seeds)) for _ in range(per_connection)]
            try:
                sock.sendall(b"".join(frames))
                sock.shutdown(socket.SHUT_WR)
            except OSError:  # the server closed it (an impossible length, say): fine
                pass
            result.frames += per_connection
        result.connections += connections
        received = {sock: bytearray() for sock in socks}
        with selectors.DefaultSelector() as sel:
            for sock in socks:
                sock.setblocking(False)
                sel.register(sock, selectors.EVENT_READ)
            deadline = time.monotonic() + 10.0
            while sel.get_map() and time.monotonic() < deadline:
                for key, _ in sel.select(0.5):
                    try:
                        chunk = key.fileobj.recv(65536)
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError:
                        chunk = b""
                    if chunk:
                        received[key.fileobj] += chunk
                    else:
                        sel.unregister(key.fileobj)
            assert not sel.get_map(), "a fuzzed connection neither answered nor closed in 10 s"
        check = enip_check if kind == "enip" else modbus_check
        for data in received.values():
            result.replies += check(bytes(data))
    finally:
        for sock in socks:
            sock.close()
    result.batches += 1


def fuzz(kind: str, host: str, port: int, *, seconds: float, max_frames: int, seed: int = 12,
         connections: int = 16, per_connection: int = 40, server_rss: Callable[[], int] = rss,
         progress: Callable[[FuzzResult], None] | None = None) -> FuzzResult:
    """Fuzz the ``kind`` ("enip" or "modbus") server on (host, port) for ``seconds`` or
    ``max_frames`` frames, probing between batches."""
    rng = random.Random(seed)
    probe = (EnipProbe if kind == "enip" else ModbusProbe)(host, port)
    result = FuzzResult(kind)
    try:
        result.probe_latencies.append(probe())
        result.rss_before = server_rss()
        start = time.monotonic()
        while time.monotonic() - start < seconds and result.frames < max_frames:
            _batch(kind, host, port, rng, connections, per_connection, result)
            result.probe_latencies.append(probe())
            result.seconds = time.monotonic() - start
            if progress is not None:
                progress(result)
        result.seconds = time.monotonic() - start
        result.rss_after = server_rss()
    finally:
        probe.close()
    return result
