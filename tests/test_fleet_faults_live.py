"""Faults on a running fleet (process backend), as third-party clients see them: pymodbus and
mbpoll get the exception or time out, pycomm3 gets the CIP status, a refused connection, a
dropped one; and normal service after ``fault --clear``.  The rest of the fleet is unaffected."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.fleet_support import CliFleet, until
from tests.support import free_port

pytestmark = [pytest.mark.slow, pytest.mark.interop]

MBPOLL = shutil.which("mbpoll")


def fleet_text(octet: int, port: int) -> str:
    return f"""
[fleet]
name = "faults{octet}"
address_pool = "127.78.{octet}.0/24"
health_interval = 0.5
health_timeout = 1.0
devices_per_worker = 2

[[device]]
kind = "modbus"
count = 3
name = "pump{{n}}"
port = {port}
registers = ["40001-40010=7", "1-8=0"]

[[device]]
kind = "enip"
count = 2
name = "line{{n}}"
port = {port}
tags = ["SCADA=INT[10]", "Speed=REAL"]
"""


@pytest.fixture(scope="module")
def fleet(tmp_path_factory) -> Iterator[CliFleet]:
    octet = 100 + os.getpid() % 100
    tmp = tmp_path_factory.mktemp("faults")
    f = CliFleet(tmp, fleet_text(octet, free_port(f"127.78.{octet}.1")))
    try:
        f.cli("up")
        until(f.all_healthy, what="all healthy")
        yield f
    finally:
        f.backend.down()


@pytest.fixture(autouse=True)
def cleared(fleet: CliFleet) -> Iterator[None]:
    yield
    fleet.cli("fault", "--clear")


def endpoint(fleet: CliFleet, name: str) -> tuple[str, int]:
    device = fleet.plan.device(name)
    return device.host, device.port


def modbus(fleet: CliFleet, name: str, timeout: float = 2.0):
    from pymodbus.client import ModbusTcpClient

    host, port = endpoint(fleet, name)
    return ModbusTcpClient(host, port=port, timeout=timeout, retries=0)


def test_modbus_exception_then_clear(fleet: CliFleet) -> None:
    out = fleet.cli("fault", "pump*", "error", "4")
    assert "error 0x04 on 3 devices" in out
    client = modbus(fleet, "pump2")
    try:
        client.connect()
        reply = client.read_holding_registers(0, count=2, device_id=1)
        assert reply.isError() and reply.exception_code == 4
        fleet.cli("fault", "--clear", "pump*")
        assert client.read_holding_registers(0, count=2, device_id=1).registers == [7, 7]
    finally:
        client.close()


@pytest.mark.skipif(MBPOLL is None, reason="Debian's mbpoll is not installed")
def test_mbpoll_sees_the_exception(fleet: CliFleet) -> None:
    fleet.cli("fault", "pump1", "error", "6")
    host, port = endpoint(fleet, "pump1")
    result = subprocess.run([MBPOLL, "-m", "tcp", "-p", str(port), "-o", "2", "-a", "1", "-t", "4", "-r", "1",
                             "-c", "2", "-1", host], capture_output=True, text=True, timeout=30)
    assert "busy" in (result.stdout + result.stderr).lower()  # exception 6: Slave device busy


def test_modbus_timeout_and_latency(fleet: CliFleet) -> None:
    fleet.cli("fault", "pump3", "timeout")
    client = modbus(fleet, "pump3", timeout=0.5)
    try:
        client.connect()
        assert client.read_holding_registers(0, count=1, device_id=1).isError()
    except Exception as exc:  # pymodbus raises ModbusIOException on no answer
        assert "No response" in str(exc) or "timeout" in str(exc).lower() or "Connection" in str(exc)
    finally:
        client.close()
    fleet.cli("fault", "pump3", "latency", "300ms..400ms")  # replaces the timeout
    client = modbus(fleet, "pump3")
    try:
        client.connect()
        begun = time.monotonic()
        assert client.read_holding_registers(0, count=1, device_id=1).registers == [7]
        assert time.monotonic() - begun >= 0.29  # the injected delay, at least
    finally:
        client.close()


def test_enip_status_offline_and_drop(fleet: CliFleet) -> None:
    from pycomm3 import LogixDriver
    from pycomm3.exceptions import CommError

    host, port = endpoint(fleet, "line1")
    fleet.cli("fault", "line1", "error", "0x05:Speed")
    with LogixDriver(f"{host}:{port}") as plc:
        assert plc.read("SCADA[1]").error is None  # only Speed fails
        speed = plc.read("Speed")
        assert speed.value is None and speed.error is not None
    fleet.cli("fault", "line1", "offline", "--for", "30s")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((host, port), timeout=2).close()
    assert json.loads(fleet.cli("faults", "--json"))["line1"]["kind"] == "offline"
    fleet.cli("fault", "--clear", "line1")
    until(lambda: _accepts(host, port), what="line1 listening again")
    with LogixDriver(f"{host}:{port}") as plc:
        assert plc.read("SCADA[1]").error is None
    fleet.cli("fault", "line2", "drop")
    host2, port2 = endpoint(fleet, "line2")
    plc = LogixDriver(f"{host2}:{port2}", init_tags=False)
    with pytest.raises(CommError):  # the connection is dropped at the first request
        plc.open()
    plc.close()


def test_the_rest_of_the_fleet_is_unaffected_and_history_is_kept(fleet: CliFleet) -> None:
    fleet.cli("fault", "pump1", "offline")
    client = modbus(fleet, "pump2")  # pump2 shares pump1's worker
    try:
        client.connect()
        assert client.read_holding_registers(0, count=1, device_id=1).registers == [7]
    finally:
        client.close()
    history = fleet.cli("faults", "--history")
    assert "inject" in history and "pump1" in history and "offline" in history


def test_bad_fault_commands_change_nothing(fleet: CliFleet) -> None:
    assert "unknown fault kind 'melt'" in fleet.cli("fault", "pump1", "melt", code=2)
    assert "no device matches 'nothing*'" in fleet.cli("fault", "nothing*", "timeout", code=2)
    assert "bad --for 'soon'" in fleet.cli("fault", "pump1", "offline", "--for", "soon", code=2)
    assert json.loads(fleet.cli("faults", "--json")) == {}


def _accepts(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
        return True
    except OSError:
        return False


def test_status_shows_faulted_devices(fleet: CliFleet) -> None:
    fleet.cli("fault", "pump2", "latency", "200ms..500ms", "--for", "1h")
    status = fleet.status(code=1)  # a faulted device is not healthy...
    device = {d["name"]: d for d in status["devices"]}["pump2"]
    assert device["state"] == "faulted" and device["fault"].startswith("latency 200-500ms until ")
    assert status["faults"]["pump2"]["kind"] == "latency"
    until(lambda: fleet.invoke("status", "--json", "--faults-ok", code=None).exit_code == 0,
          what="status --faults-ok exits 0 with only injected faults")  # ...unless they are allowed
    table = fleet.cli("status", code=1)
    assert "faulted" in table and "latency 200-500ms" in table


SCHEDULED = """
[[fault]]
devices = "pump2"
kind = "error"
arg = 6
at = "0s"
for = "1h"

[[fault]]
devices = "line*"
kind = "latency"
arg = "100ms"
rate = "30/min"
stop = "10m"
for = "2s"
seed = 7
"""


def test_scheduled_faults_fire_and_are_recorded(tmp_path) -> None:
    octet = 100 + (os.getpid() + 37) % 100
    f = CliFleet(tmp_path, fleet_text(octet, free_port(f"127.78.{octet}.1")) + SCHEDULED)
    try:
        f.cli("up")
        until(lambda: any(e["device"] == "pump2" for e in json.loads(f.cli("faults", "--history", "--json"))),
              what="the timed fault recorded")
        client = modbus(f, "pump2")
        try:
            client.connect()
            reply = client.read_holding_registers(0, count=1, device_id=1)
            assert reply.isError() and reply.exception_code == 6
        finally:
            client.close()
        events = f.plan.fault_events(f.plan.device("line1").worker)
        assert events and events == f.plan.fault_events(f.plan.device("line1").worker)  # repeatable
        assert all(e["device"].startswith("line") or e["device"] == "pump2" for e in events)
    finally:
        f.backend.down()


@pytest.mark.parametrize(("row", "message"), [
    ('[[fault]]\ndevices = "nothing*"\nkind = "offline"\nat = "1s"\n',
     "fault[0]: key 'devices': 'nothing*' matches no"),
    ('[[fault]]\ndevices = "pump*"\nkind = "offline"\nat = "soon"\n', "fault[0]: key 'at': bad 'at' 'soon'"),
    ('[[fault]]\ndevices = "pump*"\nkind = "melt"\nat = "1s"\n', "fault[0]: key 'kind': unknown fault kind"),
])
def test_bad_schedule_rows_are_refused_by_validate(tmp_path, row, message) -> None:
    path = tmp_path / "fleet.toml"
    path.write_text(fleet_text(1, 1502) + row)
    from typer.testing import CliRunner

    from fleet.cli import app

    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 2 and message in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1
