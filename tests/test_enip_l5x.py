"""Plants imported from Logix exports (cpppo.enip.device.l5x): a packaging line's L5X with
motor, valve, recipe and station structures, arrays of structures, strings, a 2-D array,
program tags and an alias; served and read back by pycomm3; bad exports refused in one
line naming the file and the element (enip_server exits 2)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cpppo.enip.device.l5x import ExportError, load_export
from cpppo.enip.device.model import Device
from cpppo.enip.server.background import serve_in_thread

EXPORT = Path(__file__).resolve().parent / "data" / "packaging_line.L5X"


def test_export_types_tags_values_and_unsupported():
    export = load_export(EXPORT)
    assert list(export.types) == ["RECIPE", "MOTOR", "VALVE", "STATION"]
    motor = export.types["MOTOR"]
    assert [m.name for m in motor.fields] == ["Running", "Faulted", "Speed", "Current", "FaultCodes"]
    # the BOOL host at 0, Speed 4, Current 8, FaultCodes 12-27
    assert motor.members[0].name == "ZZZZZZZZZZMotor0" and motor.size == 28
    station = export.types["STATION"]
    assert {m.name: m.type.name for m in station.fields} == {"Conveyor": "Motor", "Valves": "Valve",
                                                             "Active": "Recipe"}
    specs = {s.name: s for s in export.specs}
    assert list(specs) == ["LineSpeed", "Fillers", "Capper", "Recipes", "Counts", "Banner",
                           "Program:Filling.Step", "Program:Filling.Inlet"]
    assert specs["Counts"].dims == (2, 3) and specs["Fillers"].length == 4
    assert export.values["Counts"] == [1, 2, 3, 4, 5, 6]
    assert export.values["Banner"] == ["Line 3 ready"] and export.values["Program:Filling.Step"] == [3]
    capper = export.values["Capper"][0]
    assert capper["Active"]["Name"] == "Cola 1 L" and capper["Valves"][2] == {"Open": True, "Closed": False,
                                                                              "Position": 100}
    assert [line.split(": ", 1)[1] for line in export.unsupported] == [
        "Tag 'CycleTimer': the predefined type 'TIMER' is not supported; not served"]
    assert [alias[:2] for alias in export.aliases] == [("FillerSpeed", "Fillers[0].Speed")]


@pytest.mark.interop
@pytest.mark.parametrize("revision", [(20, 11), (32, 11)], ids=["v20", "v32"])
def test_pycomm3_reads_the_imported_plant(revision):
    from pycomm3 import LogixDriver

    device = Device.from_specs(["Extra=DINT"], export=load_export(EXPORT), identity={"revision": revision})
    with serve_in_thread(device) as srv, LogixDriver(f"127.0.0.1:{srv.port}") as plc:
        assert {"Motor", "Valve", "Recipe", "Station"} <= set(plc.data_types)
        assert set(plc.tags) >= {"LineSpeed", "Fillers", "Capper", "Counts", "Banner", "Extra",
                                 "Program:Filling.Step", "Program:Filling.Inlet"}
        assert plc.read("LineSpeed").value == 120.5 and plc.read("Banner").value == "Line 3 ready"
        filler = plc.read("Fillers[0]").value
        assert filler["Running"] is True and filler["Speed"] == 1450.0
        assert filler["FaultCodes"] == [0, 17, 0, 0]
        assert plc.read("Fillers[1].Faulted").value is True
        assert plc.read("Capper.Active.Name").value == "Cola 1 L"
        assert plc.read("Capper.Valves[2].Position").value == 100
        assert plc.read("Counts[1,2]").value == 6 and plc.read("Program:Filling.Step").value == 3
        assert plc.write("Capper.Conveyor.Speed", 1200.0).error is None
        assert plc.read("Capper").value["Conveyor"]["Speed"] == 1200.0
        assert plc.tags["FillerSpeed"]["alias"] and not plc.tags["Fillers"]["alias"]
        assert plc.read("FillerSpeed").value == 1450.0  # an alias shares the member's value
        assert plc.write("FillerSpeed", 1500.0).error is None and plc.read("Fillers[0].Speed").value == 1500.0
        assert plc.read("CycleTimer").error  # not served


HEAD = ('<?xml version="1.0"?><RSLogix5000Content SchemaRevision="1.0"><Controller Name="C">'
        '<DataTypes>{types}</DataTypes><Tags>{tags}</Tags></Controller></RSLogix5000Content>')


def _udt(name, *members):
    return (f'<DataType Name="{name}"><Members>'
            + "".join(f'<Member Name="{m}" DataType="{t}" Dimension="0"/>' for m, t in members)
            + "</Members></DataType>")


@pytest.mark.parametrize("text, message", [
    ("<RSLogix5000Content><Controller>", "bad.L5X: not a valid L5X file: no element found"),
    ("<Project/>", "bad.L5X: not an L5X export (no RSLogix5000Content/Controller element)"),
    (HEAD.format(types=_udt("Pump", ("Flow", "REEL")), tags=""),
     "bad.L5X: DataType 'Pump' Member 'Flow': unknown data type 'REEL'"),
    (HEAD.format(types=_udt("A", ("b", "B")) + _udt("B", ("a", "A")), tags=""),
     "bad.L5X: DataType 'A': recursive type (A -> B -> A)"),
    (HEAD.format(types="", tags='<Tag Name="T" TagType="Base"/>'), "bad.L5X: Tag 'T': no DataType"),
    (HEAD.format(types="", tags='<Tag Name="T" TagType="Base" DataType="Pump"/>'),
     "bad.L5X: Tag 'T': data type 'Pump' is not defined in the export"),
    (HEAD.format(types="", tags='<Tag Name="T" DataType="DINT"><Data Format="Decorated">'
                              '<DataValue DataType="DINT" Value="x"/></Data></Tag>'),
     "bad.L5X: Tag 'T': bad initial value"),
])
def test_bad_exports_are_one_line_naming_file_and_element(tmp_path, text, message):
    refused_in_one_line(tmp_path / "bad.L5X", text, message)


def refused_in_one_line(path: Path, text: str, message: str) -> None:
    """An export of ``text`` at ``path`` is refused with one line naming it and ``message``."""
    path.write_text(text)
    with pytest.raises(ExportError) as info:
        load_export(path)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert str(info.value).startswith(str(path))


def test_enip_server_bad_export_exits_2_in_one_line(tmp_path):
    path = tmp_path / "bad.L5X"
    path.write_text(HEAD.format(types=_udt("Pump", ("Flow", "REEL")), tags=""))
    result = subprocess.run([sys.executable, "-m", "cpppo.enip.cli.server", "-a", "127.0.0.1:0",
                             "--tags-from", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"enip_server: error: {path}: DataType 'Pump' Member 'Flow': unknown data type 'REEL'"]
    missing = subprocess.run([sys.executable, "-m", "cpppo.enip.cli.server", "-a", "127.0.0.1:0"],
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "the following arguments are required: TAG" in missing.stderr


def test_fleet_tags_from_key(tmp_path):
    from fleet.config import ConfigError, parse
    from fleet.kinds import KINDS

    text = f"""
[fleet]
name = "pack"
address_pool = "127.77.10.0/24"

[[device]]
kind = "enip"
count = 1
name = "line3"
tags_from = "{EXPORT.name}"
"""
    source = EXPORT.parent / "fleet.toml"  # tags_from is relative to fleet.toml
    group = parse(text, source=source).groups[0]
    assert group.options.tags_from == (str(EXPORT),) and group.options.health_tag == "LineSpeed"
    device = KINDS["enip"].build(group.options, {})
    assert device.tag("Capper").attribute.parser.name == "Station"
    with pytest.raises(ConfigError, match=r"device\[0\]: key 'tags_from': .*nope.L5X: cannot read"):
        parse(text.replace(EXPORT.name, "nope.L5X"), source=source)
