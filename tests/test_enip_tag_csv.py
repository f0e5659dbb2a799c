"""Plants imported from RSLogix 5000 / Studio 5000 tag CSV exports (cpppo.enip.device.l5x):
a packaging line's tags, whose structures come from a types-only L5X and from ``udts``:
arrays of structures, 2-D and 3-D arrays, strings, program scopes, aliases of tags and
members (served), of bits and elements and of module tags (reported), comment records;
pycomm3 and pylogix list, read and write them; bad exports refused in one line naming the
file and its line (enip_server exits 2); fleet.toml's tags_from takes a list."""

from __future__ import annotations

import logging
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from cpppo.enip.device.l5x import ExportError, load_export
from cpppo.enip.device.model import Device
from cpppo.enip.server.background import serve_in_thread
from tests.support import free_port, running
from tests.test_enip_l5x import refused_in_one_line

DATA = Path(__file__).resolve().parent / "data"
TYPES, TAGS = DATA / "packaging_types.L5X", DATA / "line4_tags.CSV"
TANK = "Tank={Level:REAL,Temperature:REAL,Inlet:BOOL,Outlet:BOOL,Alarms:DINT[2]}"


def test_csv_tags_over_l5x_types_and_udts():
    export = load_export([TYPES, TAGS], [TANK])
    assert list(export.types) == ["TANK", "RECIPE", "MOTOR", "VALVE", "STATION"]
    assert len({t.template for t in export.types.values()}) == 5  # one template instance each
    specs = {s.name: s for s in export.specs}
    assert list(specs) == ["LineSpeed", "Tank", "Fillers", "Capper", "Counts", "Temperatures", "Banner",
                           "Program:Filling.Step", "Program:Filling.Inlet", "Program:Filling.Grid"]
    assert specs["Tank"].type is export.types["TANK"] and specs["Tank"].length == 4
    assert specs["Capper"].type.name == "Station" and specs["Capper"].length is None
    assert specs["Counts"].dims == (2, 3) and specs["Program:Filling.Grid"].dims == (2, 3, 4)
    assert specs["Temperatures"].length == 10 and specs["Banner"].type.name == "STRING"
    assert not export.values  # a tag CSV holds no values: tags start at zero
    assert [line.split(": ", 2)[2] for line in export.unsupported] == [
        "TAG 'CycleTimer': the predefined or module type 'TIMER' is not supported; not served",
        "TAG 'Local:1:I': the predefined or module type 'AB:1756_IB16:I:0' is not supported; not served",
        "ALIAS 'StartButton': alias for 'Local:1:I.Data.0': aliases of a bit are not supported "
        "(only of a tag or a member); not served",
        "ALIAS 'FirstCount': alias for 'Counts[0]': aliases of an element are not supported "
        "(only of a tag or a member); not served"]
    assert export.unsupported[0].startswith(f"{TAGS}: line 17: ")
    assert [a[:2] for a in export.aliases] == [
        ("FillerSpeed", "Fillers[0].Speed"), ("CapperMotor", "Capper.Conveyor"),
        ("SyrupLevel", "Tank[3].Level"),
        ("Program:Filling.InletOpen", "Inlet.Open"), ("Program:Filling.Speed", "LineSpeed")]


def test_aliases_share_values_and_a_missing_target_is_logged(tmp_path, caplog):
    csv = tmp_path / "tags.csv"
    csv.write_text("TYPE,SCOPE,NAME,DESCRIPTION,DATATYPE,SPECIFIER,ATTRIBUTES\n"
                   'TAG,,Speed,"","REAL","",""\nALIAS,,S,"","","Speed",""\n'
                   'ALIAS,,Gone,"","","Nowhere.Level",""\n')
    with caplog.at_level(logging.WARNING, logger="cpppo.enip.device.l5x"):
        device = Device.from_specs([], export=load_export(csv))
    alias = device.tag("S")
    assert alias.alias_for == "Speed" and alias.attribute is device.tag("Speed").attribute
    assert device.tag("Gone") is None
    assert [r.getMessage() for r in caplog.records] == [
        f"{csv}: line 4: ALIAS 'Gone': alias for 'Nowhere.Level': the export has no such tag or member "
        "(no tag named 'Nowhere.Level'); not served"]


@pytest.fixture(scope="module")
def server():
    device = Device.from_specs(["Extra=DINT"], export=load_export([TYPES, TAGS], [TANK]))
    with serve_in_thread(device) as srv:
        yield srv


@pytest.mark.interop
def test_pycomm3_lists_reads_and_writes_the_csv_plant(server):
    from pycomm3 import LogixDriver

    with LogixDriver(f"127.0.0.1:{server.port}") as plc:
        assert {"Tank", "Motor", "Valve", "Station"} <= set(plc.data_types)
        assert set(plc.tags) >= {"LineSpeed", "Tank", "Fillers", "Capper", "Counts", "Banner", "Extra",
                                 "FillerSpeed", "SyrupLevel", "CapperMotor", "Program:Filling.Grid",
                                 "Program:Filling.InletOpen", "Program:Filling.Speed"}
        assert plc.tags["Program:Filling.Grid"]["dimensions"] == [2, 3, 4]
        assert plc.tags["SyrupLevel"]["alias"] and not plc.tags["Tank"]["alias"]
        assert plc.tags["CapperMotor"]["data_type_name"] == "Motor"
        assert plc.write("Tank[3].Level", 71.5).error is None
        assert plc.read("SyrupLevel").value == 71.5  # the alias reads the member
        assert plc.write("SyrupLevel", 12.25).error is None and plc.read("Tank[3]").value["Level"] == 12.25
        assert plc.write("CapperMotor.Speed", 900.0).error is None
        assert plc.read("Capper.Conveyor.Speed").value == 900.0
        assert plc.write("Program:Filling.InletOpen", True).error is None
        assert plc.read("Program:Filling.Inlet").value["Open"] is True
        assert plc.write("LineSpeed", 140.0).error is None
        assert plc.read("Program:Filling.Speed").value == 140.0
        assert plc.write("Counts[1,2]", 6).error is None and plc.read("Counts{6}").value[5] == 6
        assert plc.read("Program:Filling.Grid[1,2,3]").value == 0
        assert plc.read("CycleTimer").error and plc.read("FirstCount").error  # not served


@pytest.mark.interop
def test_pylogix_reads_aliases_and_lists_the_tags(server):
    from pylogix import PLC

    with PLC("127.0.0.1", port=server.port, timeout=5.0) as comm:
        assert comm.Write("FillerSpeed", 1450.0).Status == "Success"
        assert comm.Read("Fillers[0].Speed").Value == 1450.0
        assert comm.Write("Tank[1].Inlet", True).Status == "Success"
        assert comm.Read("Tank[1].Inlet").Value is True
        tags = comm.GetTagList(allTags=True)
        assert tags.Status == "Success"
        types = {t.TagName: (t.DataType, t.Struct) for t in tags.Value}
        assert types["Tank"] == ("Tank", 1) and types["Program:Filling.Inlet"] == ("Valve", 1)
        assert types["FillerSpeed"] == ("REAL", 0)


HEADER = 'remark,"CSV-Import-Export"\n0.3\nTYPE,SCOPE,NAME,DESCRIPTION,DATATYPE,SPECIFIER,ATTRIBUTES\n'


@pytest.mark.parametrize("text, message", [
    ('TAG,,T,"","DINT","",""\n', "bad.CSV: not a Logix tag export (no TYPE,SCOPE,NAME,DESCRIPTION,"),
    (HEADER + 'TAG,,T,"","Pump","",""\n',
     "bad.CSV: line 4: TAG 'T': data type 'Pump' is not defined (give its structure in udts / --udt, "
     "or an L5X export listed before this file)"),
    (HEADER + 'TAG,Main,T,"","","",""\n', "bad.CSV: line 4: TAG 'Program:Main.T': no DATATYPE"),
    (HEADER + 'TAG,,T,"","DINT[0]","",""\n',
     "bad.CSV: line 4: TAG 'T': bad tag spec 'T=DINT[0]': array length must be 1-65535"),
    (HEADER + 'TAG,,T,"","DINT[1,2,3,4]","",""\n', "bad.CSV: line 4: TAG 'T': bad tag spec"),
    (HEADER + 'ALIAS,,A,"","","",""\n', "bad.CSV: line 4: ALIAS 'A': an alias without the tag it aliases"),
    (HEADER + 'TAG,,,"","DINT","",""\n', "bad.CSV: line 4: a TAG record without a NAME"),
    (HEADER + 'MODULE,,T,"","DINT","",""\n', "bad.CSV: line 4: unknown record type 'MODULE'"),
    ('TYPE,NAME\n', "bad.CSV: line 1: a header needs TYPE, SCOPE, NAME and DATATYPE columns"),
])
def test_bad_csv_exports_are_one_line_naming_file_and_line(tmp_path, text, message):
    refused_in_one_line(tmp_path / "bad.CSV", text, message)


def test_tab_separated_export_and_a_type_defined_twice(tmp_path):
    path = tmp_path / "tags.TXT"
    path.write_text("remark\t\"CSV-Import-Export\"\n0.3\nTYPE\tSCOPE\tNAME\tDESCRIPTION\tDATATYPE\tSPECIFIER\n"
                    'TAG\t\tT\t"a, b"\t"Tank[2]"\t""\n')
    export = load_export(path, [TANK])
    assert [(s.name, s.type.name, s.length) for s in export.specs] == [("T", "Tank", 2)]
    with pytest.raises(ExportError, match=r"packaging_types.L5X: DataType 'Motor': defined twice"):
        load_export(TYPES, ["Motor={Speed:REAL}"])


def test_enip_server_serves_csv_and_refuses_a_bad_one(tmp_path):
    result = subprocess.run([sys.executable, "-m", "cpppo.enip.cli.server", "-a", "127.0.0.1:0",
                             "--tags-from", str(TAGS), "--tags-from", str(TYPES)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2  # the types must come first
    assert result.stderr.strip().splitlines() == [
        f"enip_server: error: {TAGS}: line 9: TAG 'Tank': data type 'Tank' is not defined (give its "
        "structure in udts / --udt, or an L5X export listed before this file)"]


def test_fleet_tags_from_list_with_udts(tmp_path, monkeypatch):
    from fleet.config import ConfigError, parse
    from fleet.kinds import KINDS

    text = f"""
[fleet]
name = "pack"
address_pool = "127.77.11.0/24"

[[device]]
kind = "enip"
count = 1
name = "line4"
udts = ["{TANK}"]
tags_from = ["{TYPES.name}", "{TAGS.name}"]
"""
    source = DATA / "fleet.toml"
    group = parse(text, source=source).groups[0]
    assert group.options.tags_from == (str(TYPES), str(TAGS)) and group.options.health_tag == "LineSpeed"
    device = KINDS["enip"].build(group.options, {})
    assert device.tag("Tank").attribute.parser.name == "Tank"
    assert device.tag("SyrupLevel").alias_for == "Tank[3].Level"
    monkeypatch.chdir(DATA)  # a relative fleet.toml: the worker, elsewhere, gets absolute paths
    assert parse(text, source=Path("fleet.toml")).groups[0].options.tags_from == (str(TYPES), str(TAGS))
    with pytest.raises(ConfigError, match=r"device\[0\]: key 'tags_from': .*line4_tags.CSV: line 9: "
                                          r"TAG 'Tank': data type 'Tank' is not defined"):
        parse(text.replace(f'udts = ["{TANK}"]\n', ""), source=source)


def readme_servers() -> list[list[str]]:
    """The enip_server commands of README's "Logix structures and exports" section."""
    text = (DATA.parent.parent / "README.md").read_text()
    section = re.search(r"^## Logix structures and exports\n(.*?)(?=^## )", text, re.S | re.M)
    assert section, "README.md has no '## Logix structures and exports' section"
    blocks = re.findall(r"^```sh\n(.*?)^```", section.group(1), re.S | re.M)
    lines = "".join(blocks).replace("\\\n", " ").splitlines()
    return [shlex.split(line) for line in lines if line.strip()]


@pytest.mark.interop
@pytest.mark.parametrize("argv", readme_servers(), ids=lambda argv: argv[-1].rsplit("/", 1)[-1])
def test_readme_servers_serve_what_they_say(argv):
    from pycomm3 import LogixDriver

    port = free_port()
    command = [str(Path(sys.executable).parent / argv[0]), "-a", f"127.0.0.1:{port}", *argv[1:]]
    with (running(command, listen=("127.0.0.1", port), timeout=60, cwd=DATA.parent.parent),
          LogixDriver(f"127.0.0.1:{port}") as plc):
        assert {"Tank", "Capper"} & set(plc.tags)
        name = "Tank" if "Tank" in plc.tags else "Capper"
        assert plc.tags[name]["tag_type"] == "struct" and plc.read(name).error is None


def test_a_shared_export_is_read_once_and_its_devices_share_no_values(tmp_path):
    from cpppo.enip.device.l5x import shared_export

    path = tmp_path / "line.L5X"
    path.write_bytes((DATA / "packaging_line.L5X").read_bytes())
    first = shared_export([path])
    assert shared_export([path]) is first
    one, two = (Device.from_specs([], export=first) for _ in range(2))
    one.tag("Capper").attribute[0]["Active"]["Name"] = "changed"
    assert two.tag("Capper").attribute[0]["Active"]["Name"] == "Cola 1 L"
    path.write_bytes(path.read_bytes() + b"\n")  # changed: read again
    assert shared_export([path]) is not first
    with pytest.raises(ExportError, match=r"nope\.L5X: cannot read"):
        shared_export([tmp_path / "nope.L5X"])
