"""Logix structures (UDTs) and multi-dimensional arrays: their layout and template
(cpppo.enip.device.udt), and pycomm3 / pylogix listing, reading and writing them against
our server: whole structures as dicts, members by dotted name, arrays of structures,
nested structures, program-scoped ones, big (fragmented) structures, Multiple Service
Packets."""

from __future__ import annotations

import struct
import subprocess
import sys

import pytest

from cpppo.enip.codec.types import BOOL, DINT, REAL
from cpppo.enip.device.model import Device, parse_tag_spec
from cpppo.enip.device.udt import parse_udts
from cpppo.enip.server.background import serve_in_thread

UDTS = ["Motor={Speed:REAL,Running:BOOL,Fault:BOOL,Faults:DINT[4],Name:STRING}",
        "Line={Id:INT,Motors:Motor[3],On:BOOL,Total:LINT}",
        "Recipe={Steps:REAL[300],Name:STRING}"]
TAGS = ["Motors=Motor[10]", "Line=Line", "Grid=DINT[2,3]", "Cube=INT[2,2,2]", "Program:Main.M=Motor",
        "COUNT=DINT", "R=Recipe[2]"]


def test_layout_packs_bools_and_aligns_members():
    types = parse_udts(UDTS)
    motor, line = types["MOTOR"], types["LINE"]
    by_name = {m.name: m for m in motor.members}
    assert [m.name for m in motor.members] == [
        "Speed", "ZZZZZZZZZZMotor0", "Running", "Fault", "Faults", "Name"]
    assert (by_name["Speed"].offset, by_name["ZZZZZZZZZZMotor0"].offset) == (0, 4)
    assert (by_name["Running"].offset, by_name["Running"].bit, by_name["Fault"].bit) == (4, 0, 1)
    assert (by_name["Faults"].offset, by_name["Name"].offset, motor.size) == (8, 24, 112)
    # Motor aligns to 4: Motors at 4 after the INT; LINT makes Line 8-aligned
    members = {m.name: m for m in line.members}
    assert members["Motors"].offset == 4 and members["Motors"].type is motor
    assert members["ZZZZZZZZZZLine0"].offset == 4 + 3 * motor.size == members["On"].offset
    assert members["Total"].offset % 8 == 0 and line.size % 8 == 0 and line.alignment == 8
    assert motor.template == 0x100 and line.template == 0x101 and motor.handle != line.handle
    # the template: member records, "<name>;n" and the member names
    raw = motor.template_bytes
    info, word, offset = struct.unpack_from("<HHI", raw, 4 * 8)
    assert (info, word, offset) == (4, 0x2000 | DINT.code, 8)
    assert struct.unpack_from("<HHI", raw, 2 * 8) == (0, BOOL.code, 4)
    assert struct.unpack_from("<HHI", raw, 5 * 8)[1] == 0x8FCE  # a STRING member
    assert raw[6 * 8:].split(b"\0")[0].startswith(b"Motor;n")
    assert b"\0Speed\0ZZZZZZZZZZMotor0\0Running\0Fault\0Faults\0Name\0" in raw
    assert (len(raw) + 23) // 4 == motor.template_words


def test_values_encode_and_decode_round_trip():
    motor = parse_udts(UDTS)["MOTOR"]
    value = motor.coerce({"speed": 1.5, "Running": True, "Faults": [1, 2], "Name": "M1"})
    raw = motor.encode([value, motor.default()])
    assert len(raw) == 2 * motor.size and raw[4] == 0b01
    assert struct.unpack_from("<f4i", raw, 0)[0] == 1.5 and struct.unpack_from("<4i", raw, 8) == (1, 2, 0, 0)
    assert motor.decode(raw)[0] == {"Speed": 1.5, "Running": True, "Fault": False, "Faults": [1, 2, 0, 0],
                                    "Name": "M1"}
    with pytest.raises(ValueError, match="no member 'Torque'"):
        motor.coerce({"Torque": 1})


@pytest.mark.parametrize("udts, message", [
    (["Motor={Speed:REEL}"], "member 'Speed' has unknown type 'REEL'"),
    (["Motor={Speed REAL}"], "bad member 'Speed REAL'"),
    (["Motor=Speed:REAL"], "expected <Name>="),
    (["Motor={}"], "has no members"),
    (["Motor={A:DINT,a:REAL}"], "duplicate member 'a'"),
    (["Motor={A:DINT}", "Motor={B:DINT}"], "already defined"),
    (["Self={Me:Self}"], "member 'Me' has unknown type 'Self'"),  # recursion cannot be written
    (["Motor={A:DINT[2,2]}"], "members have one dimension"),
])
def test_bad_definitions_are_named(udts, message):
    with pytest.raises(ValueError, match=message):
        parse_udts(udts)


def test_tag_specs_with_structures_and_dimensions():
    types = parse_udts(UDTS)
    spec = parse_tag_spec("Grid=DINT[2,3]")
    assert (spec.length, spec.dims) == (6, (2, 3))
    assert parse_tag_spec("Motors=motor[10]", types).type is types["MOTOR"]
    with pytest.raises(ValueError, match="unknown type 'Motor'"):
        parse_tag_spec("Motors=Motor[10]")
    with pytest.raises(ValueError, match="1-3 dimensions"):
        parse_tag_spec("Grid=DINT[2,2,2,2]")
    device = Device.from_specs(TAGS, udts=UDTS)
    assert device.tag("Grid").symbol_type == 0x4000 | DINT.code and device.tag("Grid").shape == (2, 3, 0)
    assert device.tag("Cube").symbol_type >> 13 == 3
    assert device.tag("Motors").symbol_type == 0xA100 and device.tag("Line").symbol_type == 0x8101
    values = device.tag("Motors").attribute.value
    values[0]["Speed"] = 9.0
    assert values[1]["Speed"] == 0.0  # every element its own dict
    assert "Grid                     DINT[2,3]" in device.describe()
    assert REAL is device.types["MOTOR"].members[0].type


@pytest.fixture(scope="module", params=[(20, 11), (32, 11)], ids=["v20-symbolic", "v32-instance-ids"])
def server(request):
    device = Device.from_specs(TAGS, udts=UDTS, identity={"revision": request.param})
    with serve_in_thread(device) as srv:
        yield srv


@pytest.mark.interop
def test_pycomm3_structures(server):
    from pycomm3 import LogixDriver

    with LogixDriver(f"127.0.0.1:{server.port}") as plc:
        assert {"Motor", "Line", "Recipe"} <= set(plc.data_types)
        assert plc.data_types["Motor"]["attributes"] == ["Speed", "Running", "Fault", "Faults", "Name"]
        assert plc.tags["Motors"]["data_type_name"] == "Motor" and plc.tags["Motors"]["dimensions"][0] == 10
        motor = {"Speed": 1.5, "Running": True, "Fault": False, "Faults": [1, 2, 3, 4], "Name": "M3"}
        assert plc.write("Motors[3]", motor).error is None
        assert plc.read("Motors[3]").value == motor
        assert plc.read("Motors[3].Speed").value == 1.5 and plc.read("Motors[3].Running").value is True
        assert plc.read("Motors[3].Faults[2]").value == 3 and plc.read("Motors[3].Name").value == "M3"
        assert plc.write("Motors[1].Fault", True).error is None
        assert plc.read("Motors[1]").value["Fault"] is True and plc.read("Motors[1].Running").value is False
        assert plc.write("Motors[3].Faults{2}", [7, 8]).error is None
        assert plc.read("Motors[3].Faults{4}").value == [7, 8, 3, 4]
        # nested: a member that is an array of structures
        assert plc.write("Line.Motors[2].Speed", 7.25).error is None
        assert plc.write("Line.Motors[2].Name", "nested").error is None
        line = plc.read("Line").value
        assert line["Motors"][2]["Speed"] == 7.25 and line["Motors"][2]["Name"] == "nested"
        assert plc.write("Line.Motors[0]", motor).error is None and plc.read("Line.Motors[0]").value == motor
        assert plc.write("Program:Main.M.Speed", 3.0).error is None
        assert plc.read("Program:Main.M").value["Speed"] == 3.0
        # a Multiple Service Packet of members, structures and plain tags
        multi = plc.read("Motors[3].Speed", "Motors[3]", "COUNT", "Line.Motors[2].Name")
        assert [t.error for t in multi] == [None] * 4
        assert multi[1].value == {**motor, "Faults": [7, 8, 3, 4]} and multi[3].value == "nested"
        # big structures: fragmented reads and writes
        recipe = {"Steps": [float(i) for i in range(300)], "Name": "big"}
        assert plc.write("R[1]", recipe).error is None
        assert plc.read("R[1]").value == recipe
        assert plc.read("R{2}").value[1]["Steps"][299] == 299.0
        assert plc.read("Motors[3].Torque").error and plc.read("Motors[10]").error


@pytest.mark.interop
def test_pycomm3_multi_dimensional_arrays(server):
    from pycomm3 import LogixDriver

    with LogixDriver(f"127.0.0.1:{server.port}") as plc:
        assert plc.tags["Grid"]["dimensions"] == [2, 3, 0] and plc.tags["Grid"]["dim"] == 2
        assert plc.tags["Cube"]["dimensions"] == [2, 2, 2]
        assert plc.write("Grid{6}", [1, 2, 3, 4, 5, 6]).error is None
        assert plc.read("Grid{6}").value == [1, 2, 3, 4, 5, 6]
        assert plc.read("Grid[1,2]").value == 6 and plc.read("Grid[0,1]").value == 2
        assert plc.write("Cube[1,0,1]", 42).error is None and plc.read("Cube{8}").value[5] == 42
        assert plc.read("Grid[2,0]").error and plc.read("Grid[0,3]").error


@pytest.mark.interop
def test_pylogix_members_and_tag_list(server):
    from pylogix import PLC

    with PLC("127.0.0.1", port=server.port, timeout=5.0) as comm:
        assert comm.Write("Motors[2].Speed", 4.5).Status == "Success"
        assert comm.Read("Motors[2].Speed").Value == 4.5
        assert comm.Write("Line.Motors[1].Running", True).Status == "Success"
        assert comm.Read("Line.Motors[1].Running").Value is True
        assert comm.Write("Motors[2].Name", "pylogix").Status == "Success"
        assert comm.Read("Motors[2].Name").Value == "pylogix"
        tags = comm.GetTagList(allTags=True)
        assert tags.Status == "Success"
        types = {t.TagName: (t.DataType, t.Struct) for t in tags.Value}
        assert types["Motors"] == ("Motor", 1) and types["Line"] == ("Line", 1)
        assert types["Program:Main.M"] == ("Motor", 1) and types["Grid"] == ("DINT", 0)
        fields = [f.TagName for f in comm.UDTByName["Motor"].Fields]  # pylogix lists the BOOL host too
        assert fields == ["Speed", "ZZZZZZZZZZMotor0", "Running", "Fault", "Faults", "Name"]


def test_enip_server_rejects_a_bad_structure_in_one_line():
    result = subprocess.run([sys.executable, "-m", "cpppo.enip.cli.server", "-a", "127.0.0.1:0",
                             "--udt", "Motor={Speed:REEL}", "M=Motor"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "enip_server: error: structure 'Motor': member 'Speed' has unknown type 'REEL'"]


FLEET = """
[fleet]
name = "udt"
address_pool = "127.77.9.0/24"

[[device]]
kind = "enip"
count = 2
name = "packer{n}"
udts = ["Motor={Speed:REAL,Running:BOOL,Faults:DINT[4],Name:STRING}", "Cell={Motors:Motor[2],Grid:DINT[6]}"]
tags = ["Motors=Motor[10]", "Cell=Cell", "Grid=DINT[2,3]"]
"""


def test_fleet_toml_udts_key():
    from fleet.config import ConfigError, parse
    from fleet.kinds import KINDS

    group = parse(FLEET, source="f.toml").groups[0]
    options = group.options
    assert options.udts[1].startswith("Cell=")
    device = KINDS["enip"].build(KINDS["enip"].options_from_json({"udts": list(options.udts),
                                                                  "tags": list(options.tags)}), {})
    assert device.tag("Cell").attribute.parser.name == "Cell" and device.tag("Grid").shape == (2, 3, 0)
    with pytest.raises(ConfigError, match=r"f.toml: device\[0\]: key 'udts': structure 'Cell': member "
                                          "'Motors' has unknown type 'Motr'"):
        parse(FLEET.replace("Motors:Motor[2]", "Motors:Motr[2]"), source="f.toml")
    with pytest.raises(ConfigError, match=r"key 'tags': .*unknown type 'Valve'"):
        parse(FLEET.replace("Cell=Cell", "Cell=Valve"), source="f.toml")
