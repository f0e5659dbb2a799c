"""Third-party Modbus/RTU masters against our simulator on a pseudo-terminal (pymodbus's
serial client, Debian's mbpoll in RTU mode), our master against pymodbus's serial server, and
pymodbus's Modbus/TCP client through our gateway.  The pty pairs are made by socat; a
pseudo-terminal has no parity, so the third parties use 8N1."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from cpppo.modbus import pdu
from cpppo.modbus.errors import ExceptionResponse
from cpppo.modbus.rtu_client import RtuClient
from cpppo.modbus.serial_line import LineSettings
from tests.support import free_port, python_module
from tests.test_modbus_rtu_support import (
    SOCAT,
    pty_pair,
    pymodbus_serial_server_argv,
    rtu_simulator,
    started,
)
from tests.test_modbus_support import HOST

NO_SOCAT = "Debian's socat is not installed (apt-get install socat)"
pytestmark = [pytest.mark.interop, pytest.mark.skipif(SOCAT is None, reason=NO_SOCAT)]

LINE = ["--baud", "19200", "--parity", "N", "-u", "1,2",
        "40001-40100=99", "1-16=0", "10001-10008=1", "1:30001-30010=5", "2:40001-40010=2"]
MBPOLL = shutil.which("mbpoll")


@pytest.fixture(scope="module")
def line():
    """Our simulator with units 1 and 2 on one end of a pty pair; yields the other end."""
    with pty_pair() as (ours, theirs), rtu_simulator(ours, *LINE):
        yield theirs


def pymodbus_client(port: str, timeout: float = 1.0):
    from pymodbus import FramerType
    from pymodbus.client import ModbusSerialClient

    client = ModbusSerialClient(port, framer=FramerType.RTU, baudrate=19200, parity="N", stopbits=1,
                                bytesize=8, timeout=timeout, retries=0)
    assert client.connect()
    return client


def test_pymodbus_serial_client_every_function(line):
    from pymodbus.pdu import ExceptionResponse as PymodbusException

    client = pymodbus_client(line)
    try:
        assert client.read_holding_registers(0, count=10, device_id=1).registers == [99] * 10
        assert client.read_holding_registers(0, count=3, device_id=2).registers == [2, 2, 2]  # multidrop
        assert not client.write_register(20, 1234, device_id=1).isError()
        assert not client.write_registers(21, [1, 2, 3], device_id=1).isError()
        assert client.read_holding_registers(20, count=4, device_id=1).registers == [1234, 1, 2, 3]
        assert not client.write_coil(3, True, device_id=1).isError()
        assert not client.write_coils(5, [True, False, True], device_id=1).isError()
        assert client.read_coils(0, count=8, device_id=1).bits[:8] == [0, 0, 0, 1, 0, 1, 0, 1]
        assert client.read_discrete_inputs(0, count=8, device_id=1).bits[:8] == [1] * 8
        assert client.read_input_registers(0, count=10, device_id=1).registers == [5] * 10
        assert not client.mask_write_register(address=30, and_mask=0xF0, or_mask=0x0F, device_id=1).isError()
        rw = client.readwrite_registers(read_address=30, read_count=2, write_address=31, values=[7],
                                        device_id=1)
        assert rw.registers == [0x6F, 7]
        info = client.read_device_information(read_code=1, object_id=0, device_id=2)
        assert info.information[0] == b"cpppo"
        error = client.read_holding_registers(150, count=1, device_id=1)
        assert isinstance(error, PymodbusException) and error.exception_code == 2
        error = client.read_input_registers(0, count=1, device_id=2)       # unit 2 has none
        assert isinstance(error, PymodbusException) and error.exception_code == 2
        assert client.read_holding_registers(0, count=1, device_id=2).registers == [2]   # unchanged
    finally:
        client.close()


def test_pymodbus_serial_client_silent_unit_times_out(line):
    from pymodbus.exceptions import ModbusIOException

    client = pymodbus_client(line, timeout=0.3)
    try:
        with pytest.raises(ModbusIOException):
            client.read_holding_registers(0, count=1, device_id=7)
        assert client.read_holding_registers(0, count=1, device_id=2).registers == [2]   # line still good
    finally:
        client.close()


def mbpoll(*args: str, code: int | None = 0) -> str:
    result = subprocess.run([MBPOLL, "-m", "rtu", "-b", "19200", "-P", "none", "-o", "1", *args],
                            capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    if code is not None:
        assert result.returncode == code, result.stdout + result.stderr
    return result.stdout + result.stderr


def values(output: str) -> dict[int, str]:
    return {int(ref): value for ref, value in re.findall(r"^\[(\d+)\]:\s+(\S+)", output, re.M)}


@pytest.mark.skipif(MBPOLL is None, reason="Debian's mbpoll is not installed (apt-get install mbpoll)")
def test_mbpoll_rtu(line):
    assert values(mbpoll("-a", "1", "-t", "4", "-r", "61", "-c", "3", "-1", line)) == {
        61: "99", 62: "99", 63: "99"}
    mbpoll("-a", "2", "-t", "4", "-r", "5", "-1", line, "321", "654")
    assert values(mbpoll("-a", "2", "-t", "4", "-r", "4", "-c", "4", "-1", line)) == {
        4: "2", 5: "321", 6: "654", 7: "2"}
    assert values(mbpoll("-a", "1", "-t", "3", "-r", "1", "-c", "2", "-1", line)) == {1: "5", 2: "5"}
    mbpoll("-a", "1", "-t", "0", "-r", "15", "-1", line, "1")
    assert values(mbpoll("-a", "1", "-t", "0", "-r", "14", "-c", "3", "-1", line)) == {
        14: "0", 15: "1", 16: "0"}
    assert values(mbpoll("-a", "1", "-t", "1", "-r", "1", "-c", "2", "-1", line)) == {1: "1", 2: "1"}
    both = mbpoll("-a", "1,2", "-t", "4", "-r", "8", "-c", "2", "-1", line)      # multidrop, one run
    slaves = re.split(r"^-- Polling slave (\d+)\.\.\.$", both, flags=re.M)[1:]
    assert {int(n): values(text) for n, text in zip(slaves[::2], slaves[1::2], strict=True)} == {
        1: {8: "99", 9: "99"}, 2: {8: "2", 9: "2"}}


@pytest.mark.skipif(MBPOLL is None, reason="Debian's mbpoll is not installed (apt-get install mbpoll)")
def test_mbpoll_rtu_exceptions_and_silence(line):
    assert "Illegal data address" in mbpoll("-a", "1", "-t", "4", "-r", "150", "-1", line, code=None)
    assert "Illegal function" in mbpoll("-a", "1", "-u", line, code=None)    # function 17: not served
    silent = mbpoll("-a", "9", "-t", "4", "-r", "1", "-1", line, code=None)
    assert "timed out" in silent.lower(), silent


def test_our_master_against_pymodbus_serial_server():
    with pty_pair() as (theirs, ours), \
            started(pymodbus_serial_server_argv(theirs, units=(1, 3)), r"^serving"):
        client = RtuClient(serial=ours, settings=LineSettings(19200, "N", 1), timeout=1.0)
        try:
            reply = None
            for _ in range(50):                     # until pymodbus has opened its port
                try:
                    reply = client.request(pdu.ReadRequest(3, 0, 10), unit=1)
                    break
                except TimeoutError:
                    continue
            assert reply == (99,) * 10
            assert client.request(pdu.ReadRequest(3, 0, 2), unit=3) == (99, 99)
            client.request(pdu.WriteMultipleRequest(16, 4, (7, 8)), unit=1)
            client.request(pdu.WriteSingleRequest(5, 2, True), unit=1)
            client.request(pdu.WriteMultipleRequest(15, 4, (True, True)), unit=1)
            assert client.request(pdu.ReadRequest(3, 3, 4), unit=1) == (99, 7, 8, 99)
            assert client.request(pdu.ReadRequest(1, 0, 8), unit=1) == (False, False, True, False,
                                                                         True, True, False, False)
            assert client.request(pdu.ReadRequest(2, 0, 8), unit=1) == (True,) * 8
            assert client.request(pdu.ReadRequest(4, 0, 3), unit=1) == (5, 5, 5)
            client.request(pdu.WriteSingleRequest(6, 0, 11), unit=3)
            assert client.request(pdu.ReadWriteRequest(0, 2, 1, (12,)), unit=3) == (11, 12)
            with pytest.raises(ExceptionResponse) as error:
                client.request(pdu.ReadRequest(3, 500, 1), unit=1)
            assert error.value.code == 2
            # pymodbus 3.x answers a unit it does not serve (exception 4, server device failure)
            # where ours stays silent, as a device sharing the line must
            with pytest.raises(ExceptionResponse) as stranger:
                client.request(pdu.ReadRequest(3, 0, 1), unit=9)
            assert stranger.value.code == 4
        finally:
            client.close()


def test_gateway_cli_in_front_of_an_rtu_line():
    """pymodbus's Modbus/TCP client -> `modbus_sim --gateway` -> pty -> `modbus_sim --serial`."""
    from pymodbus.client import ModbusTcpClient
    from pymodbus.pdu import ExceptionResponse as PymodbusException

    port = free_port()
    with pty_pair() as (sim_end, gateway_end), rtu_simulator(sim_end, *LINE), \
            started(python_module("cpppo.bin.modbus_sim", "-a", f"{HOST}:{port}", "--parity", "N",
                                  "--rtu-timeout", "0.3", "--gateway", f"1-3@{gateway_end}"),
                    r"^Success; Started Modbus/TCP gateway"):
        client = ModbusTcpClient(HOST, port=port, timeout=3, retries=0)
        try:
            assert client.connect()
            assert client.read_holding_registers(0, count=3, device_id=1).registers == [99] * 3
            assert client.read_holding_registers(0, count=3, device_id=2).registers == [2] * 3
            assert not client.write_register(1, 42, device_id=2).isError()
            assert client.read_holding_registers(0, count=2, device_id=2).registers == [2, 42]
            silent = client.read_holding_registers(0, count=1, device_id=3)
            assert isinstance(silent, PymodbusException) and silent.exception_code == 0x0B
            nowhere = client.read_holding_registers(0, count=1, device_id=8)
            assert isinstance(nowhere, PymodbusException) and nowhere.exception_code == 0x0A
        finally:
            client.close()


def test_modbus_poll_serial_cli(line):
    result = subprocess.run(python_module("cpppo.bin.modbus_poll", "--serial", line, "--parity", "N",
                                          "-u", "2", "-c", "1", "40009-40010"),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["40009 == 2", "40010 == 2"]


PYMODBUS_RTU_TCP_SERVER = """
import asyncio, logging, sys, warnings
warnings.simplefilter("ignore")
logging.disable(logging.CRITICAL)
from pymodbus import FramerType
from pymodbus.server import StartAsyncTcpServer
from pymodbus.datastore import ModbusDeviceContext, ModbusServerContext, ModbusSequentialDataBlock as B
context = ModbusServerContext(devices={4: ModbusDeviceContext(hr=B(1, [44] * 10))}, single=False)
asyncio.run(StartAsyncTcpServer(context, address=("127.0.0.1", int(sys.argv[1])), framer=FramerType.RTU))
"""


def test_rtu_over_tcp_both_ways():
    """pymodbus's TCP client with its RTU framer against `modbus_sim --rtu-tcp`, and our
    RTU-over-TCP master against pymodbus's TCP server with its RTU framer."""
    import sys

    from pymodbus import FramerType
    from pymodbus.client import ModbusTcpClient

    from tests.support import running

    port = free_port()
    sim = python_module("cpppo.bin.modbus_sim", "-a", f"{HOST}:{port}", "--rtu-tcp", "-u", "1,2",
                        "40001-40010=1", "2:40001-40010=2")
    with running(sim, listen=(HOST, port)):
        client = ModbusTcpClient(HOST, port=port, framer=FramerType.RTU, timeout=1, retries=0)
        try:
            assert client.connect()
            assert client.read_holding_registers(0, count=2, device_id=2).registers == [2, 2]
            assert not client.write_registers(0, [7, 8], device_id=1).isError()
            assert client.read_holding_registers(0, count=3, device_id=1).registers == [7, 8, 1]
        finally:
            client.close()
    port = free_port()
    with running([sys.executable, "-c", PYMODBUS_RTU_TCP_SERVER, str(port)], listen=(HOST, port)):
        ours = RtuClient(host=HOST, port=port, timeout=1.0)
        try:
            assert ours.request(pdu.ReadRequest(3, 0, 3), unit=4) == (44, 44, 44)
            ours.request(pdu.WriteSingleRequest(6, 1, 45), unit=4)
            assert ours.request(pdu.ReadRequest(3, 0, 2), unit=4) == (44, 45)
        finally:
            ours.close()
