"""``kind = "modbus-rtu"`` in the fleet: units on pty lines the fleet creates (the link shown
by plan and status), RTU over TCP devices, a gateway, health polls over the line, and a
``down`` that leaves no pty link behind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cpppo.modbus import pdu
from cpppo.modbus.rtu_client import RtuClient
from cpppo.modbus.serial_line import LineSettings
from fleet.config import ConfigError, parse
from fleet.plan import expand
from tests.fleet_support import CliFleet, until

NET = f"127.62.{os.getpid() % 250}"
FLEET = f"""
[fleet]
name = "rtu{os.getpid()}"
address_pool = "{NET}.0/24"
devices_per_worker = 2
health_interval = 0.5

[[device]]
kind = "modbus-rtu"
count = 3
name = "meter{{n}}"
line = "bus0"
registers = ["40001-40010=7", "30001=5"]
gateway = "{NET}.200:1502"

[[device]]
kind = "modbus-rtu"
count = 2
name = "valve{{n}}"
line = "bus0"
unit_id = 10
registers = ["1-8=0", "40001=3"]

[[device]]
kind = "modbus-rtu"
count = 2
name = "rtcp{{n}}"
transport = "tcp"
port = 15020
registers = ["40001=9"]
"""


def test_plan_lines_units_links_and_workers(tmp_path):
    path = tmp_path / "fleet.toml"
    path.write_text(FLEET)
    plan = expand(parse(FLEET, source=path))
    by = {d.name: d for d in plan.devices}
    link = str(tmp_path / ".fleet" / f"rtu{os.getpid()}" / "tty" / "bus0")
    assert [by[n].endpoint for n in ("meter1", "meter3", "valve1", "valve2")] == [
        f"{link}#1", f"{link}#3", f"{link}#10", f"{link}#11"]
    assert by["bus0-gw"].endpoint == f"{NET}.200:1502" and by["bus0-gw"].rtu.units == (1, 2, 3, 10, 11)
    assert by["rtcp1"].endpoint.endswith(":15020") and by["rtcp1"].rtu.unit == 1
    # a line is never split across workers, though devices_per_worker is 2
    assert {by[n].worker for n in ("meter1", "meter2", "meter3", "valve1", "valve2", "bus0-gw")} == {"w000"}
    again = type(plan).from_json(plan.to_json())
    assert again.devices == plan.devices


@pytest.mark.parametrize(("old", "new", "key", "message"), [
    ('unit_id = 10', 'unit_id = 3', "unit_id", "unit id 3 of 'valve1' is taken on line bus0"),
    ('unit_id = 10', 'unit_id = 247', "unit_id", "beyond 247"),
    ('transport = "tcp"', 'transport = "serial"', "transport", "must be one of pty, tcp"),
    ('unit_id = 10', 'unit_id = 10\nparity = "X"', "parity", "bad parity 'X'"),
    ('line = "bus0"', 'line = "a b"', "line", "must be letters, digits"),
    ('transport = "tcp"', 'transport = "tcp"\ngateway = "1.2.3.4"', "gateway", "in front of a pty line"),
])
def test_config_errors_name_the_key(old, new, key, message):
    with pytest.raises(ConfigError) as error:
        expand(parse(FLEET.replace(old, new, 1), source=Path("/tmp/x/fleet.toml")))
    assert error.value.key == key and message in str(error.value), str(error.value)


def test_pty_lines_on_docker_are_refused():
    text = FLEET.replace('devices_per_worker = 2', 'devices_per_worker = 2\nbackend = "docker"').replace(
        f'"{NET}.0/24"', '"172.31.7.0/24"').replace(f"{NET}.200", "172.31.7.200")
    with pytest.raises(ConfigError, match="pty lines need backend"):
        expand(parse(text, source=Path("/tmp/x/fleet.toml")))


def test_fleet_up_status_third_party_master_down(tmp_path):
    from pymodbus.client import ModbusTcpClient

    fleet = CliFleet(tmp_path, FLEET)
    link = fleet.plan.device("meter1").rtu.link
    try:
        fleet.cli("up")
        until(fleet.all_healthy, 30, "every modbus-rtu device healthy")
        status = fleet.devices()
        assert status["valve2"]["endpoint"] == f"{link}#11"
        master = RtuClient(serial=link, settings=LineSettings(19200, "E", 1), timeout=2.0)
        try:                                        # a master on the line, beside the health poller
            assert master.request(pdu.ReadRequest(3, 0, 2), unit=2) == (7, 7)
            assert master.request(pdu.ReadRequest(1, 0, 3), unit=10) == (False,) * 3
            with pytest.raises(TimeoutError):
                RtuClient(serial=link, timeout=0.3).request(pdu.ReadRequest(3, 0, 1), unit=5)
        finally:
            master.close()
        gateway = ModbusTcpClient(f"{NET}.200", port=1502, timeout=3, retries=0)
        try:
            assert gateway.connect()
            assert gateway.read_holding_registers(0, count=1, device_id=11).registers == [3]
            assert gateway.read_holding_registers(0, count=1, device_id=4).exception_code == 0x0A
        finally:
            gateway.close()
        tcp = RtuClient(host=fleet.plan.device("rtcp2").host, port=15020, timeout=2.0)
        try:
            assert tcp.request(pdu.ReadRequest(3, 0, 1), unit=1) == (9,)
        finally:
            tcp.close()
    finally:
        fleet.cli("down")
    assert not os.path.lexists(link) and not os.path.lexists(f"{link}.health")
