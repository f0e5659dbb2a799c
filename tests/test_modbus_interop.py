"""Third-party Modbus/TCP clients against our simulator: pymodbus 3.x, pyModbusTCP and
Debian's mbpoll (run against 127.0.0.1 only, one poll each)."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from tests.test_modbus_support import HOST, simulator

pytestmark = pytest.mark.interop

SPECS = ["40001-40100=99", "1-16=0", "10001-10008=1", "30001-30010=5"]


@pytest.fixture(scope="module")
def sim():
    with simulator(SPECS, identity={"vendor_name": "Acme", "product_code": "X-1",
                                    "major_minor_revision": "2.0"}) as (_, server):
        yield server


def test_pymodbus_client(sim):
    from pymodbus.client import ModbusTcpClient
    from pymodbus.pdu import ExceptionResponse

    client = ModbusTcpClient(HOST, port=sim.port, timeout=2, retries=0)
    try:
        assert client.connect()
        assert client.read_holding_registers(0, count=10, device_id=1).registers == [99] * 10
        assert not client.write_register(20, 1234, device_id=1).isError()
        assert not client.write_registers(21, [1, 2, 3], device_id=1).isError()
        assert client.read_holding_registers(20, count=4, device_id=1).registers == [1234, 1, 2, 3]
        assert not client.write_coil(3, True, device_id=1).isError()
        assert not client.write_coils(5, [True, False, True], device_id=1).isError()
        assert client.read_coils(0, count=8, device_id=1).bits[:8] == [0, 0, 0, 1, 0, 1, 0, 1]
        assert client.read_discrete_inputs(0, count=8, device_id=1).bits[:8] == [1] * 8
        assert client.read_input_registers(0, count=10, device_id=1).registers == [5] * 10
        assert not client.mask_write_register(address=30, and_mask=0xF0, or_mask=0x0F,
                                              device_id=1).isError()
        rw = client.readwrite_registers(read_address=30, read_count=2, write_address=31,
                                        values=[7], device_id=1)
        assert rw.registers == [0x6F, 7]
        error = client.read_holding_registers(150, count=1, device_id=1)
        assert error.isError() and isinstance(error, ExceptionResponse)
        assert error.exception_code == 2
        info = client.read_device_information(read_code=1, object_id=0, device_id=1)
        assert info.information[0] == b"Acme" and info.information[2] == b"2.0"
    finally:
        client.close()
    assert sim.device.read(40021, 4) == [1234, 1, 2, 3]


def test_pymodbus_async_client_pipelines(sim):
    import asyncio

    from pymodbus.client import AsyncModbusTcpClient

    async def scenario():
        client = AsyncModbusTcpClient(HOST, port=sim.port, timeout=2, retries=0)
        await client.connect()
        try:
            results = await asyncio.gather(*(client.read_input_registers(i, count=1, device_id=1)
                                             for i in range(10)))
        finally:
            client.close()
        return [r.registers for r in results]
    assert asyncio.run(scenario()) == [[5]] * 10


def test_pymodbustcp_client(sim):
    from pyModbusTCP.client import ModbusClient

    client = ModbusClient(host=HOST, port=sim.port, unit_id=1, timeout=2.0, auto_open=True)
    try:
        assert client.read_holding_registers(40, 5) == [99] * 5
        assert client.write_multiple_registers(40, [10, 11, 12])
        assert client.write_single_register(43, 13)
        assert client.read_holding_registers(40, 5) == [10, 11, 12, 13, 99]
        assert client.write_single_coil(10, True)
        assert client.read_coils(8, 4) == [False, False, True, False]
        assert client.read_discrete_inputs(0, 2) == [True, True]
        assert client.read_input_registers(0, 3) == [5, 5, 5]
        assert client.read_holding_registers(200, 1) is None
        assert client.last_except == 2
    finally:
        client.close()


MBPOLL = shutil.which("mbpoll")


def mbpoll(port: int, *args: str) -> str:
    result = subprocess.run([MBPOLL, "-m", "tcp", "-p", str(port), "-o", "2", *args],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def values(output: str) -> dict[int, str]:
    return {int(ref): value for ref, value in re.findall(r"^\[(\d+)\]:\s+(\S+)", output, re.M)}


@pytest.mark.skipif(MBPOLL is None, reason="Debian's mbpoll is not installed (apt-get install mbpoll)")
def test_mbpoll(sim):
    assert values(mbpoll(sim.port, "-a", "1", "-t", "4", "-r", "61", "-c", "5", "-1", HOST)) == {
        61: "99", 62: "99", 63: "99", 64: "99", 65: "99"}
    mbpoll(sim.port, "-a", "1", "-t", "4", "-r", "61", "-1", HOST, "321", "654")
    assert values(mbpoll(sim.port, "-t", "4", "-r", "61", "-c", "3", "-1", HOST)) == {
        61: "321", 62: "654", 63: "99"}
    assert values(mbpoll(sim.port, "-t", "3", "-r", "1", "-c", "2", "-1", HOST)) == {1: "5", 2: "5"}
    mbpoll(sim.port, "-t", "0", "-r", "15", "-1", HOST, "1")
    assert values(mbpoll(sim.port, "-t", "0", "-r", "14", "-c", "3", "-1", HOST)) == {
        14: "0", 15: "1", 16: "0"}
    assert values(mbpoll(sim.port, "-t", "1", "-r", "1", "-c", "2", "-1", HOST)) == {1: "1", 2: "1"}
    assert sim.device.read(40061, 2) == [321, 654]


@pytest.mark.skipif(MBPOLL is None, reason="Debian's mbpoll is not installed (apt-get install mbpoll)")
def test_mbpoll_reports_illegal_address(sim):
    result = subprocess.run([MBPOLL, "-m", "tcp", "-p", str(sim.port), "-o", "2", "-t", "4", "-r", "150",
                             "-1", HOST], capture_output=True, text=True, timeout=30)
    assert "Illegal data address" in result.stdout + result.stderr
