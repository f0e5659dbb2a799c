"""Issue 12's defects, each as a regression test: a route nested hundreds deep is refused
cheaply and without a traceback; a client that never reads its replies does not grow the
server; idle (or one-byte-at-a-time) connections do not lock new clients out, on the
protocol ports nor on a web port (the ENIP server's web API, the fleet page, a worker's
/metrics: one ``cpppo.server.aioweb`` site)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import resource
import select
import socket
import time
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

from cpppo.enip.codec import cip, cpf, encapsulation, logix
from cpppo.enip.codec.encapsulation import Command
from cpppo.enip.codec.epath import Logical, Port, Symbolic
from cpppo.enip.device.dispatch import MAX_ROUTE_HOPS, Dispatcher, Session
from cpppo.enip.device.model import Device
from cpppo.enip.server.background import serve_in_thread
from cpppo.enip.server.transport import Settings
from cpppo.modbus.server import ServerSettings
from cpppo.server.aioweb import start_site
from tests.support import free_port, python_module, running
from tests.test_enip_server import Wire, read
from tests.test_modbus_support import HOST, exchange, frame, simulator

UCS = cip.Service.UNCONNECTED_SEND
MSP = cip.Service.MULTIPLE_SERVICE_PACKET
ROUTER = (Logical("class", 2), Logical("instance", 1))


def nested(depth: int, route: tuple = ()) -> bytes:
    """Read Tag SCADA[0] wrapped in ``depth`` Unconnected Sends."""
    message = read("SCADA", 0).encode()
    for _ in range(depth):
        message = cip.UnconnectedSend(message, route).request().encode()
    return message


def alternating(depth: int) -> bytes:
    """Unconnected Send and Multiple Service Packet wrapped alternately ``depth`` times each."""
    message = read("SCADA", 0).encode()
    for _ in range(depth):
        message = cip.UnconnectedSend(message, ()).request().encode()
        message = cip.Request(MSP, ROUTER, cip.encode_multiple([message])).encode()
    return message


def cpu_per_request(dispatcher: Dispatcher, message: bytes, count: int = 300) -> float:
    session = Session()
    start = time.process_time()
    for _ in range(count):
        dispatcher.unconnected(message, session)
    return (time.process_time() - start) / count


def test_deep_routes_are_refused_like_a_controller():
    dispatcher = Dispatcher(Device.from_specs(["SCADA=INT[10]"]))
    assert cip.Reply.decode(dispatcher.unconnected(nested(MAX_ROUTE_HOPS), Session())).status == 0
    for message in (nested(MAX_ROUTE_HOPS + 1), nested(300), nested(2, (Port(1, 0),) * 5)):
        reply = cip.Reply.decode(dispatcher.unconnected(message, Session()))
        assert (reply.service, reply.status, reply.ext_status) == (UCS, 0x01, (0x0315,))
    reply = cip.Reply.decode(dispatcher.unconnected(alternating(300), Session()))
    assert reply.service == MSP and reply.status == 0x1E


def test_deep_route_costs_about_what_a_normal_request_costs():
    """Under a millisecond of CPU, and within a small factor of one normal routed read
    (before the fix: ~15 ms, 75 times a normal request, through a RecursionError)."""
    dispatcher = Dispatcher(Device.from_specs(["SCADA=INT[10]"]))
    normal = cpu_per_request(dispatcher, nested(1, (Port(1, 0),)))
    deep = max(cpu_per_request(dispatcher, nested(300)), cpu_per_request(dispatcher, alternating(250)))
    assert deep < 1e-3, f"{deep * 1e6:.0f} us per deep request"
    assert deep < 25 * normal, f"deep {deep * 1e6:.0f} us vs normal {normal * 1e6:.0f} us"


def test_deep_route_on_the_wire_logs_one_line_at_most(caplog):
    caplog.set_level(logging.DEBUG)
    with serve_in_thread(Device.from_specs(["SCADA=INT[10]"]), udp=False) as srv:
        wire = Wire(srv.port)
        try:
            for message in (nested(300), alternating(250)) * 3:
                reply = wire.rr(message)
                assert reply.status in (0x01, 0x1E)
            assert wire.routed(read("SCADA", 0)).status == 0
        finally:
            wire.close()
    assert not [r for r in caplog.records if r.exc_info], "a client's request printed a traceback"
    for record in caplog.records:
        assert "\n" not in record.getMessage() and len(record.getMessage()) < 400


# --- backpressure ----------------------------------------------------------------------------------

def rss(pid: int) -> int:
    """Resident set size of ``pid``, bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def large_connection(wire: Wire) -> int:
    """Open a 4000-byte Large Forward Open connection; its O->T connection id."""
    fo = cip.ForwardOpen(t_o_connection=0x7777, serial=wire.session & 0xFFFF, vendor=0x1337,
                         originator_serial=9, o_t_params=0x42000FA0, t_o_params=0x42000FA0, large=True,
                         path=(Port(1, 0), *ROUTER))
    reply = wire.rr(fo.request().encode())
    assert reply.status == 0
    return cip.ForwardOpenReply.decode(reply.data).o_t_connection


def flood(socks: list[socket.socket], frames: list[bytes], seconds: float, limit: int) -> int:
    """Send each socket its frame over and over, never reading, for ``seconds`` or ``limit``
    frames per socket, or until the server has taken nothing for a second; the bytes sent."""
    for sock in socks:
        sock.setblocking(False)
    sent = dict.fromkeys(socks, 0)
    pending = {sock: b"" for sock in socks}
    deadline = time.monotonic() + seconds
    progress = time.monotonic()
    burst = {sock: frame_ * 64 for sock, frame_ in zip(socks, frames, strict=True)}
    budget = {sock: limit * len(frame_) for sock, frame_ in zip(socks, frames, strict=True)}
    while time.monotonic() < min(deadline, progress + 1.0):
        writable = [s for s in socks if sent[s] < budget[s]]
        if not writable:
            break
        _, ready, _ = select.select([], writable, [], 0.1)
        for sock in ready:
            data = pending[sock] or burst[sock]
            try:
                n = sock.send(data)
            except BlockingIOError:
                continue
            sent[sock] += n
            pending[sock] = data[n:]
            progress = time.monotonic()
    return sum(sent.values())


def test_clients_that_never_read_do_not_grow_the_server():
    port = free_port()
    argv = python_module("cpppo.server.enip", "-a", f"127.0.0.1:{port}", "SCADA=INT[1000]")
    with running(argv, listen=("127.0.0.1", port)) as proc:
        hogs = [Wire(port) for _ in range(2)]
        probe = Wire(port)
        try:
            frames = []
            for hog in hogs:
                hog.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                hog.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
                connection = large_connection(hog)
                unit = cpf.encode_unit_data(connection, 1, read("SCADA", 0, 1000).encode())
                frames.append(encapsulation.encode(Command.SEND_UNIT_DATA, unit, session=hog.session))
            assert probe.routed(read("SCADA", 0)).status == 0
            before = rss(proc.pid)
            # unbounded, the server would queue about 2 KB of reply per 70-byte request: 150 MB
            sent = flood([hog.sock for hog in hogs], frames, seconds=4.0, limit=400_000)
            after = rss(proc.pid)
            assert probe.routed(read("SCADA", 0)).status == 0  # others are still served
        finally:
            for wire in (*hogs, probe):
                wire.close()
    growth = after - before
    assert sent > 100_000, "the flood did not get going"
    assert growth < 24 << 20, f"server grew {growth / 1e6:.1f} MB (from {before / 1e6:.1f} MB)"


def test_modbus_clients_that_never_read_do_not_grow_the_server():
    port = free_port()
    argv = python_module("cpppo.bin.modbus_sim", "-a", f"127.0.0.1:{port}", "40001-40125=99")
    probe = frame(1, 1, bytes.fromhex("03 0000 0001"))
    with running(argv, listen=("127.0.0.1", port)) as proc:
        hogs = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(2)]
        try:
            for hog in hogs:
                hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            request = frame(7, 1, bytes.fromhex("03 0000 007d"))  # 12 bytes asking for 259
            assert exchange(port, probe, timeout=10, expect=11)[7:] == bytes.fromhex("03 02 0063")
            before = rss(proc.pid)
            sent = flood(hogs, [request, request], seconds=4.0, limit=400_000)
            after = rss(proc.pid)
            assert exchange(port, probe, timeout=10, expect=11)[7:] == bytes.fromhex("03 02 0063")
        finally:
            for hog in hogs:
                hog.close()
    growth = after - before
    assert sent > 100_000, "the flood did not get going"
    assert growth < 24 << 20, f"server grew {growth / 1e6:.1f} MB (from {before / 1e6:.1f} MB)"


# --- idle connections ------------------------------------------------------------------------------

@contextlib.contextmanager
def descriptors(needed: int) -> Iterator[None]:
    """This process's own descriptor limit raised to ``needed`` for the block (skip if the
    hard limit forbids it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"needs {needed} file descriptors, the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, needed), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@contextlib.contextmanager
def idle_crowd(port: int, count: int, partial: bytes) -> Iterator[list[socket.socket]]:
    """``count`` connections to ``port``: half silent, half having sent one byte of a request
    (as a slow client keeping itself alive would); all closed afterwards."""
    socks: list[socket.socket] = []
    try:
        for n in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            socks.append(sock)
            if n % 2:
                sock.send(partial[:1])
        yield socks
    finally:
        for sock in socks:
            sock.close()


def evicted(sock: socket.socket) -> bool:
    """True if the server closed ``sock``."""
    sock.settimeout(5)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def test_enip_serves_a_new_client_while_2000_idle_connections_are_open():
    port = free_port()
    argv = python_module("cpppo.server.enip", "-a", f"127.0.0.1:{port}", "SCADA=INT[10]")
    with descriptors(2200), running(argv, listen=("127.0.0.1", port)), \
            idle_crowd(port, 2000, encapsulation.encode(Command.LIST_IDENTITY)) as crowd:
        wire = Wire(port)
        try:
            assert wire.routed(read("SCADA", 0)).status == 0
        finally:
            wire.close()
        assert evicted(crowd[0]) and evicted(crowd[1])  # the oldest made room (256 by default)


def test_modbus_serves_a_new_client_while_2000_idle_connections_are_open():
    port = free_port()
    argv = python_module("cpppo.bin.modbus_sim", "-a", f"127.0.0.1:{port}", "40001-40010=99")
    request = frame(1, 1, bytes.fromhex("03 0000 0001"))
    with descriptors(2200), running(argv, listen=("127.0.0.1", port)), \
            idle_crowd(port, 2000, request) as crowd:
        answer = exchange(port, request, host=HOST, timeout=10, expect=11)
        assert answer[7:] == bytes.fromhex("03 02 0063")
        assert evicted(crowd[0]) and evicted(crowd[1])


def test_eviction_counts_and_never_served_connections_go_first():
    settings = Settings(max_connections=3)
    with serve_in_thread(Device.from_specs(["SCADA=INT[10]"]), udp=False, settings=settings) as srv:
        served = Wire(srv.port)  # completes a request: evicted after every never-served one
        with idle_crowd(srv.port, 5, b"\0") as crowd:
            assert served.routed(read("SCADA", 0)).status == 0
            assert all(evicted(sock) for sock in crowd[:3])
            assert srv.evictions == 3 and len(srv.sessions) == 3
        served.close()


# --- the bounds keep every reply, in order -------------------------------------------------------

def test_in_flight_bound_pauses_and_resumes_without_losing_replies():
    """With 4 delayed replies in flight at most, 200 pipelined requests are all answered, in order."""
    settings = Settings(max_in_flight=4)
    with serve_in_thread(Device.from_specs(["SCADA=INT[10]"]), udp=False, settings=settings,
                         delay=0.001) as srv:
        wire = Wire(srv.port)
        try:
            payload = cpf.encode_rr_data(read("SCADA", 0).encode())
            wire.sock.sendall(b"".join(
                encapsulation.encode(Command.SEND_RR_DATA, payload, session=wire.session,
                                     context=n.to_bytes(8, "little")) for n in range(200)))
            contexts, buffer = [], b""
            while len(contexts) < 200:
                consumed, header, _ = encapsulation.decode(buffer)
                if consumed:
                    contexts.append(int.from_bytes(header.context, "little"))
                    buffer = buffer[consumed:]
                else:
                    chunk = wire.sock.recv(65536)
                    assert chunk, f"closed after {len(contexts)} replies"
                    buffer += chunk
        finally:
            wire.close()
    assert contexts == list(range(200))


def test_modbus_in_flight_bound_keeps_every_reply():
    request = b"".join(frame(n, 1, bytes.fromhex("03 0000 0001")) for n in range(300))
    with simulator(delay=0.001, settings=ServerSettings(max_in_flight=3)) as (_, server):
        answer = exchange(server.port, request, timeout=10, expect=300 * 11)
    assert [int.from_bytes(answer[n:n + 2], "big") for n in range(0, len(answer), 11)] == list(range(300))


def test_a_server_failure_closes_one_connection_in_one_line(caplog):
    caplog.set_level(logging.DEBUG)
    request = frame(1, 1, bytes.fromhex("03 0000 0001"))
    with simulator() as (_, server):
        handle = server.device.handle
        server.device.handle = lambda unit, pdu: 1 / 0  # a bug in a device, not the client's doing
        assert exchange(server.port, request, timeout=5) == b""
        server.device.handle = handle
        assert exchange(server.port, request, timeout=5, expect=11)[7:] == bytes.fromhex("03 02 0063")
    assert not [r for r in caplog.records if r.exc_info]
    assert any("ZeroDivisionError" in r.getMessage() for r in caplog.records)


def test_error_replies_keep_nothing_of_the_request_alive():
    """An error raised as a shared instance kept every traceback it was raised with (the frames
    and the sessions in them): the ENIP server grew about 3 MB per 60,000 fuzzed frames."""
    dispatcher = Dispatcher(Device.from_specs(["SCADA=INT[10]"]))
    beyond = read("SCADA", 20).encode()
    dint = logix.WriteTag(0xC4, 1, b"\0" * 4).encode()
    mistyped = cip.Request(cip.Service.WRITE_TAG, (Symbolic("SCADA"),), dint)
    refs = []
    for _ in range(50):
        session = Session()
        refs.append(weakref.ref(session))
        for message in (beyond, mistyped.encode()):
            assert cip.Reply.decode(dispatcher.unconnected(message, session)).status == 0xFF
        del session
    gc.collect()
    assert sum(ref() is not None for ref in refs) == 0


# --- web ports ---------------------------------------------------------------------------------------

GET_API = b"GET /api HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"


def web_status(port: int, request: bytes = GET_API) -> bytes:
    """The status line's code of one request to the web port."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        return sock.recv(64).split(b" ")[1]


@contextlib.contextmanager
def soft_descriptors(limit: int) -> Iterator[None]:
    """This process's soft descriptor limit at most ``limit`` for the block (the processes it
    starts keep it: the usual default of 1024, where the machine's is higher)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, limit), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def enip_with_web() -> tuple[list[str], int, int]:
    port, web = free_port(), free_port()
    return python_module("cpppo.server.enip", "-a", f"127.0.0.1:{port}", "-w", f"127.0.0.1:{web}",
                         "SCADA=INT[1000]"), port, web


def test_idle_web_connections_lock_out_neither_the_web_api_nor_enip():
    """1,500 idle connections to the web port of a server with 1,024 descriptors (before the
    cap: every descriptor taken, ENIP and web clients alike closed at once)."""
    argv, port, web = enip_with_web()
    with contextlib.ExitStack() as stack:
        with soft_descriptors(1024):
            proc = stack.enter_context(running(argv, listen=("127.0.0.1", web)))
        stack.enter_context(descriptors(2200))
        crowd = stack.enter_context(idle_crowd(web, 1500, GET_API))
        wire = Wire(port)
        try:
            assert wire.routed(read("SCADA", 0)).status == 0
        finally:
            wire.close()
        assert web_status(web) == b"200"
        assert evicted(crowd[0]) and evicted(crowd[1])  # the oldest made room (128 by default)
        assert len(os.listdir(f"/proc/{proc.pid}/fd")) < 512


def test_enip_server_takes_descriptors_for_both_its_caps():
    """--max-connections 960 with the web API's 128 need more than the usual 1,024 descriptors:
    the server raises its own soft limit to hold both crowds (up to the hard limit)."""
    argv, _, web = enip_with_web()
    argv[argv.index("SCADA=INT[1000]"):] = ["--max-connections", "960", "SCADA=INT[10]"]
    with soft_descriptors(1024), running(argv, listen=("127.0.0.1", web)) as proc:
        limits = Path(f"/proc/{proc.pid}/limits").read_text()
    soft = int(next(line for line in limits.splitlines() if line.startswith("Max open files")).split()[3])
    if resource.getrlimit(resource.RLIMIT_NOFILE)[1] >= 960 + 128 + 64:
        assert soft >= 960 + 128 + 64, limits


def test_web_clients_that_never_read_do_not_grow_the_server():
    """Two clients pipelining requests and never reading the answers: the server reads no
    more than it can answer (aiohttp's bound, and the write buffer's)."""
    argv, _, web = enip_with_web()
    with running(argv, listen=("127.0.0.1", web)) as proc:
        hogs = [socket.create_connection(("127.0.0.1", web), timeout=10) for _ in range(2)]
        try:
            for hog in hogs:
                hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            request = b"GET /api/tags HTTP/1.1\r\nHost: h\r\n\r\n"
            assert web_status(web) == b"200"
            before = rss(proc.pid)
            # unbounded, the server would hold every request and the ~1 KB answer to each: 100s of MB
            sent = flood(hogs, [request, request], seconds=4.0, limit=200_000)
            after = rss(proc.pid)
            assert web_status(web) == b"200"
        finally:
            for hog in hogs:
                hog.close()
    assert sent > 100_000, "the flood did not get going"
    growth = after - before
    assert growth < 24 << 20, f"server grew {growth / 1e6:.1f} MB (from {before / 1e6:.1f} MB)"


def test_a_web_site_evicts_never_served_then_longest_idle_and_keeps_a_live_stream():
    from aiohttp import web

    async def hello(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for _ in range(2000):  # until the client goes (40 s at most)
            await response.write(b"tick\n")
            await asyncio.sleep(0.02)
        return response

    async def get(path: str = "/") -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: h\r\n\r\n".encode())
        await asyncio.wait_for(reader.readuntil(b"ok" if path == "/" else b"tick\n"), 10)
        return reader, writer

    async def closed(reader: asyncio.StreamReader) -> bool:
        try:
            while await asyncio.wait_for(reader.read(65536), 10):
                pass
        except ConnectionResetError:
            pass
        return True

    async def scenario() -> int:
        nonlocal port
        app = web.Application()
        app.router.add_get("/", hello)
        app.router.add_get("/stream", stream)
        runner, _, port = await start_site(app, "127.0.0.1", 0, "test site", max_connections=4)
        try:
            streamer = await get("/stream")  # busy, and reading what it is sent: not idle
            served = await get("/")  # answered, then idle
            silent = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]  # accepted in order
            newer = [await get("/"), await get("/")]  # each evicts a never-served one, oldest first
            assert await closed(silent[0][0]) and await closed(silent[1][0])
            last = await get("/")  # evicts the longest idle: ``served``
            assert await closed(served[0])
            await asyncio.wait_for(streamer[0].readuntil(b"tick\n"), 10)  # still streaming
            assert len(runner.connections) == 4
            for _, writer in (streamer, *newer, last, served, *silent):
                writer.close()
            return runner.connections.evictions
        finally:
            await runner.cleanup()

    port = 0
    assert asyncio.run(scenario()) == 3
