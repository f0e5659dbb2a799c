"""Our Modbus/TCP server on live loopback sockets: correctness on the wire, pipelining,
robustness against malformed input, limits, delays, many devices in one process, and the
asyncio client."""

from __future__ import annotations

import asyncio
import random
import socket
import struct

import pytest

from cpppo.modbus import framer
from cpppo.modbus.aclient import AsyncModbusClient
from cpppo.modbus.device import ModbusDevice
from cpppo.modbus.errors import ExceptionResponse, ModbusConnectionError, ModbusException
from cpppo.modbus.server import ServerSettings, parse_delay, serve
from tests.support import free_port
from tests.test_modbus_support import HOST, exchange, frame, simulator

H = bytes.fromhex


def replies(data: bytes) -> list[tuple[int, bytes]]:
    """(transaction id, PDU) of every frame in ``data``; all of it must be whole frames."""
    out = []
    while data:
        consumed, header, pdu = framer.decode(data)
        assert consumed, f"trailing partial frame {data.hex()}"
        out.append((header.transaction_id, pdu))
        data = data[consumed:]
    return out


@pytest.fixture(scope="module")
def sim():
    with simulator() as (_, server):
        yield server


# The behaviour the issue requires, request PDU -> expected reply PDU.
WIRE_CASES = {
    "read holding": (H("03 0000 0002"), H("03 04 0063 0063")),
    "unknown function 0x41": (H("41 0000 0001"), H("c1 01")),
    "unknown function 0x64": (H("64"), H("e4 01")),
    "quantity 0": (H("03 0000 0000"), H("83 03")),
    "quantity 126": (H("03 0000 007e"), H("83 03")),
    "coil quantity 2001": (H("01 0000 07d1"), H("81 03")),
    "address outside ranges": (H("03 00c8 0001"), H("83 02")),
    "range straddling the end": (H("03 0062 0004"), H("83 02")),
    "write outside ranges": (H("06 00c8 0001"), H("86 02")),
    "device identification": (H("2b 0e 04 00"), H("2b 0e 04 82 00 00 01 00 05") + b"cpppo"),
}


@pytest.mark.parametrize("case", WIRE_CASES)
def test_replies_on_the_wire(sim, case):
    request, reply = WIRE_CASES[case]
    data = exchange(sim.port, frame(7, 1, request), expect=7 + len(reply) - 1)
    assert replies(data) == [(7, reply)]


def test_many_requests_in_one_segment_all_answered_in_order(sim):
    batch = b"".join(frame(tid, 1, struct.pack(">BHH", 3, tid % 100, 1)) for tid in range(1, 201))
    batch += frame(999, 1, H("41"))
    data = exchange(sim.port, batch, expect=200 * 11 + 9)
    got = replies(data)
    assert [tid for tid, _ in got] == [*range(1, 201), 999]
    assert all(pdu == H("03 02 0063") for _, pdu in got[:-1]) and got[-1][1] == H("c1 01")


def test_frame_split_across_segments(sim):
    request = frame(5, 1, H("03 0000 0001"))
    with socket.create_connection((HOST, sim.port), timeout=2) as sock:
        for byte in request:
            sock.sendall(bytes([byte]))
        assert replies(sock.recv(100)) == [(5, H("03 02 0063"))]


@pytest.mark.parametrize(("name", "data"), [
    ("protocol id 5", frame(1, 1, H("03 0000 0001"), protocol=5)),
    ("length 0", frame(1, 1, b"", length=0)),
    ("length 1", frame(1, 1, b"", length=1)),
    ("huge length", frame(1, 1, H("03"), length=0xFFFF)),
    ("length 255", frame(1, 1, H("03"), length=255)),
])
def test_malformed_header_closes_only_that_connection(sim, name, data):
    with socket.create_connection((HOST, sim.port), timeout=2) as other:
        other.sendall(frame(1, 1, H("03 0000 0001")))
        assert other.recv(100)
        assert exchange(sim.port, data, timeout=2) == b""             # closed, nothing sent
        other.sendall(frame(2, 1, H("03 0000 0001")))                  # the other one still works
        assert replies(other.recv(100)) == [(2, H("03 02 0063"))]


def test_valid_frames_before_a_bad_header_are_answered(sim):
    data = exchange(sim.port, frame(1, 1, H("03 0000 0001")) + frame(2, 1, H("03"), protocol=1),
                    timeout=2)
    assert replies(data) == [(1, H("03 02 0063"))]


def test_live_fuzz_thousands_of_random_frames(sim):
    """3,000 random frames over 100 connections: in each, 29 well-framed requests with mutated
    or random PDUs and unit ids, then one mutated header or random bytes.  Every reply is a
    whole, valid frame (a normal or an exception reply), the server survives, and valid
    requests, also on a connection opened before, are still answered."""
    rng = random.Random(1234)
    seeds = [pdu for pdu, _ in WIRE_CASES.values()]
    keeper = socket.create_connection((HOST, sim.port), timeout=2)
    handled_before = sim.device.requests
    answered = 0
    for _ in range(100):
        batch = bytearray()
        for tid in range(29):
            pdu = bytearray(rng.choice(seeds)) if rng.random() < 0.8 else bytearray(rng.randbytes(8))
            for _ in range(rng.randint(0, 3)):
                pdu[rng.randrange(len(pdu))] = rng.randrange(256)
            batch += frame(tid, rng.choice((1, 1, 1, rng.randrange(256))), bytes(pdu))
        tail = bytearray(frame(99, 1, rng.choice(seeds)))
        tail[rng.randrange(2, 6)] ^= 1 << rng.randrange(8)        # protocol id or length
        batch += tail if rng.random() < 0.5 else rng.randbytes(rng.randint(1, 30))
        with socket.create_connection((HOST, sim.port), timeout=5) as sock:
            sock.sendall(batch)
            sock.shutdown(socket.SHUT_WR)
            out = b""
            while chunk := sock.recv(65536):
                out += chunk
        got = replies(out)
        assert [tid for tid, _ in got[:29]] == list(range(29))       # answered, in order
        for _, pdu in got:
            answered += 1
            assert pdu[0] & 0x80 == 0 or (len(pdu) == 2 and pdu[1] in (1, 2, 3, 0x0B))
    assert answered >= 2900
    assert sim.device.requests - handled_before > 300             # many decoded to a request
    keeper.sendall(frame(3, 1, H("03 0000 0001")))
    assert replies(keeper.recv(100)) == [(3, H("03 02 0063"))]
    keeper.close()
    assert replies(exchange(sim.port, frame(4, 1, H("03 0001 0001")), expect=11)) == [(4, H("03 02 0063"))]


def test_connection_limit_and_idle_timeout():
    with simulator(settings=ServerSettings(max_connections=2, idle_timeout=0.2)) as (_, server):
        first = socket.create_connection((HOST, server.port), timeout=5)
        second = socket.create_connection((HOST, server.port), timeout=5)
        first.sendall(frame(1, 1, H("03 0000 0001")))
        assert first.recv(100)
        # a third evicts the oldest connection that never completed a request, and is served
        assert replies(exchange(server.port, frame(1, 1, H("03 0000 0001")), expect=11)) == [
            (1, H("03 02 0063"))]
        assert second.recv(100) == b"" and server.evictions == 1
        assert first.recv(100) == b""                                   # idle ones are closed
        first.close()
        second.close()


def test_unit_ids_are_configurable():
    with simulator(unit_ids=(5,)) as (_, server):
        assert replies(exchange(server.port, frame(1, 5, H("03 0000 0001")), expect=11)) == [
            (1, H("03 02 0063"))]
        assert replies(exchange(server.port, frame(1, 1, H("03 0000 0001")), expect=9)) == [(1, H("83 0b"))]


def test_parse_delay():
    assert parse_delay("0.5") == 0.5 and parse_delay(".1-.3") == (0.1, 0.3)
    for bad in ("x", "-1", ".3-.1", "1-"):
        with pytest.raises(ValueError, match="bad --delay"):
            parse_delay(bad)


def test_delayed_replies_keep_request_order():
    async def scenario():
        device = ModbusDevice.from_specs(["40001-40100=1"])
        async with await serve(device, HOST, 0, delay=(0.0, 0.05)) as server:
            reader, writer = await asyncio.open_connection(HOST, server.port)
            writer.write(b"".join(frame(t, 1, struct.pack(">BHH", 3, t, 1)) for t in range(30)))
            data = await asyncio.wait_for(reader.readexactly(30 * 11), 10)
            writer.close()
            return [tid for tid, _ in replies(data)]
    assert asyncio.run(scenario()) == list(range(30))


def test_many_devices_in_one_process_each_on_its_own_address():
    async def scenario():
        servers = []
        for i in range(40):
            device = ModbusDevice.from_specs([f"40001-40010={i}"], unit_ids=(1,))
            servers.append(await serve(device, f"127.0.0.{2 + i % 4}", 0))
        try:
            async def poll(server):
                async with AsyncModbusClient(server.host, server.port, timeout=5) as client:
                    return await client.read_holding_registers(0, 10)
            results = await asyncio.gather(*(poll(s) for s in servers))
        finally:
            for server in servers:
                server.close()
                await server.wait_closed()
        return results, {s.host for s in servers}
    results, hosts = asyncio.run(scenario())
    assert results == [[i] * 10 for i in range(40)]
    assert hosts == {"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"}


def test_address_in_use_raises_oserror():
    async def scenario():
        device = ModbusDevice.from_specs(["40001"])
        async with await serve(device, HOST, 0) as server:
            with pytest.raises(OSError):
                await serve(device, HOST, server.port)
    asyncio.run(scenario())


def test_async_client_api():
    async def scenario():
        device = ModbusDevice.from_specs(["40001-40100=99", "1-16=0", "10001-10008=1", "30001-30010=5"])
        async with await serve(device, HOST, 0) as server, \
                AsyncModbusClient(HOST, server.port, unit=1, timeout=2.0) as client:
            assert await client.read_holding_registers(0, 3) == [99, 99, 99]
            await client.write_register(0, 1)
            await client.write_registers(1, [2, 3])
            await client.mask_write_register(3, 0x00F0, 0x000F)
            assert await client.read_write_registers(0, 4, 10, [7]) == [1, 2, 3, 0x6F]
            await client.write_coil(0, True)
            await client.write_coils(2, [True, True])
            assert await client.read_coils(0, 4) == [True, False, True, True]
            assert await client.read_discrete_inputs(0, 8) == [True] * 8
            assert await client.read_input_registers(0, 10) == [5] * 10
            many = await asyncio.gather(*(client.read_holding_registers(i, 1) for i in range(50)))
            assert many[10] == [7] and len(many) == 50
            assert (await client.read_device_identification(1))[0] == b"cpppo"
            with pytest.raises(ExceptionResponse) as info:
                await client.read_holding_registers(99, 2)
            assert info.value.code == 2 and isinstance(info.value, ModbusException)
            assert device.read(40001, 4) == [1, 2, 3, 0x6F]
    asyncio.run(scenario())


def test_async_client_errors():
    async def scenario():
        with pytest.raises(ModbusConnectionError, match="cannot connect"):
            async with AsyncModbusClient(HOST, free_port(), timeout=2.0):
                pass
        device = ModbusDevice.from_specs(["40001"])
        async with await serve(device, HOST, 0, delay=1.0) as server:
            async with AsyncModbusClient(HOST, server.port, timeout=0.1) as client:
                with pytest.raises(TimeoutError):
                    await client.read_holding_registers(0, 1)
            async with AsyncModbusClient(HOST, server.port, timeout=5) as client:
                pending = asyncio.ensure_future(client.read_holding_registers(0, 1))
                await asyncio.sleep(0.05)
                server.close()
                with pytest.raises(ModbusConnectionError):
                    await pending
    asyncio.run(scenario())
