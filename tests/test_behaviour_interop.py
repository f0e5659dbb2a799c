"""Moving, linked and retained values seen by third-party clients over the wire: pycomm3
against our ENIP server and pymodbus against our Modbus simulator, on a fake clock (shapes
checked exactly) and on the real clock (the single simulators' command lines, SIGKILL and
restart with --retain)."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time

import pytest

from cpppo.behaviour import FakeClock
from cpppo.enip.device.model import Device
from cpppo.enip.server.background import serve_in_thread
from cpppo.modbus.device import ModbusDevice
from tests.support import free_port, running, wait_port
from tests.test_modbus_support import HOST, ServerThread

pytestmark = pytest.mark.interop

ENIP_TAGS = ["Counts=INT~counter(rate=1000)", "Wave=REAL~sine(amplitude=10, period=20, offset=50)",
             "Speed_SP=REAL=0", "Motor_Speed=REAL~lag(Speed_SP, tau=4)", "Pump_Run=BOOL",
             "Flow=REAL~expr(Pump_Run * 120)", "Level=REAL~playback({csv!r})"]


@pytest.fixture
def csv_file(tmp_path):
    path = tmp_path / "level.csv"
    path.write_text("time,value\n0,10\n4,30\n8,20\n")
    return path


@pytest.fixture
def enip(csv_file):
    clock = FakeClock(wall=0.0)
    device = Device.from_specs([t.format(csv=str(csv_file)) for t in ENIP_TAGS], clock=clock)
    with serve_in_thread(device) as server:
        yield server, clock


def test_pycomm3_sees_a_counter_rise_and_wrap_and_a_sine_at_its_period(enip):
    from pycomm3 import LogixDriver

    server, clock = enip
    with LogixDriver(f"127.0.0.1:{server.port}") as plc:
        counts, waves = [], []
        for _ in range(40):
            counts.append(plc.read("Counts").value)
            waves.append(plc.read("Wave").value)
            clock.advance(1.0)
    assert counts[:3] == [0, 1000, 2000] and counts[32] == 32000
    assert counts[33] == 33000 - 65536  # wrapped at INT's range
    assert all(40 - 1e-4 <= w <= 60 + 1e-4 for w in waves)
    assert waves[5] == pytest.approx(60, abs=1e-4) and waves[15] == pytest.approx(40, abs=1e-4)
    assert waves[:20] == pytest.approx(waves[20:], abs=1e-4)


def test_pycomm3_lag_converges_to_a_written_setpoint_and_flow_follows_the_run_bit(enip):
    from pycomm3 import LogixDriver

    server, clock = enip
    with LogixDriver(f"127.0.0.1:{server.port}") as plc:
        assert plc.read("Motor_Speed").value == 0
        assert plc.write("Speed_SP", 1500.0).error is None
        clock.advance(4)
        assert plc.read("Motor_Speed").value == pytest.approx(1500 * (1 - math.exp(-1)), rel=1e-5)
        clock.advance(60)
        assert plc.read("Motor_Speed").value == pytest.approx(1500, rel=1e-4)
        assert plc.read("Flow").value == 0
        assert plc.write("Pump_Run", True).error is None
        assert plc.read("Flow").value == 120
        refused = plc.write("Flow", 5.0)
        assert refused.error and plc.read("Flow").value == 120


def test_pycomm3_reads_a_played_back_series(enip, csv_file):
    from pycomm3 import LogixDriver

    server, clock = enip
    with LogixDriver(f"127.0.0.1:{server.port}") as plc:
        seen = []
        for _ in range(9):
            seen.append(plc.read("Level").value)
            clock.advance(1)
    assert seen == pytest.approx([10, 15, 20, 25, 30, 27.5, 25, 22.5, 20])


@pytest.fixture
def modbus():
    clock = FakeClock(wall=0.0)
    device = ModbusDevice.from_specs(
        ["1=0", "30001-30002:float32~expr(r1 * 120.5)", "30003~counter(rate=7, high=20)",
         "30004-30005:float32:lo~sine(amplitude=10, period=20, offset=50)", "40001=0",
         "40002~lag(r40001, tau=4)"], clock=clock)
    thread = ServerThread()
    try:
        yield thread.serve(device), clock
    finally:
        thread.close()


def test_pymodbus_sees_counts_a_sine_a_lag_and_flow_following_the_run_coil(modbus):
    from pymodbus.client import ModbusTcpClient

    server, clock = modbus
    client = ModbusTcpClient(HOST, port=server.port, timeout=2, retries=0)
    decode = client.convert_from_registers
    f32 = client.DATATYPE.FLOAT32
    try:
        assert client.connect()
        counts, waves = [], []
        for _ in range(20):
            counts.append(client.read_input_registers(2, count=1, device_id=1).registers[0])
            words = client.read_input_registers(3, count=2, device_id=1).registers
            waves.append(decode(words, f32, word_order="little"))
            clock.advance(1)
        assert counts[:5] == [0, 7, 14, 0, 7]  # 21 wraps to 0
        assert waves[5] == pytest.approx(60, abs=1e-4) and waves[15] == pytest.approx(40, abs=1e-4)
        assert decode(client.read_input_registers(0, count=2, device_id=1).registers, f32) == 0.0
        assert not client.write_coil(0, True, device_id=1).isError()
        assert decode(client.read_input_registers(0, count=2, device_id=1).registers, f32) == 120.5
        assert client.read_holding_registers(1, count=1, device_id=1).registers == [0]
        assert not client.write_register(0, 1000, device_id=1).isError()
        clock.advance(40)
        assert client.read_holding_registers(1, count=1, device_id=1).registers == [1000]
        refused = client.write_register(1, 5, device_id=1)
        assert refused.isError() and refused.exception_code == 2
    finally:
        client.close()


# The real clock, the command lines, SIGKILL and restart.

def _kill(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(5)


def test_enip_server_retains_writes_across_sigkill(tmp_path):
    from pycomm3 import LogixDriver

    journal = tmp_path / "plc.journal"
    port = free_port()
    argv = [sys.executable, "-m", "cpppo.server.enip", "-a", f"127.0.0.1:{port}", "--retain", str(journal),
            "Speed_SP=REAL=10", "Counts=DINT~counter(rate=20)", "Recipe=STRING='none'"]
    with running(argv, listen=("127.0.0.1", port)) as proc:
        with LogixDriver(f"127.0.0.1:{port}") as plc:
            first = plc.read("Counts").value
            time.sleep(0.5)
            assert plc.read("Counts").value > first  # the real clock moves it
            assert plc.write("Speed_SP", 1234.5).error is None
            assert plc.write("Recipe", "brown bread").error is None
        _kill(proc)  # right after the replies: nothing acknowledged may be lost
    with running(argv, listen=("127.0.0.1", port)), LogixDriver(f"127.0.0.1:{port}") as plc:
        assert plc.read("Speed_SP").value == 1234.5 and plc.read("Recipe").value == "brown bread"


def test_modbus_sim_retains_writes_across_sigkill(tmp_path):
    from pymodbus.client import ModbusTcpClient

    journal = tmp_path / "pump.journal"
    port = free_port()
    argv = [sys.executable, "-m", "cpppo.bin.modbus_sim", "-a", f"127.0.0.1:{port}", "--retain", str(journal),
            "40001-40010=0", "1-8=0", "30001~counter(rate=50)"]
    with running(argv, listen=(HOST, port)) as proc:
        client = ModbusTcpClient(HOST, port=port, timeout=2, retries=0)
        try:
            assert client.connect()
            first = client.read_input_registers(0, count=1, device_id=1).registers[0]
            time.sleep(0.3)
            assert client.read_input_registers(0, count=1, device_id=1).registers[0] > first
            assert not client.write_registers(2, [11, 12], device_id=1).isError()
            assert not client.write_coil(4, True, device_id=1).isError()
        finally:
            client.close()
        _kill(proc)
    with running(argv, listen=(HOST, port)):
        wait_port(HOST, port)
        client = ModbusTcpClient(HOST, port=port, timeout=2, retries=0)
        try:
            assert client.connect()
            assert client.read_holding_registers(0, count=4, device_id=1).registers == [0, 0, 11, 12]
            assert client.read_coils(0, count=8, device_id=1).bits[:8] == [0, 0, 0, 0, 1, 0, 0, 0]
        finally:
            client.close()


@pytest.mark.parametrize("argv, message", [
    (["cpppo.server.enip", "A=REAL~expr(B)"],
     "enip_server: error: tag 'A': behaviour 'expr(B)': unknown tag 'B'"),
    (["cpppo.server.enip", "A=REAL~sine(1)", "B=REAL~wave()"], "unknown behaviour 'wave'"),
    (["cpppo.server.enip", "A=REAL~playback('/nonexistent.hst')"],
     "playback file /nonexistent.hst: No such file"),
    (["cpppo.server.enip", "A=INT~expr(B)", "B=INT~expr(A)"], "expressions form a cycle: A -> B -> A"),
    (["cpppo.bin.modbus_sim", "40001~sine(amplitude=10)"], "modbus_sim: register 40001: behaviour"),
    (["cpppo.bin.modbus_sim", "40001~expr(r1)"], "unknown register 'r1'"),
    (["cpppo.bin.modbus_sim", "40001~playback('/nonexistent.csv')"], "/nonexistent.csv: No such file"),
    (["cpppo.bin.modbus_sim", "40001~lag(r40002, tau=1)", "40002~expr(r40001)"], "expressions form a cycle"),
])
def test_command_lines_refuse_bad_behaviours_in_one_line(argv, message):
    module, *rest = argv
    result = subprocess.run([sys.executable, "-m", module, "-a", "127.0.0.1:0", *rest], capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 2 and result.stdout == ""
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_web_api_shows_moving_values_and_refuses_writes_to_them():
    from tests.test_enip_web import run_ops, served

    with served(["Counts=DINT~counter(rate=1000)", "SP=REAL=1"]) as sim:
        status, body = sim.get("api/tags/Counts/attribute[0]=5")
        assert status == 409 and "driven by its behaviour (counter)" in body["error"]
        first = sim.ok("api/tags/Counts/attribute[0]")["command"]["message"]
        time.sleep(0.3)
        assert sim.ok("api/tags/Counts/attribute[0]")["command"]["message"] != first
        sim.ok("api/tags/SP/attribute=2.5")
        with sim.connector() as conn:  # the bundled (upstream-API) client sees the same
            (status, values), = run_ops(conn, "Counts")
            assert status == 0 and values[0] > 0
            assert run_ops(conn, "Counts=(DINT)1") == [(0x0F, None)]  # privilege violation


def test_what_the_historize_command_records_plays_back_into_another_device(tmp_path):
    """`python -m cpppo.server.enip.historize` records what pycomm3 writes to one controller;
    another controller plays the recording back (slowed down 10x), and pycomm3 reads the same
    values from it in the same order."""
    from pycomm3 import LogixDriver

    recording = tmp_path / "line1.hst"
    port = free_port()
    argv = [sys.executable, "-m", "cpppo.server.enip.historize", str(recording), "-a", f"127.0.0.1:{port}",
            "Level=REAL", "Other=INT"]
    with running(argv, listen=("127.0.0.1", port)), LogixDriver(f"127.0.0.1:{port}") as plc:
        for level in (10.0, 20.0, 40.0):
            assert plc.write("Level", level).error is None and plc.write("Other", 7).error is None
            time.sleep(0.5)
    port = free_port()
    argv = [sys.executable, "-m", "cpppo.server.enip", "-a", f"127.0.0.1:{port}",
            f"Level=REAL~playback({str(recording)!r}, name='Level', speed=0.1, loop=false, "
            "interpolate=false)"]
    seen: list[float] = []
    with running(argv, listen=("127.0.0.1", port)), LogixDriver(f"127.0.0.1:{port}") as plc:
        deadline = time.monotonic() + 60
        while (not seen or seen[-1] != 40.0) and time.monotonic() < deadline:
            seen.append(plc.read("Level").value)
            time.sleep(0.2)
    assert seen[-1] == 40.0 and 20.0 in seen and set(seen) <= {10.0, 20.0, 40.0}, seen
    assert seen == sorted(seen)  # in the order recorded, each held for its recorded time x 10
