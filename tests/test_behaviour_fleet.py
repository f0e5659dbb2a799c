"""A living fleet on the process backend: moving and linked values in fleet.toml, retained
client writes across a worker SIGKILL, `restart` and `down`/`up`, and behaviour errors at
validate time naming file, table, key and problem."""

from __future__ import annotations

import math
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fleet_support import CliFleet, until
from tests.support import free_port

pytestmark = pytest.mark.slow


def fleet_text(octet: int, port: int) -> str:
    return f"""
[fleet]
name = "living{octet}"
address_pool = "127.79.{octet}.0/24"
health_interval = 0.5
health_timeout = 1.0
devices_per_worker = 2
retain = true

[[device]]
kind = "modbus"
count = 2
name = "pump{{n}}"
port = {port}
registers = ["40001-40004=0", "1=0", "30001-30002:float32~expr(r1 * 120 + n)", "30003~counter(rate=20)"]

[[device]]
kind = "enip"
count = 1
name = "line{{n}}"
port = {port}
retain = true
tags = ["Speed_SP=REAL=100", "Motor_Speed=REAL~lag(Speed_SP, tau=0.5)", "Recipe=STRING='none'"]

[[device]]
kind = "modbus"
count = 1
name = "tank{{n}}"
port = {port}
retain = false
registers = ["40001-40002=5"]
"""


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[CliFleet]:
    octet = 100 + os.getpid() % 100
    f = CliFleet(tmp_path, fleet_text(octet, free_port(f"127.79.{octet}.1")))
    try:
        yield f
    finally:
        f.backend.down()


def _endpoints(fleet: CliFleet) -> dict[str, tuple[str, int]]:
    return {d.name: (d.host, d.port) for d in fleet.plan.devices}


def _modbus(endpoint: tuple[str, int]):
    from pymodbus.client import ModbusTcpClient

    client = ModbusTcpClient(endpoint[0], port=endpoint[1], timeout=2, retries=1)
    assert client.connect()
    return client


def test_fleet_values_move_follow_writes_and_are_retained(fleet: CliFleet) -> None:
    from pycomm3 import LogixDriver

    fleet.cli("up")
    until(fleet.all_healthy, what="all healthy")
    where = _endpoints(fleet)
    client = _modbus(where["pump2"])
    try:
        f32 = client.DATATYPE.FLOAT32
        first = client.read_input_registers(2, count=1, device_id=1).registers[0]
        until(lambda: client.read_input_registers(2, count=1, device_id=1).registers[0] != first,
              timeout=5, what="the counter moving")
        assert client.convert_from_registers(client.read_input_registers(0, count=2, device_id=1).registers,
                                             f32) == 2.0  # n = 2
        assert not client.write_coil(0, True, device_id=1).isError()
        assert client.convert_from_registers(client.read_input_registers(0, count=2, device_id=1).registers,
                                             f32) == 122.0
        assert not client.write_registers(1, [11, 12], device_id=1).isError()

        def counts() -> int:
            return client.read_input_registers(2, count=1, device_id=1).registers[0]

        def still() -> bool:
            before = counts()
            time.sleep(0.3)  # 6 counts at 20/s, were it moving
            return counts() == before

        fleet.cli("fault", "pump2", "freeze")  # moving values stop moving
        until(still, timeout=5, what="the freeze fault applied")
        frozen = counts()
        fleet.cli("fault", "--clear", "pump2")
        until(lambda: counts() != frozen, timeout=5, what="the counter moving again")
    finally:
        client.close()
    with LogixDriver("{}:{}".format(*where["line1"])) as plc:
        assert plc.write("Speed_SP", 1500.0).error is None and plc.write("Recipe", "rye").error is None
        until(lambda: abs(plc.read("Motor_Speed").value - 1500) < 1, timeout=10, what="the lag converging")

    tank = _modbus(where["tank1"])  # a group with retain = false in a fleet that retains
    try:
        assert not tank.write_registers(0, [9, 9], device_id=1).isError()
        assert tank.read_holding_registers(0, count=2, device_id=1).registers == [9, 9]
    finally:
        tank.close()

    worker = {d.name: d.worker for d in fleet.plan.devices}
    pids = fleet.pids()
    os.kill(pids[worker["pump2"]], signal.SIGKILL)  # right after the acknowledged writes
    os.kill(pids[worker["line1"]], signal.SIGKILL)
    until(lambda: all(fleet.pids().get(w) not in (None, pids[w]) for w in {worker["pump2"], worker["line1"]}),
          what="workers restarted")
    until(fleet.all_healthy, what="all healthy after SIGKILL")

    def check() -> None:
        client = _modbus(where["pump2"])
        try:
            assert client.read_holding_registers(0, count=4, device_id=1).registers == [0, 11, 12, 0]
            assert client.read_coils(0, count=1, device_id=1).bits[0] is True
        finally:
            client.close()
        with LogixDriver("{}:{}".format(*where["line1"])) as plc:
            assert plc.read("Speed_SP").value == 1500.0 and plc.read("Recipe").value == "rye"

    check()
    fleet.cli("restart", "pump*")
    until(fleet.all_healthy, what="all healthy after restart")
    check()
    fleet.cli("down")
    time.sleep(0.2)
    fleet.cli("up")
    until(fleet.all_healthy, what="all healthy after down/up")
    check()
    assert (fleet.state / "retain" / "pump2.journal").is_file()
    tank = _modbus(where["tank1"])
    try:  # not retained: back to its initial values
        assert tank.read_holding_registers(0, count=2, device_id=1).registers == [5, 5]
    finally:
        tank.close()
    assert not (fleet.state / "retain" / "tank1.journal").exists()


@pytest.mark.parametrize("registers, problem", [
    ('"40001~wobble()"', "unknown behaviour 'wobble'"),
    ('"40001~expr(r40002)"', "unknown register 'r40002'"),
    ('"40001~sine(amplitude=100)"', "outside uint16's 0..65535"),
    ('"40001~playback(\'missing.csv\')"', "missing.csv: No such file or directory"),
    ('"40001~sine(amplitude=n * 10000, offset=40000)"', "outside uint16"),  # only the last device
    ('"40001~sine(amplitude=(n % 4) * 20000, offset=30000)"', "outside uint16's 0..65535 (on device n = 2)"),
    ('"40001-40004~counter(high=1000 + (n == 3) * i * 30000)"',
     "0..91000, outside uint16's 0..65535 (on device n = 3)"),  # element 3 of device 3 only
    ('"30001-30002:float32~playback(\'level.csv\', speed=n % 3)"', "not 0 (on device n = 3)"),
])
def test_validate_names_file_table_key_and_problem(tmp_path: Path, registers: str, problem: str) -> None:
    path = tmp_path / "fleet.toml"
    path.write_text(f"""
[fleet]
name = "bad"
[[device]]
kind = "modbus"
count = 5
name = "pump{{n}}"
registers = ["40010=1", {registers}]
""")
    (tmp_path / "level.csv").write_text("0,10\n10,20\n")
    from typer.testing import CliRunner

    from fleet.cli import app

    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code != 0
    line = [ln for ln in result.output.splitlines() if ln.strip()][-1]
    assert str(path) in line and "device[0]" in line and "registers" in line, result.output
    assert problem in line, result.output


def test_playback_files_are_relative_to_the_fleet_file(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from fleet.cli import app
    from fleet.config import load
    from fleet.plan import expand
    from fleet.worker import build

    (tmp_path / "level.csv").write_text("0,10\n10,20\n")
    path = tmp_path / "fleet.toml"
    path.write_text("""
[fleet]
name = "played"
[[device]]
kind = "enip"
count = 2
name = "tank{n}"
tags = ["Level=REAL~playback('level.csv', speed=n)"]
""")
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    device = build(expand(load(path)).devices[1])
    assert 10 <= device.tag("Level").attribute[0] <= 20


def test_validate_checks_every_device_whose_parameters_name_n(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from fleet.cli import app

    path = tmp_path / "fleet.toml"

    def validate(amplitude: str) -> tuple[int, str]:
        path.write_text(f"""
[fleet]
name = "patterned"
[[device]]
kind = "enip"
count = 10
name = "plc{{n}}"
tags = ["SP=REAL", "A=INT~sine(amplitude={amplitude}, period=10)", "B=REAL~lag(SP * n, tau=1)"]
""")
        result = CliRunner().invoke(app, ["validate", str(path)])
        return result.exit_code, [ln for ln in result.output.splitlines() if ln.strip()][-1]

    code, line = validate("(n % 3) * 10000")  # every device fits: at most 20000
    assert code == 0, line
    code, line = validate("(n % 5) * 10000")  # the first (n = 1) and last (n = 10) fit, n = 4 does not
    assert code == 2 and str(path) in line and "device[0]" in line and "'tags'" in line, line
    assert line.endswith("tag 'A': behaviour 'sine(amplitude=(n % 5) * 10000, period=10)' reaches "
                         "-40000..40000, outside INT's -32768..32767 (on device n = 4)"), line


def test_the_example_fleet_is_alive() -> None:
    """The repository's fleet.toml as its comments describe it, each kind's device built as the
    worker builds it, on a fake clock: the lines' Motor_Speed lags its setpoint while Running and
    their counts count, the pumps' flow and pressure follow the run coil, the meters follow the
    daily load curve with noise."""
    from datetime import UTC, datetime

    from cpppo.behaviour import FakeClock
    from cpppo.modbus.address import REGISTER_TYPES
    from fleet.config import load
    from fleet.plan import expand
    from fleet.worker import build
    from tests.support import ROOT

    devices = {d.name: d for d in expand(load(ROOT / "fleet.toml")).devices}
    f32 = REGISTER_TYPES["float32"]
    eight = datetime(2026, 3, 2, 8, 0, tzinfo=UTC).timestamp()  # 08:00 UTC

    def built(name: str):
        device = build(devices[name])
        clock = device.plant.clock = FakeClock(wall=eight)
        return device, clock, devices[name].n

    line, clock, n = built("line007")
    tag = line.tag
    assert tag("Motor_Speed").attribute[0] == pytest.approx(0, abs=3)
    clock.advance(4)  # one time constant toward Speed_SP * Running = 1500
    assert tag("Motor_Speed").attribute[0] == pytest.approx(1500 * (1 - math.exp(-1)), abs=3)
    clock.advance(60)
    assert tag("Motor_Speed").attribute[0] == pytest.approx(1500, abs=3)
    tag("Speed_SP").attribute[0] = 1200.0  # a client's new setpoint
    clock.advance(60)
    assert tag("Motor_Speed").attribute[0] == pytest.approx(1200, abs=3)
    tag("Running").attribute[0] = False  # stopped: the motor runs down
    clock.advance(60)
    assert tag("Motor_Speed").attribute[0] == pytest.approx(0, abs=3)
    rates = [(i + 1) * (1 + n % 5) for i in range(16)]
    assert tag("Counts").attribute[0:16] == [round(r * clock.elapsed()) for r in rates]
    clock.advance(10)
    assert tag("Counts").attribute[0:16] == [round(r * clock.elapsed()) for r in rates]

    pump, clock, n = built("pump05")
    assert f32.decode(pump.read(30001, 2)) == pytest.approx(0, abs=4)  # flow: stopped
    assert f32.decode(pump.read(30003, 2)) == pytest.approx(1.2, abs=0.1)  # pressure: static head
    assert pump.handle(1, bytes.fromhex("05 0000 ff00")).hex() == "050000ff00"  # coil 1: run
    clock.advance(30)
    assert f32.decode(pump.read(30001, 2)) == pytest.approx(110 + n % 20, abs=4)
    assert f32.decode(pump.read(30003, 2)) == pytest.approx(1.2 + 4.5, abs=0.1)
    assert pump.handle(1, bytes.fromhex("05 0000 0000")).hex() == "0500000000"  # stop
    clock.advance(30)
    assert f32.decode(pump.read(30001, 2)) == pytest.approx(0, abs=4)

    meter, clock, _ = built("meter03")
    morning = [f32.decode(meter.read(30001, 2)) for _ in range(20) if not clock.advance(0.5)]
    assert all(300 < kw < 340 for kw in morning) and len(set(morning)) > 10  # 08:00: 320 kW, noisy
    clock.advance(10 * 3600 - 10)  # 18:00
    assert f32.decode(meter.read(30001, 2)) == pytest.approx(360, abs=15)
    clock.advance(9.5 * 3600)  # 03:30 the next day: between 150 and 155
    assert f32.decode(meter.read(30001, 2)) == pytest.approx(152.5, abs=15)
    assert 220 < meter.read(30003)[0] < 240  # the voltage
