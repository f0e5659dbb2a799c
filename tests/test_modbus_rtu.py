"""Modbus/RTU framing (CRC vectors, frame lengths of every function, resynchronisation on a
noisy line), the line server on a pseudo-terminal, RTU over TCP, the gateway, our masters and
the poller over RTU."""

from __future__ import annotations

import asyncio
import os
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cpppo.modbus import pdu, rtu
from cpppo.modbus.aclient import AsyncModbusClient
from cpppo.modbus.errors import ExceptionResponse, FrameError, ModbusConnectionError
from cpppo.modbus.gateway import ModbusGateway
from cpppo.modbus.rtu_client import AsyncRtuClient, RtuClient
from cpppo.modbus.rtu_server import RtuUnits, serve_rtu_tcp, serve_serial
from cpppo.modbus.serial_line import LineSettings, open_serial
from cpppo.modbus.server import serve
from cpppo.remote.plc_modbus import poller_modbus
from tests.support import free_port
from tests.test_modbus_support import HOST

SPECS = ["40001-40100=99", "1-16=0", "10001-10008=1", "30001-30010=5"]

# Published frames (Modbus over Serial Line v1.02 and the usual vendor examples).
VECTORS = [
    ("01 03 0000 000a", "c5cd"),
    ("11 03 006b 0003", "7687"),
    ("01 06 0001 0003", "980b"),
    ("01 04 0000 0001", "31ca"),
]


@pytest.mark.parametrize(("body", "crc"), VECTORS)
def test_crc_vectors(body, crc):
    data = bytes.fromhex(body)
    assert rtu.encode(data[0], data[1:]).hex() == data.hex() + crc
    assert rtu.split(data + bytes.fromhex(crc)) == (data[0], data[1:])


def test_split_rejects_bad_frames():
    frame = rtu.encode(1, bytes.fromhex("03 0000 0001"))
    with pytest.raises(FrameError, match="CRC"):
        rtu.split(frame[:-1] + bytes([frame[-1] ^ 1]))
    with pytest.raises(FrameError, match="shorter"):
        rtu.split(b"\x01\x03")
    with pytest.raises(FrameError):
        rtu.encode(1, b"")


REQUESTS = [
    pdu.ReadRequest(1, 0, 10), pdu.ReadRequest(2, 0, 8), pdu.ReadRequest(3, 0, 125), pdu.ReadRequest(4, 1, 2),
    pdu.WriteSingleRequest(5, 3, True), pdu.WriteSingleRequest(6, 3, 77),
    pdu.WriteMultipleRequest(15, 0, (True, False, True)), pdu.WriteMultipleRequest(16, 0, (1, 2, 3)),
    pdu.MaskWriteRequest(0, 0xF0, 0x0F), pdu.ReadWriteRequest(0, 2, 1, (7,)), pdu.DeviceIdRequest(1, 0),
]


@pytest.mark.parametrize("request_", REQUESTS, ids=lambda r: f"fc{r.function}")
def test_lengths_of_every_function(request_):
    """Every request and its reply frame is delimited by length, in requests and replies mode."""
    from cpppo.modbus.device import ModbusDevice

    device = ModbusDevice.from_specs(SPECS, identity={"vendor_name": "Acme"})
    request = rtu.encode(1, request_.encode())
    reply = rtu.encode(1, device.handle(1, request_.encode()))
    assert rtu.request_length(request) == len(request)
    assert rtu.response_length(reply) == len(reply)
    for role, frame in ((True, request), (False, reply)):
        decoder = rtu.Decoder(requests=role)
        frames = [f for byte in frame for f in decoder.feed(bytes([byte]), now=0.0)]  # one byte a read
        assert frames == [frame]
    exception = rtu.encode(1, pdu.exception_pdu(request_.function, 2))
    assert rtu.response_length(exception) == 5


def test_garbage_split_frames_and_bad_crc_are_counted():
    good = rtu.encode(1, bytes.fromhex("03 0000 000a"))
    other = rtu.encode(2, bytes.fromhex("06 0001 0003"))
    bad = good[:-1] + bytes([good[-1] ^ 0xFF])
    decoder = rtu.Decoder(requests=True)
    assert decoder.feed(b"\x00\xff\x13\x37", now=0.0) == []             # garbage, waits
    assert decoder.feed(good[:3], now=0.0001) == []                    # a frame split over reads
    assert decoder.feed(good[3:] + bad + other, now=0.0002) == [good, other]
    counters = decoder.counters
    assert (counters.frames, counters.bad_crc, counters.dropped_bytes) == (2, 1, 4 + len(bad))


def test_silence_ends_broken_and_unknown_frames():
    decoder = rtu.Decoder(requests=True, silence=0.002)
    good = rtu.encode(1, bytes.fromhex("03 0000 0001"))
    assert decoder.feed(good[:5], now=1.0) == []                        # the head of a frame ...
    assert decoder.deadline == pytest.approx(1.002)
    assert decoder.feed(good, now=1.010) == [good]                      # ... its tail never came
    assert decoder.counters.broken == 1 and decoder.counters.dropped_bytes == 5
    unknown = rtu.encode(1, bytes.fromhex("41 01 02 03"))               # no length known: silence
    assert decoder.feed(unknown, now=2.0) == []
    assert decoder.expire(2.001) == []                                  # not silent long enough
    assert decoder.expire(2.003) == [unknown]


def test_requests_view_skips_other_devices_replies():
    decoder = rtu.Decoder(requests=True)
    reply = rtu.encode(7, bytes.fromhex("03 06 0001 0002 0003"))        # another slave's reply
    request = rtu.encode(1, bytes.fromhex("03 0000 0001"))
    assert decoder.feed(reply + request, now=0.0) == [request]
    assert decoder.counters.foreign == 1 and decoder.counters.dropped_bytes == 0


def test_random_noise_never_loses_the_following_frame():
    import random

    rng = random.Random(19)
    good = rtu.encode(3, bytes.fromhex("10 0000 0002 04 0001 0002"))
    for _ in range(200):
        decoder = rtu.Decoder(requests=True, silence=0.002)
        noise = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40)))
        got = decoder.feed(noise, now=0.0) + decoder.feed(good, now=0.0005)
        got += decoder.expire(1.0)
        assert got[-1:] == [good] or good in got


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(REQUESTS), st.integers(1, 247)), min_size=1, max_size=8),
       st.lists(st.integers(1, 40), max_size=20), st.booleans())
def test_frames_in_any_chunking_come_out_whole(requests, cuts, as_replies):
    """Back-to-back frames (requests, or the replies a device gives), cut into reads anywhere
    and without a silence between them, come out exactly as sent."""
    from cpppo.modbus.device import ModbusDevice

    device = ModbusDevice.from_specs(SPECS, unit_ids=None)
    frames = []
    for request, unit in requests:
        body = request.encode()
        frames.append(rtu.encode(unit, device.handle(unit, body) if as_replies else body))
    stream = b"".join(frames)
    decoder = rtu.Decoder(requests=not as_replies)
    got, position = [], 0
    for cut in [*cuts, len(stream)]:
        got += decoder.feed(stream[position:position + cut], now=0.0)
        position += cut
    got += decoder.feed(stream[position:], now=0.0)
    assert got == frames
    assert decoder.counters.dropped_bytes == 0


def test_line_settings():
    assert LineSettings.parse("9600", "none", "2").describe() == "9600 8N2"
    assert LineSettings(19200, "N", 1).char_bits == 10
    assert rtu.silences(38400) == (0.00075, 0.00175)
    for args, message in (((0, "E", 1), "bad baud rate"), ((9600, "X", 1), "bad parity"),
                          ((9600, "E", 3), "bad stop bits")):
        with pytest.raises(ValueError, match=message):
            LineSettings.parse(*args)


# -- the line on a pseudo-terminal --------------------------------------------------------------

def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


def units() -> RtuUnits:
    return RtuUnits.from_specs({1: SPECS, 2: ["40001-40010=2"], 3: ["40001-40010=3"]},
                               identity={"vendor_name": "Acme"})


def test_serial_line_multidrop_silent_unit_and_broadcast(tmp_path):
    async def scenario(link):
        line = units()
        server = await serve_serial(line, "pty", LineSettings(19200, "E", 1), link=link)
        try:
            assert os.path.realpath(link) == server.path
            async with AsyncRtuClient.serial(link, unit=1, timeout=1.0) as master:
                assert await master.read_holding_registers(0, 3) == [99, 99, 99]
                for unit in (2, 3):
                    assert await master.request(pdu.ReadRequest(3, 0, 2), unit=unit) == (unit, unit)
                with pytest.raises(TimeoutError, match="unit 9"):
                    await master.request(pdu.ReadRequest(3, 0, 1), unit=9)
                with pytest.raises(ExceptionResponse) as error:
                    await master.read_holding_registers(200, 1)
                assert error.value.code == 2
                await master.request(pdu.WriteSingleRequest(6, 0, 1234), unit=0)    # broadcast
                await master.write_coils(0, [True, False, True])
                assert await master.read_coils(0, 4) == [True, False, True, False]
                assert await master.read_discrete_inputs(0, 2) == [True, True]
                assert await master.read_input_registers(0, 2) == [5, 5]
                await master.mask_write_register(1, 0xFF00, 0x000F)
                assert await master.read_write_registers(1, 1, 2, [7]) == [0x000F]   # (99 & 0xFF00) | 0x0F
                assert (await master.read_device_identification(1))[0] == b"Acme"
                assert await master.transact(1, b"\x41\x00\x01") == b"\xc1\x01"   # ended by silence
            assert [line.devices[u].read(40001) for u in (1, 2, 3)] == [[1234]] * 3
            assert line.not_ours == 1 and line.broadcasts == 1
        finally:
            server.close()
        return server.path

    link = tmp_path / "line0"
    path = run(scenario(str(link)))
    assert not os.path.exists(path) and not os.path.lexists(link)   # the pty is gone with the server


def test_noisy_line_live():
    """Garbage, a frame split over writes and a bad CRC on the line: the server resynchronises,
    answers the good frames and counts what it dropped."""
    async def scenario():
        server = await serve_serial(units(), "pty", LineSettings(300, "N", 1))   # t3.5: 117 ms
        good = rtu.encode(2, bytes.fromhex("03 0000 0002"))
        bad = good[:-1] + bytes([good[-1] ^ 0x5A])
        port = open_serial(server.path, LineSettings(300, "N", 1), timeout=5.0)
        try:
            def master():
                port.write(b"\xde\xad\xbe\xef")                  # garbage
                time.sleep(0.4)                                  # > t3.5
                port.write(bad)                                  # a bad CRC
                time.sleep(0.4)
                port.write(good[:4])                             # a frame split over writes
                time.sleep(0.003)
                port.write(good[4:])
                return port.read(9)
            reply = await asyncio.to_thread(master)
            assert rtu.split(reply) == (2, bytes.fromhex("03 04 0002 0002"))
            counters = server.counters
            assert (counters.frames, counters.bad_crc, counters.dropped_bytes) == (1, 1, 4 + len(bad))
        finally:
            port.close()
            server.close()

    run(scenario())


def test_line_timing_paces_replies():
    async def scenario():
        settings = LineSettings(1200, "N", 1, timing=True)         # 8.3 ms a character
        server = await serve_serial(units(), "pty", settings)
        try:
            async with AsyncRtuClient.serial(server.path, settings, timeout=2.0) as master:
                began = time.monotonic()
                await master.read_holding_registers(0, 10)     # 8 + 25 characters + t3.5
                return time.monotonic() - began, (8 + 25) * settings.char_time + settings.silences[1]
        finally:
            server.close()

    took, wire = run(scenario())
    assert took >= wire


def test_rtu_over_tcp_and_sync_master():
    async def scenario():
        server = await serve_rtu_tcp(units(), HOST, 0)
        try:
            async with AsyncRtuClient.tcp(HOST, server.port, unit=2, timeout=1.0) as master:
                assert await master.read_holding_registers(0, 2) == [2, 2]
                with pytest.raises(TimeoutError):
                    await master.request(pdu.ReadRequest(3, 0, 1), unit=5)

            def blocking():
                client = RtuClient(host=HOST, port=server.port, timeout=1.0)
                try:
                    return client.request(pdu.ReadRequest(3, 0, 3), unit=3)
                finally:
                    client.close()
            assert await asyncio.to_thread(blocking) == (3, 3, 3)
            assert server.counters.frames == 3
        finally:
            server.close()
            await server.wait_closed()

    run(scenario())
    with pytest.raises(ModbusConnectionError, match="cannot connect"):
        RtuClient(host=HOST, port=free_port(), timeout=0.5).transact(1, b"\x03\x00\x00\x00\x01")


def test_gateway_answers_0b_for_silent_and_0a_for_no_path():
    async def scenario():
        line = units()
        rtu_server = await serve_rtu_tcp(line, HOST, 0)
        down = free_port()
        master = AsyncRtuClient.tcp(HOST, rtu_server.port, timeout=1.0)
        local = RtuUnits.from_specs({3: ["40001-40002=33"]})            # an in-process line
        gateway = ModbusGateway.of_lines([((1, 2, 9), master), ((3,), local),
                                          ((4,), AsyncRtuClient.tcp(HOST, down, timeout=0.3))])
        front = await serve(gateway, HOST, 0)
        try:
            async with AsyncModbusClient(HOST, front.port, unit=1, timeout=5.0) as client:
                reads = [client.request(pdu.ReadRequest(3, 0, 2), unit=u) for u in (1, 2, 3)]
                assert await asyncio.gather(*reads) == [(99, 99), (2, 2), (33, 33)]
                for unit, code in ((9, 0x0B), (4, 0x0A), (77, 0x0A)):
                    with pytest.raises(ExceptionResponse) as error:
                        await client.request(pdu.ReadRequest(3, 0, 1), unit=unit)
                    assert error.value.code == code, unit
                await client.write_register(5, 555)
            assert line.devices[1].read(40006) == [555]
            assert (gateway.forwarded, gateway.silent, gateway.no_path) == (4, 1, 2)
        finally:
            front.close()
            await front.wait_closed()
            await master.close()
            rtu_server.close()
            await rtu_server.wait_closed()

    run(scenario())


def test_gateway_rejects_bad_routes():
    with pytest.raises(ValueError, match="two lines"):
        ModbusGateway.of_lines([((1,), None), ((1,), None)])
    with pytest.raises(ValueError, match=r"1\.\.247"):
        RtuUnits.from_specs({0: ["40001"]})


def eventually(probe, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("condition not met")


def test_poller_over_serial_and_rtu_over_tcp():
    from tests.test_modbus_support import ServerThread

    thread = ServerThread()
    line = units()
    serial_server = thread.run(serve_serial(line, "pty", LineSettings()))
    tcp_server = thread.run(serve_rtu_tcp(line, HOST, 0))
    pollers = [poller_modbus("rtu", serial=serial_server.path, unit=2, rate=0.05, timeout=0.5),
               poller_modbus("rtu-tcp", host=HOST, port=tcp_server.port, rtu=True, unit=1, rate=0.05,
                             timeout=0.5),
               poller_modbus("silent", host=HOST, port=tcp_server.port, rtu=True, unit=9, rate=0.05,
                             timeout=0.2)]
    try:
        pollers[0].poll(40001)
        pollers[1].poll(40001)
        pollers[2].poll(40001)
        assert eventually(lambda: pollers[0].read(40001)) == 2
        assert eventually(lambda: pollers[1].read(40001)) == 99
        pollers[0].write(40002, 4321)
        pollers[1].write(1, [1, 0, 1])
        assert line.devices[2].read(40002) == [4321]
        assert line.devices[1].read(1, 3) == [1, 0, 1]
        assert eventually(lambda: pollers[2].failing) == {(40001, 1)}
        assert pollers[2].read(40001) is None
    finally:
        for p in pollers:
            p.stop()
            p.join(2)
        thread.run(_close(serial_server, tcp_server))
        thread.close()


async def _close(*servers):
    for server in servers:
        server.close()
        await server.wait_closed()


# -- the commands -------------------------------------------------------------------------------

@pytest.mark.parametrize(("argv", "code", "message"), [
    (["--serial", "/nonexistent/tty", "40001"], 1, "cannot open serial port /nonexistent/tty"),
    (["--serial", "pty", "--baud", "fast", "40001"], 2, "bad baud rate 'fast'"),
    (["--serial", "pty", "--parity", "X", "40001"], 2, "bad parity 'X'"),
    (["--serial", "pty", "--stopbits", "3", "40001"], 2, "bad stop bits '3'"),
    (["--serial", "pty", "-u", "0", "40001"], 2, "RTU unit ids must be 1..247"),
    (["--serial", "pty", "--rtu-tcp", "40001"], 2, "--serial and --rtu-tcp exclude each other"),
    (["--serial", "pty", "2:40001=x"], 2, "bad register spec '40001=x'"),
    (["--serial", "pty", "-u", "1", "x:40001"], 2, "bad unit ids 'x'"),
    (["-a", f"{HOST}:0", "2:40001"], 2, "register specs are for RTU lines"),
    (["--gateway", "1-3"], 2, "bad --gateway '1-3'"),
    (["--gateway", "1@/dev/null", "40001"], 2, "--gateway forwards to RTU lines"),
    (["--serial", "pty"], 2, "no register ranges given"),
    (["--rtu-tcp", "--timing", "40001"], 2, "--timing keeps a serial line's timing"),
    (["--serial", "/dev/null", "--link", "/tmp/x", "40001"], 2, "--link names a pseudo-terminal"),
    (["--serial", "pty", "--link", "/nonexistent/dir/line", "40001"], 1, "cannot link /nonexistent/dir/line"),
])
def test_modbus_sim_rtu_errors_are_one_line(capsys, argv, code, message):
    from cpppo.bin import modbus_sim

    assert modbus_sim.main(argv) == code
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


def test_modbus_poll_rtu_errors_are_one_line(capsys):
    from cpppo.bin import modbus_poll

    assert modbus_poll.main(["--serial", "pty", "--parity", "Q", "40001"]) == 2
    err = capsys.readouterr().err
    assert "bad parity 'Q'" in err and err.count("\n") == 1, err
    assert modbus_poll.main(["--serial", "/nonexistent/tty", "-c", "1", "40001"]) == 1
    err = capsys.readouterr().err
    assert "cannot open serial port /nonexistent/tty" in err and err.count("\n") == 1, err


def test_rtu_over_tcp_commands():
    """`modbus_sim --rtu-tcp` with two units, read by `modbus_poll --rtu-tcp`."""
    import subprocess

    from tests.support import python_module, running

    port = free_port()
    sim = python_module("cpppo.bin.modbus_sim", "-a", f"{HOST}:{port}", "--rtu-tcp", "-u", "4,5",
                        "40001-40004=4", "5:40001-40004=5")
    with running(sim, listen=(HOST, port)):
        poll = python_module("cpppo.bin.modbus_poll", "-a", f"{HOST}:{port}", "--rtu-tcp", "-u", "5",
                             "-c", "1", "40001-40002")
        result = subprocess.run(poll, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines() == ["40001 == 5", "40002 == 5"]


def test_decoder_never_raises_and_stays_bounded():
    import random

    rng = random.Random(1919)
    for requests in (True, False):
        decoder = rtu.Decoder(requests=requests, silence=0.002)
        now = 0.0
        for _ in range(300):
            chunk = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 64)))
            now += rng.choice((0.0001, 0.0001, 0.01))
            for frame in decoder.feed(chunk, now):
                assert rtu.split(frame)                 # only frames with a good CRC come out
            assert len(decoder.buffer) <= 2 * rtu.MAX_FRAME + 64
        decoder.expire(now + 1)
        assert not decoder.buffer


def test_gateway_pipelined_requests_answer_in_order_with_backpressure():
    from cpppo.modbus import framer
    from cpppo.modbus.server import ServerSettings
    from tests.test_modbus_support import ServerThread, exchange, frame

    thread = ServerThread()
    gateway = ModbusGateway({u: RtuUnits.from_specs({u: [f"40001={u}"]}) for u in (1, 2)})
    server = thread.serve(gateway, settings=ServerSettings(max_in_flight=4))
    try:
        requests = b"".join(frame(tid, 1 + tid % 3, bytes.fromhex("03 0000 0001")) for tid in range(30))
        replies = exchange(server.port, requests, expect=20 * 11 + 10 * 9, timeout=5.0)
        decoded, position = [], 0
        while position < len(replies):
            consumed, header, body = framer.decode_from(replies, position)
            decoded.append((header.transaction_id, body))
            position += consumed
        assert [tid for tid, _ in decoded] == list(range(30))
        assert {body for tid, body in decoded if tid % 3 == 2} == {b"\x83\x0a"}      # unit 3: no path
        assert {body for tid, body in decoded if tid % 3 < 2} == {b"\x03\x02\x00\x01", b"\x03\x02\x00\x02"}
    finally:
        thread.close()


def test_unit_faults_on_a_line_and_behind_a_gateway():
    """A unit's own fault slot: silent (timeout, offline, drop), an exception, a corrupt frame,
    a held reply; the in-process gateway answers 0x0B for a silent or corrupt unit."""
    from cpppo.faults import parse_fault

    units = RtuUnits.from_specs({1: ["40001=5"], 2: ["40001=6"]})
    request = rtu.encode(1, bytes.fromhex("03 0000 0001"))
    gateway = ModbusGateway({1: units, 2: units})
    read = bytes.fromhex("03 0000 0001")
    for kind in ("timeout", "offline", "drop"):
        units.devices[1].faults.set(parse_fault(kind))
        assert units.answer(request) is None
        assert asyncio.run(gateway.forward(1, read)) == bytes((0x83, 0x0B))
    assert rtu.split(units.answer(rtu.encode(2, read)))[1].hex() == "03020006"  # the other unit is well
    units.devices[1].faults.set(parse_fault("error", "4"))
    assert rtu.split(units.answer(request))[1] == bytes((0x83, 4))
    units.devices[1].faults.set(parse_fault("corrupt", seed=3))
    frame = units.answer(request)
    with pytest.raises(FrameError):
        rtu.split(frame)
    assert asyncio.run(gateway.forward(1, read)) == bytes((0x83, 0x0B))
    units.devices[1].faults.set(parse_fault("latency", "50ms"))
    assert units.latency(1) == pytest.approx(0.05) and units.latency(2) == 0.0
    began = time.monotonic()
    assert asyncio.run(gateway.forward(1, read)).hex() == "03020005"
    assert time.monotonic() - began >= 0.05
    units.devices[1].faults.clear()
    assert rtu.split(units.answer(request))[1].hex() == "03020005"


def test_a_latency_fault_holds_the_reply_on_a_pty_line():
    from cpppo.faults import parse_fault

    async def scenario() -> tuple[float, float]:
        units = RtuUnits.from_specs({1: ["40001=5"]})
        wire = LineSettings(19200, "N", 1)
        server = await serve_serial(units, "pty", wire)
        async with server, AsyncRtuClient.serial(server.path, wire, timeout=2.0) as master:
            began = time.monotonic()
            assert await master.read_holding_registers(0, 1) == [5]
            quick = time.monotonic() - began
            units.devices[1].faults.set(parse_fault("latency", "300ms"))
            began = time.monotonic()
            assert await master.read_holding_registers(0, 1) == [5]
            return quick, time.monotonic() - began

    quick, held = asyncio.run(scenario())
    assert held >= 0.3 and held > quick


def test_gateway_faults():
    """A gateway's own fault slot: timeout (no reply), error (that exception), latency (held),
    drop (the connection closed), offline (connections refused)."""
    from cpppo.faults import parse_fault

    async def scenario() -> None:
        gateway = ModbusGateway({1: RtuUnits.from_specs({1: ["40001=5"]})})
        server = await serve(gateway, HOST, 0)
        async with server:
            async with AsyncModbusClient(HOST, server.port, unit=1, timeout=0.5) as client:
                assert await client.read_holding_registers(0, 1) == [5]
                gateway.faults.set(parse_fault("error", "6"))
                with pytest.raises(ExceptionResponse) as busy:
                    await client.read_holding_registers(0, 1)
                assert busy.value.code == 6
                gateway.faults.set(parse_fault("latency", "200ms"))
                began = time.monotonic()
                assert await client.read_holding_registers(0, 1) == [5]
                assert time.monotonic() - began >= 0.2
                gateway.faults.set(parse_fault("timeout"))
                with pytest.raises(TimeoutError):
                    await client.read_holding_registers(0, 1)
            async with AsyncModbusClient(HOST, server.port, unit=1, timeout=0.5) as client:
                gateway.faults.set(parse_fault("drop"))
                with pytest.raises((ModbusConnectionError, TimeoutError)):
                    await client.read_holding_registers(0, 1)
            gateway.faults.set(parse_fault("offline"))
            with pytest.raises(ModbusConnectionError):
                async with AsyncModbusClient(HOST, server.port, unit=1, timeout=0.5) as client:
                    await client.read_holding_registers(0, 1)
            gateway.faults.clear()
            for _ in range(100):  # listening again once the fault state is followed
                try:
                    async with AsyncModbusClient(HOST, server.port, unit=1, timeout=0.5) as client:
                        assert await client.read_holding_registers(0, 1) == [5]
                        break
                except ModbusConnectionError:
                    await asyncio.sleep(0.05)
            else:
                raise AssertionError("the gateway does not listen again")

    asyncio.run(scenario())
