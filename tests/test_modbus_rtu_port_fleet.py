"""A ``kind = "modbus-rtu"`` line on a serial port named in fleet.toml (``serial = PATH``), not
a pty the fleet makes: the worker opens the port with pyserial; no link, no health pty (health
is the worker's report that it has the port open); ``down`` leaves the user's device node
alone.  The "port" is one end of a socat pty pair the test makes; pymodbus's serial client on
the other end is the master that judges the wire, and its TCP client a gateway in front."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fleet.cli import app
from tests.fleet_support import CliFleet, until
from tests.test_modbus_rtu_fleet import serial_client
from tests.test_modbus_rtu_support import SOCAT, pty_pair

OCTET = 100 + os.getpid() % 100


def port_fleet(port: str, name: str = "rtuport", more: str = "") -> str:
    return f"""
[fleet]
name = "{name}{OCTET}"
address_pool = "127.68.{OCTET}.0/24"
health_interval = 0.5
health_timeout = 1.0
{more}
[[device]]
kind = "modbus-rtu"
count = 3
name = "meter{{n}}"
line = "field"
serial = "{port}"
baud = 9600
parity = "N"
registers = ["40001-40004=7", "1-8=0"]
"""


def refused(tmp_path: Path, text: str) -> str:
    path = tmp_path / "fleet.toml"
    path.write_text(text)
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0].removeprefix(f"cpppo-fleet: {path}: ")


def test_validate_refuses_a_port_that_is_missing_or_no_character_device(tmp_path: Path) -> None:
    missing = refused(tmp_path, port_fleet(str(tmp_path / "ttyUSB9")))
    assert missing.startswith("device[0]: key 'serial': ") and "No such file or directory" in missing, missing
    (tmp_path / "plain").write_text("")
    plain = refused(tmp_path, port_fleet(str(tmp_path / "plain")))
    assert plain.startswith("device[0]: key 'serial': ") and "is not a character device" in plain, plain
    up = CliRunner().invoke(app, ["up", str(tmp_path / "fleet.toml"), "--state-dir", str(tmp_path / "state")])
    assert up.exit_code == 2 and "is not a character device" in up.output, up.output  # what validate refuses
    assert not (tmp_path / "state" / "plan.json").exists()


def test_validate_refuses_one_port_on_two_lines_and_a_port_under_docker(tmp_path: Path) -> None:
    second = """
[[device]]
kind = "modbus-rtu"
name = "valve{n}"
line = "other"
serial = "/dev/null"
registers = ["40001=1"]
"""
    twice = refused(tmp_path, port_fleet("/dev/null") + second)
    assert twice.startswith("device[1]: key 'serial': ") and "is the port of line 'field' too" in twice, twice
    docker = refused(tmp_path, port_fleet("/dev/null", more='backend = "docker"').replace(
        f"127.68.{OCTET}.0/24", "172.31.7.0/24"))
    assert docker.startswith("device[0]: key 'serial': ") and 'needs backend = "process"' in docker, docker
    ok = tmp_path / "ok.toml"
    ok.write_text(port_fleet("/dev/null"))
    shown = CliRunner().invoke(app, ["validate", str(ok)])
    assert shown.exit_code == 0 and "3 devices (0 enip, 0 modbus, 3 modbus-rtu)" in shown.output, shown.output


@pytest.mark.slow
@pytest.mark.interop
@pytest.mark.skipif(SOCAT is None, reason="Debian's socat is not installed (apt-get install socat)")
def test_a_line_on_a_serial_port_serves_a_third_party_master(tmp_path: Path) -> None:
    from pymodbus.exceptions import ModbusIOException

    with pty_pair() as (ours, theirs):
        nodes = {p: os.path.realpath(p) for p in (ours, theirs)}
        gateway = f"""
[[device]]
kind = "modbus-rtu"
transport = "gateway"
name = "gw{{n}}"
port = {15400 + OCTET}
lines = ["field"]
"""
        f = CliFleet(tmp_path, port_fleet(ours) + gateway)
        pids: list[int] = []
        try:
            shown = CliRunner().invoke(app, ["plan", str(f.path)]).output
            assert (f"line field: serial port {ours} (9600 8N1), 3 units 1-3, worker w000; health: the "
                    "worker's report that it has the port open (no poll on the line)") in shown, shown
            f.cli("up")
            until(f.all_healthy, 60, "every unit on the port healthy")
            pids = list(f.pids().values())
            devices = f.devices()
            assert [devices[f"meter{n}"]["endpoint"] for n in (1, 2, 3)] == [f"{ours}#{u} (port)"
                                                                             for u in (1, 2, 3)]
            client = serial_client(theirs, 9600)
            try:
                assert client.read_holding_registers(0, count=4, device_id=2).registers == [7, 7, 7, 7]
                assert not client.write_registers(1, [11, 12], device_id=3).isError()
                assert client.read_holding_registers(0, count=3, device_id=3).registers == [7, 11, 12]
                assert client.read_holding_registers(1, count=1, device_id=1).registers == [7]  # its own map
                assert not client.write_coil(4, True, device_id=1).isError()
                assert client.read_coils(0, count=8, device_id=1).bits[4] is True
                with pytest.raises(ModbusIOException):  # no unit 9 on the line: nobody answers
                    client.read_holding_registers(0, count=1, device_id=9)
            finally:
                client.close()
            from pymodbus.client import ModbusTcpClient

            gw = f.devices()["gw1"]
            host, port = gw["endpoint"].rsplit(":", 1)
            tcp = ModbusTcpClient(host, port=int(port), timeout=2, retries=0)
            try:  # the gateway reaches the port's units in-process
                assert tcp.connect()
                assert tcp.read_holding_registers(0, count=3, device_id=3).registers == [7, 11, 12]
                assert tcp.read_holding_registers(0, count=1, device_id=9).exception_code == 0x0A
            finally:
                tcp.close()
            assert not (tmp_path / ".fleet").exists()  # no link, no health pty
            assert not os.path.lexists(f"{ours}.health")
        finally:
            f.cli("down", code=None)
        for path, node in nodes.items():  # the user's nodes: untouched
            assert os.path.islink(path) and os.path.realpath(path) == node and os.path.exists(node)
        for pid in pids:  # no worker behind (gone, or a zombie of the dead supervisor)
            stat = Path(f"/proc/{pid}/stat")
            assert not stat.parent.exists() or stat.read_text().split()[2] == "Z"


@pytest.mark.slow
@pytest.mark.skipif(SOCAT is None, reason="Debian's socat is not installed (apt-get install socat)")
def test_health_of_a_port_line_is_the_workers_report(tmp_path: Path) -> None:
    """The far side of the port goes away (socat, the "cable", ends): the worker keeps the
    port open but cannot read it, and status says so; nothing pretends a poll succeeded."""
    import subprocess

    from tests.support import stop

    ours, theirs = tmp_path / "a", tmp_path / "b"
    cable = subprocess.Popen([SOCAT, f"pty,raw,echo=0,link={ours}", f"pty,raw,echo=0,link={theirs}"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    f = None
    try:
        until(lambda: ours.exists() and theirs.exists(), 10, "socat's pty pair")
        f = CliFleet(tmp_path, port_fleet(str(ours), name="rtuhealth"))
        f.cli("up")
        until(f.all_healthy, 60, "every unit on the port healthy")
        stop(cable)
        until(lambda: all(d["state"] == "down" and "not reading it" in (d["error"] or "")
                          for d in f.devices().values()), 60, "the units down: the port is not read")
    finally:
        stop(cable)
        if f is not None:
            f.cli("down", code=None)
