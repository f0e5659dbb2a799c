"""The living plant on structure members: ``Tank[3].Level=REAL~sine(...)`` drives one member
of one element of a structure tag, another member follows it by an expression, plain tags
read members in theirs; initial member values; driven members refuse writes; a freeze fault
holds them still; member writes are retained.  Seen by pycomm3 over the wire on a fake clock,
and refused in one line when wrong (the library, enip_server, fleet.toml)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cpppo.behaviour import FakeClock
from cpppo.enip.codec.cip import ServiceError
from cpppo.enip.device.model import Device
from cpppo.enip.server.background import serve_in_thread
from cpppo.faults import FaultState, parse_fault

TANK = "Tank={Level:REAL,Inlet:BOOL,Outlet:BOOL,Alarms:DINT[2]}"
LINE = "Line={Tanks:Tank[2],Speed:REAL}"
TAGS = ["Tank=Tank[4]", "Tank[3].Level=REAL~sine(amplitude=10, period=40, offset=50, phase=0)",
        "Tank[2].Level=REAL~expr(Tank[3].Level * 0.5 + Tank[2].Inlet * 100)", "Tank[1].Alarms=DINT[2]=7,8",
        "Total=REAL~expr(Tank[3].Level + Tank[2].Level)", "Line=Line",
        "Line.Tanks[1].Level=REAL~counter(rate=2)", "Line.Speed=REAL=1450"]


def make(clock: FakeClock, **kwargs) -> Device:
    device = Device.from_specs(TAGS, udts=[TANK, LINE], clock=clock, **kwargs)
    device.faults = FaultState()
    return device


def level(device: Device, element: int) -> float:
    return device.tag("Tank").attribute[element]["Level"]


def test_members_move_follow_and_hold_initial_values():
    clock = FakeClock(wall=0.0)
    device = make(clock)
    tank = device.tag("Tank").attribute
    assert tank[1]["Alarms"] == [7, 8] and device.tag("Line").attribute[0]["Speed"] == 1450.0
    assert level(device, 3) == pytest.approx(50) and level(device, 2) == pytest.approx(25)
    clock.advance(10)  # a quarter period: the top of the sine
    assert level(device, 3) == pytest.approx(60) and level(device, 2) == pytest.approx(30)
    assert device.tag("Total").attribute[0] == pytest.approx(90)
    assert device.tag("Line").attribute[0]["Tanks"][1]["Level"] == pytest.approx(20)  # 2/s for 10 s
    tank[0:1] = [{"Level": 1.0, "Inlet": False, "Outlet": False, "Alarms": [0, 0]}]  # a plain element
    inlet = _member(device, "Tank[2].Inlet")
    inlet[0] = True  # a write the follower reads: it moves at once, not at the next update
    assert level(device, 2) == pytest.approx(130) and level(device, 0) == 1.0
    with pytest.raises(ServiceError, match=r"Tank\[3\]\.Level is driven by its behaviour \(sine\)"):
        _member(device, "Tank[3].Level")[0] = 5.0


def _member(device: Device, path: str):
    from cpppo.enip.device.udt import member_target

    return member_target(device, path)[1]


def test_freeze_fault_holds_members_still():
    clock = FakeClock(wall=0.0)
    device = make(clock)
    clock.advance(10)
    assert level(device, 3) == pytest.approx(60)
    device.faults.set(parse_fault("freeze", None, now=0.0))
    clock.advance(10)
    assert level(device, 3) == pytest.approx(60) and level(device, 2) == pytest.approx(30)
    device.faults.clear()
    assert level(device, 3) == pytest.approx(50) and level(device, 2) == pytest.approx(25)


def test_member_writes_are_retained(tmp_path):
    journal = tmp_path / "line.journal"
    device = make(FakeClock(wall=0.0), retain=str(journal))
    _member(device, "Tank[0].Outlet")[0] = True
    _member(device, "Tank[1].Alarms")[1] = 99
    device.journal.close()
    again = make(FakeClock(wall=0.0), retain=str(journal))
    tank = again.tag("Tank").attribute
    assert tank[0]["Outlet"] is True and tank[1]["Alarms"] == [7, 99]
    again.journal.close()


@pytest.mark.parametrize("spec, message", [
    ("Tank[3].Level=DINT~counter(rate=1)", "bad tag spec 'Tank[3].Level': the member is a REAL"),
    ("Tank[3].Alarms=DINT~counter(rate=1)", "bad tag spec 'Tank[3].Alarms': the member is a DINT[2]"),
    ("Tank[3].Depth=REAL~sine(amplitude=1, period=5)", "Tank has no member 'Depth'"),
    ("Tank[9].Level=REAL=1", "index [9] is outside Tank"),
    ("Tank.Level=REAL=1", "Tank is an array: index it before .Level"),
    ("Tank[2]=Tank", "names an element, not a structure member"),
    ("Pump[0].Level=REAL=1", "no tag named 'Pump'"),
    ("Line=Line~sine(amplitude=1, period=5)", "tag 'Line': a structure has no behaviour of its own"),
])
def test_bad_member_specs_are_refused_in_one_line(spec, message):
    replaced = spec.split("=", 1)[0] + "="  # a spec of a tag declared already replaces it
    tags = [t for t in TAGS if not t.startswith(replaced)] + [spec]
    with pytest.raises(ValueError) as info:
        Device.from_specs(tags, udts=[TANK, LINE])
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.interop
def test_pycomm3_reads_members_move_follow_and_freeze():
    from pycomm3 import LogixDriver

    clock = FakeClock(wall=0.0)
    device = make(clock)
    with serve_in_thread(device) as server, LogixDriver(f"127.0.0.1:{server.port}") as plc:
        assert plc.read("Tank[3].Level").value == pytest.approx(50)
        clock.advance(10)
        top = plc.read("Tank[3].Level", "Tank[2].Level", "Total", "Line.Tanks[1].Level")  # one packet
        assert [r.value for r in top] == pytest.approx([60, 30, 90, 20])
        clock.advance(10)
        whole = plc.read("Tank[3]").value
        assert whole["Level"] == pytest.approx(50) and whole["Alarms"] == [0, 0]
        assert plc.read("Tank{4}").value[2]["Level"] == pytest.approx(25)  # the whole array
        assert plc.write("Tank[2].Inlet", True).error is None
        assert plc.read("Tank[2].Level").value == pytest.approx(125)
        refused = plc.write("Tank[3].Level", 1.0)
        assert refused.error and plc.read("Tank[3].Level").value == pytest.approx(50)
        assert plc.read("Line.Tanks[1].Level").value == pytest.approx(40)
        device.faults.set(parse_fault("freeze", None, now=0.0))
        clock.advance(10)
        assert plc.read("Tank[3].Level").value == pytest.approx(50)  # frozen: the last values produced
        assert plc.read("Line.Tanks[1].Level").value == pytest.approx(40)
        device.faults.clear()
        assert plc.read("Tank[3].Level").value == pytest.approx(40)  # moving again, at the clock's time
        assert plc.read("Line.Tanks[1].Level").value == pytest.approx(60)


def test_enip_server_refuses_a_bad_member_spec_in_one_line():
    result = subprocess.run([sys.executable, "-m", "cpppo.enip.cli.server", "-a", "127.0.0.1:0",
                             "--udt", TANK, "Tank=Tank[4]", "Tank[3].Level=DINT~counter(rate=1)"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "enip_server: error: bad tag spec 'Tank[3].Level': the member is a REAL"]


def test_fleet_tags_drive_members_and_validate_them():
    from fleet.config import ConfigError, parse
    from fleet.kinds import KINDS

    text = f"""
[fleet]
name = "tanks"
address_pool = "127.77.12.0/24"

[[device]]
kind = "enip"
count = 1
name = "tanks"
udts = ["{TANK}"]
tags = ["Tank=Tank[4]", "Tank[3].Level=REAL~sine(amplitude=10, period=40, offset=50)"]
"""
    group = parse(text).groups[0]
    device = KINDS["enip"].build(group.options, {})
    assert device.plant and "Tank[3].Level" in device.plant.drivers
    with pytest.raises(ConfigError, match=r"device\[0\]: .*the member is a REAL"):
        parse(text.replace("Level=REAL~", "Level=INT~"))


@pytest.mark.interop
def test_pycomm3_sees_error_faults_on_a_member_or_its_tag():
    from pycomm3 import LogixDriver

    device = make(FakeClock(wall=0.0))
    with serve_in_thread(device) as server, LogixDriver(f"127.0.0.1:{server.port}") as plc:
        device.faults.set(parse_fault("error", "0x05:Tank[3].Level", now=0.0))
        assert plc.read("Tank[3].Level").error and plc.read("Tank[2].Level").error is None
        device.faults.set(parse_fault("error", "0x05:Tank", now=0.0))
        assert plc.read("Tank[2].Level").error and plc.read("Total").error is None
        device.faults.clear()
        assert plc.read("Tank[3].Level").error is None


@pytest.mark.slow
@pytest.mark.interop
def test_fleet_members_move_freeze_and_are_retained(tmp_path):
    """A real worker: pycomm3 sees a driven member move and a follower follow, `cpppo-fleet
    fault ... freeze` hold them, `--clear` free them; a member write survives a restart."""
    import os
    import time

    from pycomm3 import LogixDriver

    from tests.fleet_support import CliFleet, until
    from tests.support import free_port

    octet = 100 + os.getpid() % 100
    port = free_port(f"127.76.{octet}.1")
    fleet = CliFleet(tmp_path, f"""
[fleet]
name = "tanks{octet}"
address_pool = "127.76.{octet}.0/24"
health_interval = 0.5
health_timeout = 2.0

[[device]]
kind = "enip"
count = 1
name = "tanks"
port = {port}
retain = true
udts = ["{TANK}"]
tags = ["Tank=Tank[4]", "Tank[3].Level=REAL~counter(rate=20)", "Tank[2].Level=REAL~expr(Tank[3].Level * 2)"]
""")
    device = fleet.plan.devices[0]
    try:
        fleet.cli("up")
        until(fleet.all_healthy, what="all healthy")
        with LogixDriver(f"{device.host}:{device.port}") as plc:
            def level() -> float:
                return plc.read("Tank[3].Level").value

            first = level()
            until(lambda: level() > first, timeout=10, what="the member moving")
            pair = plc.read("Tank[3].Level", "Tank[2].Level")
            assert pair[1].value == pytest.approx(2 * pair[0].value)

            def still() -> bool:
                before = level()
                time.sleep(0.3)  # 6 counts at 20/s, were it moving
                return level() == before

            fleet.cli("fault", "tanks", "freeze")
            until(still, timeout=10, what="the freeze fault applied")
            fleet.cli("fault", "--clear", "tanks")
            frozen = level()
            until(lambda: level() != frozen, timeout=10, what="the member moving again")
            assert plc.write("Tank[1].Alarms{2}", [3, 4]).error is None
        fleet.cli("restart", "tanks")
        until(fleet.all_healthy, what="all healthy after restart")
        with LogixDriver(f"{device.host}:{device.port}") as plc:
            assert plc.read("Tank[1].Alarms{2}").value == [3, 4]
    finally:
        fleet.backend.down()
