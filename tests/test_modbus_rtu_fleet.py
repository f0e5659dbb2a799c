"""``kind = "modbus-rtu"`` in a fleet: units on serial lines the workers make as pseudo-terminals
(the link shown by plan and status), RTU over TCP devices, a gateway in front of two lines,
health polls over each line's own health pty, faults on units, and a ``down`` that leaves no
link or process behind.  Third-party masters judge the wire: pymodbus's serial client on a
line's link, mbpoll in RTU mode, pymodbus's TCP client (its RTU framer for RTU over TCP)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fleet.cli import app
from fleet.config import ConfigError, parse
from fleet.plan import Plan, expand
from tests.fleet_support import CliFleet, until

MBPOLL = shutil.which("mbpoll")
OCTET = 100 + os.getpid() % 100
NET = f"127.65.{OCTET}"


def fleet_text(name: str = "rtu", net: str = NET) -> str:
    return f"""
[fleet]
name = "{name}{OCTET}"
address_pool = "{net}.0/24"
devices_per_worker = 2
health_interval = 0.5
health_timeout = 1.0

[[device]]
kind = "modbus-rtu"
count = 4
name = "meter{{n}}"
line = "bus0"
registers = ["40001-40010=7", "30001=5"]

[[device]]
kind = "modbus-rtu"
count = 2
name = "valve{{n}}"
line = "bus0"
unit_id = 10
registers = ["1-8=0", "40001-40002=3"]

[[device]]
kind = "modbus-rtu"
count = 3
name = "flow{{n}}"
line = "bus1"
unit_id = 20
baud = 9600
parity = "N"
registers = ["40001~counter(rate=10, high=999)", "40002=22"]

[[device]]
kind = "modbus-rtu"
transport = "tcp"
count = 2
name = "rtcp{{n}}"
port = {15020 + OCTET}
unit_id = 5
registers = ["40001-40004=9"]

[[device]]
kind = "modbus-rtu"
transport = "gateway"
name = "gw{{n}}"
port = {15300 + OCTET}
lines = ["bus0", "bus1"]
"""


def test_plan_puts_units_on_lines_and_keeps_a_line_in_one_worker(tmp_path: Path) -> None:
    path = tmp_path / "fleet.toml"
    path.write_text(fleet_text())
    plan = expand(parse(path.read_text(), source=path))
    by = {d.name: d for d in plan.devices}
    tty = tmp_path / ".fleet" / f"rtu{OCTET}" / "tty"
    assert [by[n].endpoint for n in ("meter1", "meter4", "valve1", "valve2", "flow3")] == [
        f"{tty}/bus0#1", f"{tty}/bus0#4", f"{tty}/bus0#10", f"{tty}/bus0#11", f"{tty}/bus1#22"]
    assert by["meter1"].host == "" and by["meter1"].port == 0  # no address taken from the pool
    assert [by[n].options.unit_id for n in ("rtcp1", "rtcp2")] == [5, 5]
    assert by["rtcp1"].endpoint == f"{NET}.1:{15020 + OCTET}" and by["rtcp2"].host == f"{NET}.2"
    gateway = by["gw1"]
    assert gateway.endpoint == f"{NET}.3:{15300 + OCTET}"
    assert [u for u, _ in gateway.options.routes] == [1, 2, 3, 4, 10, 11, 20, 21, 22]
    # devices_per_worker = 2, but a line (and a gateway joining two) is never split
    line_devices = [d for d in plan.devices if d.options.transport != "tcp"]
    assert {d.worker for d in line_devices} == {"w000"} and len(line_devices) == 10
    assert {by["rtcp1"].worker, by["rtcp2"].worker} == {"w001"}
    assert Plan.from_json(plan.to_json()).devices == plan.devices
    shown = CliRunner().invoke(app, ["plan", str(path)]).output
    assert f"line bus0: {tty}/bus0 (19200 8E1), 6 units 1-4,10-11, worker w000" in shown
    assert f"line bus1: {tty}/bus1 (9600 8N1), 3 units 20-22" in shown
    assert f"gateway gw1: Modbus/TCP {NET}.3:{15300 + OCTET} -> bus0, bus1 (units 1-4,10-11,20-22)" in shown
    assert "12 devices (0 enip, 0 modbus, 12 modbus-rtu) in 2 workers" in shown


def test_units_count_on_from_the_line_and_lines_default_per_group() -> None:
    text = """
[fleet]
name = "t"
[[device]]
kind = "modbus-rtu"
count = 2
name = "a{n}"
line = "bus"
registers = ["40001=1"]
[[device]]
kind = "modbus-rtu"
count = 2
name = "b{n}"
line = "bus"
registers = ["40001=1"]
[[device]]
kind = "modbus-rtu"
name = "c{n}"
registers = ["40001=1"]
"""
    plan = expand(parse(text, source="/x/fleet.toml"))
    assert [(d.options.line, d.options.unit_id) for d in plan.devices] == [
        ("bus", 1), ("bus", 2), ("bus", 3), ("bus", 4), ("rtu2", 1)]


def test_the_readme_example_and_fleet_rtu_toml_validate(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parent.parent
    section = (root / "README.md").read_text().split("### Modbus/RTU in a fleet")[1].split("\n## ")[0]
    block = re.search(r"```toml\n(.*?)```", section, re.S).group(1)
    plan = expand(parse('[fleet]\nname = "readme"\n' + block, source=tmp_path / "fleet.toml"))
    assert [d.options.transport for d in plan.devices].count("pty") == 32
    assert plan.device("gw1").options.routes[-1][0] == 32
    plan = expand(parse((root / "fleet-rtu.toml").read_text(), source=root / "fleet-rtu.toml"))
    assert sorted({d.options.line for d in plan.devices if d.options.transport == "pty"}) == [
        "bus0", "bus1", "bus2", "bus3"]
    assert len(plan.devices) == 4 * 32 + 1 + 8
    for command in re.findall(r"^(?:mbpoll|modbus_poll) .*$", section, re.M):  # the links they open
        assert ".fleet/rtu-plant/tty/bus0" in command and plan.fleet.name == "rtu-plant"


LINE0 = 'line = "bus0"\nregisters = ["40001-40010=7", "30001=5"]'
REFUSED = [
    # (what the test changes: old -> new, the table and key named, the problem)
    ("unit_id = 10", "unit_id = 3", "device[1]", "unit_id",
     "duplicate unit id 3 on line 'bus0': 'valve1' and 'meter3'"),
    ("unit_id = 10", "unit_id = 0", "device[1]", "unit_id", "must be 1..247, got 0"),
    ("unit_id = 10", "unit_id = 248", "device[1]", "unit_id", "must be 1..247, got 248"),
    ("unit_id = 10", "unit_id = 247", "device[1]", "unit_id", "unit ids 247..248 go beyond 247"),
    ('lines = ["bus0", "bus1"]', 'lines = ["bus0", "bus7"]', "device[4]", "lines",
     "unknown line 'bus7' (the fleet's lines: bus0, bus1)"),
    ("unit_id = 20", "unit_id = 4", "device[4]", "lines",
     "unit id 4 is on line 'bus0' and on line 'bus1': a gateway routes a unit id to one line"),
    ("baud = 9600", "baud = 12", "device[2]", "baud", "bad baud rate 12"),
    ("baud = 9600", 'baud = "fast"', "device[2]", "baud", "bad baud rate 'fast'"),
    ('parity = "N"', 'parity = "X"', "device[2]", "parity", "bad parity 'X'"),
    ('parity = "N"', "stopbits = 3", "device[2]", "stopbits", "bad stop bits 3"),
    (LINE0, LINE0 + "\nbaud = 9600", "device[1]", "baud",
     "line 'bus0' has baud = 19200 here and 9600 in device[0]: a line has one setting"),
    ('line = "bus1"', 'line = "bus 1"', "device[2]", "line", "must be letters, digits"),
    (LINE0, LINE0 + "\nport = 1502", "device[0]", "port", "a unit on a serial line has none"),
    ('transport = "tcp"', 'transport = "tcp"\nbaud = 9600', "device[3]", "baud",
     'only a unit on a serial line (transport = "pty") has one'),
    ('transport = "gateway"', 'transport = "gateway"\nregisters = ["40001=1"]', "device[4]", "registers",
     "a gateway has none"),
    ('transport = "tcp"', 'transport = "serial"', "device[3]", "transport",
     "must be one of pty, tcp, gateway"),
]


@pytest.mark.parametrize(("old", "new", "table", "key", "problem"), REFUSED,
                         ids=[f"{r[3]}:{r[4][:28]}" for r in REFUSED])
def test_validate_refuses_what_up_could_not_serve(tmp_path: Path, old, new, table, key, problem) -> None:
    text = fleet_text()
    assert old in text
    path = tmp_path / "fleet.toml"
    path.write_text(text.replace(old, new, 1))
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    assert lines[0].startswith(f"cpppo-fleet: {path}: {table}: key '{key}': "), lines[0]
    assert problem in lines[0], lines[0]


def test_pty_lines_need_the_process_backend() -> None:
    text = fleet_text().replace("health_interval", 'backend = "docker"\nhealth_interval').replace(
        f'"{NET}.0/24"', '"172.31.7.0/24"')
    with pytest.raises(ConfigError) as refused:
        expand(parse(text, source="/x/fleet.toml"))
    assert refused.value.table == "device[0]" and refused.value.key == "transport"
    assert 'needs backend = "process"' in str(refused.value)


# -- a running fleet -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CliFleet]:
    f = CliFleet(tmp_path_factory.mktemp("rtufleet"), fleet_text("rtulive"))
    try:
        f.cli("up")
        until(f.all_healthy, 60, "every modbus-rtu device healthy")
        yield f
    finally:
        f.cli("down", code=None)


def link(fleet: CliFleet, line: str) -> str:
    return str(fleet.path.parent / ".fleet" / fleet.plan.fleet.name / "tty" / line)


def serial_client(path: str, baud: int = 19200, timeout: float = 1.0):
    from pymodbus import FramerType
    from pymodbus.client import ModbusSerialClient

    client = ModbusSerialClient(path, framer=FramerType.RTU, baudrate=baud, parity="N", stopbits=1,
                                timeout=timeout, retries=0)  # a pty has no parity: 8N1
    assert client.connect()
    return client


@pytest.mark.slow
@pytest.mark.interop
def test_status_shows_every_unit_healthy_at_its_link(fleet: CliFleet) -> None:
    devices = fleet.devices()
    assert all(d["state"] == "healthy" for d in devices.values()), devices
    assert devices["valve2"]["endpoint"] == f"{link(fleet, 'bus0')}#11"
    assert devices["flow1"]["endpoint"] == f"{link(fleet, 'bus1')}#20"
    assert devices["gw1"]["endpoint"] == f"{NET}.3:{15300 + OCTET}"
    assert os.path.realpath(link(fleet, "bus0")).startswith("/dev/pts/")
    assert os.path.realpath(link(fleet, "bus0.health")).startswith("/dev/pts/")


@pytest.mark.slow
@pytest.mark.interop
def test_pymodbus_serial_client_on_the_line_beside_the_health_poller(fleet: CliFleet) -> None:
    from pymodbus.exceptions import ModbusIOException

    client = serial_client(link(fleet, "bus0"))
    try:
        for _ in range(50):  # many requests while the poller polls every unit over bus0.health
            for unit in (1, 2, 3, 4):
                assert client.read_holding_registers(0, count=3, device_id=unit).registers == [7, 7, 7]
        assert client.read_input_registers(0, count=1, device_id=4).registers == [5]
        assert not client.write_registers(0, [100, 200], device_id=11).isError()
        assert client.read_holding_registers(0, count=2, device_id=11).registers == [100, 200]
        assert client.read_holding_registers(0, count=2, device_id=10).registers == [3, 3]  # its own map
        assert not client.write_coil(2, True, device_id=10).isError()
        assert client.read_coils(0, count=4, device_id=10).bits[:4] == [False, False, True, False]
        assert client.read_holding_registers(5, count=1, device_id=10).exception_code == 2
        with pytest.raises(ModbusIOException):  # no unit 9 on the line: nobody answers
            client.read_holding_registers(0, count=1, device_id=9)
    finally:
        client.close()
    client = serial_client(link(fleet, "bus1"), baud=9600)
    try:
        assert client.read_holding_registers(1, count=1, device_id=22).registers == [22]
    finally:
        client.close()


@pytest.mark.slow
@pytest.mark.interop
@pytest.mark.skipif(MBPOLL is None, reason="Debian's mbpoll is not installed (apt-get install mbpoll)")
def test_mbpoll_on_the_line(fleet: CliFleet) -> None:
    def mbpoll(*args: str) -> str:
        result = subprocess.run([MBPOLL, "-m", "rtu", "-b", "19200", "-P", "none", "-o", "1", *args],
                                capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    both = mbpoll("-a", "1,3", "-t", "4", "-r", "1", "-c", "2", "-1", link(fleet, "bus0"))  # multidrop
    assert re.findall(r"Polling slave (\d+)", both) == ["1", "3"]
    assert re.findall(r"^\[\d\]:\s+(\d+)", both, re.M) == ["7", "7", "7", "7"]
    mbpoll("-a", "2", "-t", "4", "-r", "3", "-1", link(fleet, "bus0"), "4242")
    ours = subprocess.run([sys.executable, "-m", "cpppo.bin.modbus_poll", "--serial", link(fleet, "bus0"),
                           "--parity", "N", "-u", "4", "-c", "1", "30001"],
                          capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert ours.stdout.split() == ["30001", "==", "5"], ours.stdout + ours.stderr
    read = mbpoll("-a", "2", "-t", "4", "-r", "3", "-1", link(fleet, "bus0"))
    assert re.findall(r"^\[3\]:\s+(\d+)", read, re.M) == ["4242"]


@pytest.mark.slow
@pytest.mark.interop
def test_rtu_over_tcp_and_the_gateway(fleet: CliFleet) -> None:
    from pymodbus import FramerType
    from pymodbus.client import ModbusTcpClient

    rtcp = fleet.plan.device("rtcp2")
    client = ModbusTcpClient(rtcp.host, port=rtcp.port, framer=FramerType.RTU, timeout=2, retries=0)
    try:
        assert client.connect()
        assert client.read_holding_registers(0, count=4, device_id=5).registers == [9, 9, 9, 9]
        assert not client.write_register(3, 77, device_id=5).isError()
        assert client.read_holding_registers(3, count=1, device_id=5).registers == [77]
    finally:
        client.close()
    gw = fleet.plan.device("gw1")
    client = ModbusTcpClient(gw.host, port=gw.port, timeout=2, retries=0)
    try:
        assert client.connect()
        assert client.read_holding_registers(1, count=1, device_id=21).registers == [22]  # on bus1
        assert client.read_input_registers(0, count=1, device_id=1).registers == [5]  # on bus0
        assert client.read_holding_registers(0, count=1, device_id=99).exception_code == 0x0A  # no path
        fleet.cli("fault", "meter2", "timeout")
        try:
            assert client.read_holding_registers(0, count=1, device_id=2).exception_code == 0x0B  # silent
            fleet.cli("fault", "meter3", "error", "4")
            assert client.read_holding_registers(0, count=1, device_id=3).exception_code == 4
        finally:
            fleet.cli("fault", "--clear")
        assert client.read_holding_registers(0, count=1, device_id=2).registers == [7]
    finally:
        client.close()


@pytest.mark.slow
@pytest.mark.interop
def test_a_faulted_unit_is_silent_on_the_line_and_shown_faulted(fleet: CliFleet) -> None:
    from pymodbus.exceptions import ModbusIOException

    fleet.cli("fault", "flow2", "offline")
    try:
        client = serial_client(link(fleet, "bus1"), baud=9600, timeout=0.5)
        try:
            with pytest.raises(ModbusIOException):
                client.read_holding_registers(1, count=1, device_id=21)
            assert client.read_holding_registers(1, count=1, device_id=22).registers == [22]
        finally:
            client.close()
        until(lambda: fleet.devices()["flow2"]["state"] == "faulted", 30, "flow2 shown faulted")
        # its neighbours, polled over the same health pty after it, are not made late by it
        since = time.time()
        until(lambda: all((fleet.devices()[n]["checked"] or 0) > since + 1.0 for n in ("flow1", "flow3")),
              30, "two more sweeps")
        devices = fleet.devices()
        assert [devices[n]["last_ok"] for n in ("flow1", "flow3", "flow2")] == [True, True, False]
    finally:
        fleet.cli("fault", "--clear")
    until(fleet.all_healthy, 30, "healthy again")


@pytest.mark.slow
def test_a_killed_worker_comes_back_with_its_lines(fleet: CliFleet) -> None:
    pid = fleet.pids()["w000"]
    os.kill(pid, signal.SIGKILL)
    until(lambda: fleet.pids().get("w000") not in (None, pid), 60, "w000 restarted")
    until(fleet.all_healthy, 60, "healthy after the restart")
    client = serial_client(link(fleet, "bus0"))
    try:
        assert client.read_holding_registers(0, count=1, device_id=4).registers == [7]
    finally:
        client.close()


@pytest.mark.slow
def test_down_leaves_no_link_and_no_process(tmp_path: Path) -> None:
    f = CliFleet(tmp_path, fleet_text("rtudown", net=f"127.66.{OCTET}"))
    try:
        f.cli("up")
        until(f.all_healthy, 60, "healthy")
        pids = list(f.pids().values())
        links = [link(f, name) for name in ("bus0", "bus0.health", "bus1", "bus1.health")]
        assert all(os.path.islink(p) for p in links)
        os.kill(f.pids()["w000"], signal.SIGSTOP)  # a worker that cannot clean up after itself
    finally:
        f.cli("down")
    assert not any(os.path.lexists(p) for p in links)
    assert not (tmp_path / ".fleet").exists()  # links' folders too (the state is in --state-dir)
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"


@pytest.mark.slow
def test_a_line_grows_without_restarting_its_worker(tmp_path: Path) -> None:
    """``up --only 'meter*'`` then ``up``: the valves join bus0 in the running worker; the
    meters' line (its link, its worker) stays as it was."""
    f = CliFleet(tmp_path, fleet_text("rtugrow", net=f"127.67.{OCTET}"))
    try:
        f.cli("up", "--only", "meter*")
        until(lambda: all(d["state"] == "healthy" for n, d in f.devices().items() if n.startswith("meter")),
              60, "the meters healthy")
        pid, pts = f.pids()["w000"], os.path.realpath(link(f, "bus0"))
        f.cli("up")
        until(f.all_healthy, 60, "every device healthy")
        assert f.pids()["w000"] == pid and os.path.realpath(link(f, "bus0")) == pts
        client = serial_client(link(f, "bus0"))
        try:
            assert client.read_holding_registers(0, count=2, device_id=11).registers == [3, 3]
            assert client.read_holding_registers(0, count=1, device_id=1).registers == [7]
        finally:
            client.close()
    finally:
        f.cli("down")
