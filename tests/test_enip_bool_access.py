"""Logix BOOL arrays and External Access.

``BOOL[n]`` is held as Logix holds it: DWORD[n/32 rounded up], listed as a DWORD array
(symbol type 0x20D3) of that many elements; pycomm3 and pylogix turn ``Flags[37]`` into a
DWORD read and a bit (a write of one bit is Read Modify Write Tag, 0x4E).  External Access
Read Only (or Constant) refuses writes with 0x0F (privilege violation, pycomm3's "Permission
denied"); None tags are neither listed nor readable.  From tag specs (``!ro`` / ``!none``),
L5X (``ExternalAccess``, ``Constant``) and tag CSV (ATTRIBUTES) exports, and fleet.toml."""

from __future__ import annotations

from pathlib import Path

import pytest

from cpppo.enip.codec import cip, logix
from cpppo.enip.codec.epath import Logical, Symbolic
from cpppo.enip.codec.types import DWORD
from cpppo.enip.device.dispatch import Dispatcher, Session
from cpppo.enip.device.l5x import ExportError, load_export
from cpppo.enip.device.model import Device, pack_bits, parse_tag_spec, unpack_bits
from cpppo.enip.device.udt import parse_udts
from cpppo.enip.server.background import serve_in_thread

TAGS = ["Flags=BOOL[64]", "Odd=BOOL[40]=1,0", "Word=DINT", "Recipe=DINT[4]!ro=1,2,3,4", "Secret=DINT!none=7",
        "Limits=BOOL[32]!ro", "Program:Main.Hidden=REAL!none", "Program:Main.Speed=REAL!rw"]


# --- the grammar and the layout -------------------------------------------------------------

def test_bool_array_specs_are_dwords_of_32_bools():
    spec = parse_tag_spec("Flags=BOOL[64]")
    assert (spec.type, spec.length, spec.bools, spec.values) == (DWORD, 2, 64, None)
    assert parse_tag_spec("Few=BOOL[1]").length == 1 and parse_tag_spec("More=BOOL[33]").length == 2
    odd = parse_tag_spec("Odd=BOOL[40]=1,0")  # values repeat over the 40 BOOLs, then are packed
    assert odd.values == (0x55555555, 0x55) and odd.initial == [0x55555555, 0x55]
    assert parse_tag_spec("Some=BOOL[8]=true,true").values == (0xFF,)
    assert parse_tag_spec("Flag=BOOL").type.name == "BOOL"  # a single BOOL stays one
    assert pack_bits([True] + [False] * 36 + [True]) == [1, 32] and unpack_bits([1, 32], 38)[37] is True


@pytest.mark.parametrize("spec, message", [
    ("Grid=BOOL[2,3]", "a BOOL array has one dimension"),
    ("Blink=BOOL[8]~square(period=2)", "a BOOL array takes no behaviour"),
    ("Many=BOOL[4]=1,0,1,0,1", "5 initial values for 4 elements"),
    ("Speed=REAL!readmostly", "unknown external access 'readmostly'"),
    ("Speed=REAL!", "bad tag spec"),
])
def test_bad_bool_and_access_specs_are_named(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_tag_spec(spec)


def test_access_spellings_and_the_description():
    assert [parse_tag_spec(f"T=DINT!{word}").access for word in ("ro", "RO", "readonly", "const", "none",
                                                                  "rw", "ReadWrite")] == \
        ["ro", "ro", "ro", "ro", "none", "rw", "rw"]
    assert parse_tag_spec("T=DINT[2]!ro=5~ramp(period=10)").behaviour == "ramp(period=10)"
    device = Device.from_specs(TAGS)
    lines = {line.split()[0]: line for line in device.describe()}
    assert "BOOL[64] (as DWORD[2])" in lines["Flags"] and lines["Recipe"].endswith("read-only")
    assert lines["Secret"].endswith("no-external-access")
    assert device.tag("Odd").attribute[0:2] == [0x55555555, 0x55]


def test_a_bool_array_member_of_a_structure_is_dwords():
    udt = parse_udts(["Panel={Lamps:BOOL[40],Run:BOOL,Level:REAL}"])["PANEL"]
    lamps = next(m for m in udt.members if m.name == "Lamps")
    assert (lamps.type, lamps.length, lamps.bools, lamps.offset) == (DWORD, 2, 40, 0)
    assert lamps.type_word == 0x20D3  # the template lists it as Logix does: a DWORD array
    assert [(m.name, m.offset) for m in udt.members][1:] == [("ZZZZZZZZZZPanel0", 8), ("Run", 8),
                                                             ("Level", 12)]
    assert udt.size == 16 and udt.default()["Lamps"] == [0, 0]


# --- the services, in process ---------------------------------------------------------------

def call(device: Device, service: int, path: tuple, data: bytes = b"") -> cip.Reply:
    request = cip.Request(service, path, data).encode()
    return cip.Reply.decode(Dispatcher(device).unconnected(request, Session()))


def test_services_read_only_and_none():
    device = Device.from_specs(TAGS)
    read = logix.ReadTag(1).encode()
    assert call(device, cip.Service.READ_TAG, (Symbolic("Recipe"), Logical("element", 2)), read).status == 0
    write = logix.WriteTag(0xC4, 1, b"\x09\0\0\0").encode()
    reply = call(device, cip.Service.WRITE_TAG, (Symbolic("Recipe"),), write)
    assert (reply.status, reply.ext_status) == (0x0F, ())
    rmw = logix.ReadModifyWriteTag(4, 1, 0xFFFFFFFF).encode()
    assert call(device, cip.Service.READ_MODIFY_WRITE_TAG, (Symbolic("Limits"),), rmw).status == 0x0F
    assert device.tag("Recipe").attribute[0:4] == [1, 2, 3, 4] and device.tag("Limits").attribute[0] == 0
    secret = device.tag("Secret").instance
    for path in ((Symbolic("Secret"),), (Logical("class", 0x6B), Logical("instance", secret)),
                 (Symbolic("Program:Main"), Symbolic("Hidden"))):
        assert call(device, cip.Service.READ_TAG, path, read).status == 0x05
        assert call(device, cip.Service.WRITE_TAG, path, write).status == 0x05
    assert device.tag("Secret").attribute[0] == 7
    # a bit of a BOOL array: Read Modify Write on its DWORD
    assert call(device, cip.Service.READ_MODIFY_WRITE_TAG, (Symbolic("Flags"), Logical("element", 1)),
                logix.ReadModifyWriteTag(4, 1 << 5, 0xFFFFFFFF).encode()).status == 0
    assert device.tag("Flags").attribute[0:2] == [0, 32]


# --- pycomm3 and pylogix --------------------------------------------------------------------

@pytest.fixture(scope="module", params=[(20, 11), (32, 11)], ids=["v20-symbolic", "v32-instance-ids"])
def served(request):
    device = Device.from_specs(TAGS, identity={"revision": request.param})
    with serve_in_thread(device) as srv:
        yield srv, device


@pytest.mark.interop
def test_pycomm3_bool_arrays(served):
    from pycomm3 import LogixDriver

    server, device = served
    device.tag("Flags").attribute[0:2] = [0, 0]
    device.tag("Word").attribute[0] = 0
    with LogixDriver(f"127.0.0.1:{server.port}") as plc:
        tags = {t["tag_name"]: t for t in plc.get_tag_list()}
        flags = tags["Flags"]
        assert (flags["data_type_name"], flags["dim"], flags["dimensions"]) == ("DWORD", 1, [2, 0, 0])
        assert plc.write(("Flags[37]", True)).error is None and device.tag("Flags").attribute[0:2] == [0, 32]
        assert plc.read("Flags[37]").value is True and plc.read("Flags[36]").value is False
        whole = plc.read("Flags{64}")
        assert whole.error is None and whole.value == [i == 37 for i in range(64)]
        assert plc.write(("Flags[3]", True), ("Flags[63]", True))[1].error is None
        assert device.tag("Flags").attribute[0:2] == [8, 32 | 1 << 31]
        assert plc.write(("Flags[37]", False)).error is None and device.tag("Flags").attribute[1] == 1 << 31
        assert plc.read("Odd{40}").value == [i % 2 == 0 for i in range(40)]
        assert plc.write(("Word.5", True)).error is None and plc.read("Word").value == 32  # a DINT's bit
        assert plc.read("Word.5").value is True


@pytest.mark.interop
def test_pycomm3_external_access(served):
    from pycomm3 import LogixDriver

    server, device = served
    with LogixDriver(f"127.0.0.1:{server.port}") as plc:
        tags = {t["tag_name"]: t for t in plc.get_tag_list("*")}
        assert tags["Recipe"]["external_access"] == "Read Only"
        assert tags["Word"]["external_access"] == "Read/Write"
        assert tags["Limits"]["external_access"] == "Read Only"
        assert "Secret" not in tags and "Program:Main.Hidden" not in tags and "Program:Main.Speed" in tags
        assert plc.read("Recipe{4}").value == [1, 2, 3, 4]
        refused = plc.write("Recipe[1]", 9)
        assert refused.error and "permission" in refused.error.lower()  # 0x0F
        assert plc.write(("Limits[3]", True)).error  # a bit: Read Modify Write, refused too
        assert device.tag("Recipe").attribute[1] == 2 and device.tag("Limits").attribute[0] == 0
        assert plc.read("Secret").error and device.tag("Secret").attribute[0] == 7


@pytest.mark.interop
def test_pylogix_bool_arrays_and_external_access(served):
    from pylogix import PLC

    server, device = served
    flags = device.tag("Flags").attribute
    flags[0:2] = [0, 0]
    with PLC("127.0.0.1", port=server.port, timeout=5.0) as comm:
        assert comm.Write("Flags[37]", True).Status == "Success" and flags[0:2] == [0, 32]
        assert comm.Read("Flags[37]").Value is True
        assert comm.Read("Flags[36]", 3).Value == [False, True, False]
        assert comm.Write("Flags[37]", False).Status == "Success" and flags[1] == 0
        assert comm.Write("Recipe[0]", 5).Status != "Success" and device.tag("Recipe").attribute[0] == 1
        assert comm.Read("Secret").Status != "Success"
        names = {t.TagName: t for t in comm.GetTagList(True).Value}
        assert "Secret" not in names and names["Flags"].DataType == "DWORD" and names["Flags"].Size == 2


# --- exports and fleet.toml -----------------------------------------------------------------

L5X = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<RSLogix5000Content SchemaRevision="1.0" SoftwareRevision="32.00" TargetType="Controller">
<Controller Name="Panel" ProcessorType="1756-L83E">
<DataTypes>
<DataType Name="Panel" Family="NoFamily" Class="User"><Members>
<Member Name="Lamps" DataType="BOOL" Dimension="40" Radix="Decimal" Hidden="false"
 ExternalAccess="Read/Write"/>
<Member Name="Level" DataType="REAL" Dimension="0" Radix="Float" Hidden="false" ExternalAccess="Read/Write"/>
<Member Name="Serial" DataType="DINT" Dimension="0" Radix="Decimal" Hidden="false"
 ExternalAccess="Read Only"/>
</Members></DataType>
</DataTypes>
<Tags>
<Tag Name="Flags" TagType="Base" DataType="BOOL" Dimensions="64" Constant="false" ExternalAccess="Read/Write">
<Data Format="Decorated"><Array DataType="BOOL" Dimensions="64" Radix="Decimal">
<Element Index="[0]" Value="1"/><Element Index="[37]" Value="1"/><Element Index="[63]" Value="1"/>
</Array></Data></Tag>
<Tag Name="Setpoint" TagType="Base" DataType="REAL" ExternalAccess="Read Only">
<Data Format="Decorated"><DataValue DataType="REAL" Radix="Float" Value="12.5"/></Data></Tag>
<Tag Name="Pi" TagType="Base" DataType="REAL" Constant="true" ExternalAccess="Read/Write">
<Data Format="Decorated"><DataValue DataType="REAL" Radix="Float" Value="3.25"/></Data></Tag>
<Tag Name="Internal" TagType="Base" DataType="DINT" ExternalAccess="None"/>
<Tag Name="Board" TagType="Base" DataType="Panel" ExternalAccess="Read/Write">
<Data Format="Decorated"><Structure DataType="Panel">
<ArrayMember Name="Lamps" DataType="BOOL" Dimensions="40" Radix="Decimal">
<Element Index="[1]" Value="1"/><Element Index="[33]" Value="1"/></ArrayMember>
<DataValueMember Name="Level" DataType="REAL" Radix="Float" Value="2.5"/>
</Structure></Data></Tag>
<Tag Name="FlagsRO" TagType="Alias" AliasFor="Flags" ExternalAccess="Read Only"/>
</Tags>
</Controller>
</RSLogix5000Content>
"""

CSV = """remark,"CSV-Import-Export"
0.3
TYPE,SCOPE,NAME,DESCRIPTION,DATATYPE,SPECIFIER,ATTRIBUTES
TAG,,Alarms,"","BOOL[40]","","(RADIX := Decimal, Constant := false, ExternalAccess := Read/Write)"
TAG,,Limit,"","DINT","","(RADIX := Decimal, Constant := false, ExternalAccess := Read Only)"
TAG,,Const,"","DINT","","(RADIX := Decimal, Constant := true, ExternalAccess := Read/Write)"
TAG,Main,Scratch,"","DINT","","(RADIX := Decimal, Constant := false, ExternalAccess := None)"
"""


def test_exports_give_bool_arrays_and_external_access(tmp_path):
    (tmp_path / "panel.L5X").write_text(L5X)
    (tmp_path / "tags.CSV").write_text(CSV)
    export = load_export([tmp_path / "panel.L5X", tmp_path / "tags.CSV"])
    specs = {s.name: s for s in export.specs}
    assert (specs["Flags"].type, specs["Flags"].length, specs["Flags"].bools) == (DWORD, 2, 64)
    assert export.values["Flags"] == [1, 32 | 1 << 31]
    assert {name: s.access for name, s in specs.items()} == {
        "Flags": "rw", "Setpoint": "ro", "Pi": "ro", "Internal": "none", "Board": "rw", "Alarms": "rw",
        "Limit": "ro", "Const": "ro", "Program:Main.Scratch": "none"}
    assert (specs["Alarms"].length, specs["Alarms"].bools) == (2, 40)
    assert export.values["Board"][0] == {"Lamps": [2, 2], "Level": 2.5, "Serial": 0}
    assert [m.access for m in export.types["PANEL"].fields] == ["rw", "rw", "ro"]
    device = Device.from_specs([], export=export)
    assert device.tag("FlagsRO").access == "ro" and device.tag("FlagsRO").bools == 64
    assert device.tag("Flags").attribute[0:2] == [1, 32 | 1 << 31]


def test_export_access_errors_name_the_file_and_element(tmp_path):
    bad = tmp_path / "bad.L5X"
    bad.write_text(L5X.replace('ExternalAccess="None"', 'ExternalAccess="Sometimes"'))
    with pytest.raises(ExportError, match=r"bad.L5X: Tag 'Internal': unknown external access 'Sometimes'"):
        load_export(bad)
    grid = tmp_path / "grid.L5X"
    grid.write_text(L5X.replace('Dimensions="64" Constant', 'Dimensions="8 8" Constant'))
    with pytest.raises(ExportError, match=r"grid.L5X: Tag 'Flags': a BOOL array has one dimension"):
        load_export(grid)


@pytest.mark.interop
def test_pycomm3_against_the_exported_plant(tmp_path):
    from pycomm3 import LogixDriver

    (tmp_path / "panel.L5X").write_text(L5X)
    export = load_export(tmp_path / "panel.L5X")
    device = Device.from_specs([], export=export, identity={"revision": (32, 11)})
    with serve_in_thread(device) as server, LogixDriver(f"127.0.0.1:{server.port}") as plc:
        assert plc.read("Flags[37]").value is True and plc.read("Flags[36]").value is False
        assert plc.read("Setpoint").value == 12.5 and plc.write("Setpoint", 1.0).error
        assert plc.write("Pi", 3.0).error and plc.read("Pi").value == 3.25
        assert "Internal" not in plc.tags and plc.read("Internal").error
        assert plc.write(("FlagsRO[2]", True)).error and plc.write(("Flags[2]", True)).error is None
        assert plc.read("FlagsRO[2]").value is True  # an alias shares its target's values
        board = plc.read("Board")
        assert board.error is None and board.value["Level"] == 2.5
        assert plc.read("Board.Lamps[33]").value is True and plc.read("Board.Lamps[32]").value is False
        assert plc.write(("Board.Lamps[32]", True)).error is None
        assert device.tag("Board").attribute[0]["Lamps"] == [2, 3]
        assert plc.write("Board.Serial", 5).error  # a Read Only member
        assert plc.read("Board.Serial").value == 0
        assert plc.write("Board", board.value).error  # so the whole structure is read only


def test_fleet_toml_tags_take_bool_arrays_and_access(tmp_path):
    from fleet.config import ConfigError, parse
    from fleet.kinds import KINDS

    text = """
[fleet]
name = "panel"
address_pool = "127.77.12.0/24"

[[device]]
kind = "enip"
count = 1
name = "panel"
tags = ["Flags=BOOL[64]", "Recipe=DINT[4]!ro=1,2,3,4", "Secret=DINT!none"]
"""
    group = parse(text, source=tmp_path / "fleet.toml").groups[0]
    device = KINDS["enip"].build(group.options, {})
    assert device.tag("Flags").bools == 64 and len(device.tag("Flags").attribute) == 2
    assert device.tag("Recipe").access == "ro" and device.tag("Secret").access == "none"
    with pytest.raises(ConfigError, match=r"key 'tags'.*unknown external access 'sometimes'"):
        parse(text.replace("!none", "!sometimes"), source=tmp_path / "fleet.toml")
    # the health poller reads a tag clients can read: not a None one
    hidden_first = parse(text.replace('"Flags=BOOL[64]", ', ""), source=tmp_path / "fleet.toml")
    assert hidden_first.groups[0].options.health_tag == "Recipe[0]"
    first_none = text.replace(', "Secret=DINT!none"]', "]")
    first_none = first_none.replace("tags = [", 'tags = ["Secret=DINT!none", ')
    assert parse(first_none, source=tmp_path / "fleet.toml").groups[0].options.health_tag == "Flags[0]"
    with pytest.raises(ConfigError, match=r"key 'health_tag': 'Secret' has external access none"):
        parse(text + 'health_tag = "Secret"\n', source=tmp_path / "fleet.toml")
    with pytest.raises(ConfigError, match=r"key 'tags': every tag has external access none"):
        parse(text.replace('"Flags=BOOL[64]", "Recipe=DINT[4]!ro=1,2,3,4", ', ""),
              source=tmp_path / "fleet.toml")


def test_readme_documents_both():
    text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = text.split("## Logix structures and exports", 1)[1].split("\n## ", 1)[0]
    assert "BOOL[64]" in section and "!ro" in section and "ExternalAccess" in section


STRUCTURED = ["Board=Panel[2]", "Solo=Panel", "Line=Cell"]
PANEL_UDTS = ["Panel={Lamps:BOOL[40],Level:REAL,Serial:DINT!ro,Code:DINT!none}",
              "Cell={Left:Panel,Count:DINT}",
              "Open={Level:REAL,Serial:DINT!readonly}"]


def test_member_access_in_the_grammar_and_the_template():
    types = parse_udts(PANEL_UDTS)
    panel = types["PANEL"]
    assert [m.access for m in panel.fields] == ["rw", "rw", "ro", "none"] and panel.access == "none"
    assert types["CELL"].access == "none" and types["OPEN"].access == "ro"
    names = panel.template_bytes.split(b";n", 1)[1]
    # a None member is internal, as pylogix reads it
    assert names[:2 * len(panel.members)] == b"\x04\x07" * 3 + b"\x04\x04"
    with pytest.raises(ValueError, match=r"structure 'Bad' member 'X': unknown external access 'maybe'"):
        parse_udts(["Bad={X:DINT!maybe}"])


def test_member_access_through_the_services():
    device = Device.from_specs(STRUCTURED, udts=PANEL_UDTS)
    read = logix.ReadTag(1).encode()

    def status(service: int, *path, data: bytes = read) -> int:
        return call(device, service, tuple(Symbolic(p) if isinstance(p, str) else Logical("element", p)
                                           for p in path), data).status

    dint = logix.WriteTag(0xC4, 1, b"\x05\0\0\0").encode()
    assert status(cip.Service.READ_TAG, "Board", 1, "Serial") == 0
    assert status(cip.Service.WRITE_TAG, "Board", 1, "Serial", data=dint) == 0x0F
    assert status(cip.Service.READ_MODIFY_WRITE_TAG, "Board", 1, "Serial",
                  data=logix.ReadModifyWriteTag(4, 1, 0xFFFFFFFF).encode()) == 0x0F
    assert status(cip.Service.READ_TAG, "Board", 1, "Code") == 0x0F  # None: pycomm3's "Permission denied"
    assert status(cip.Service.READ_TAG, "Board", 1) == 0x0F  # a whole structure holding a None member
    assert status(cip.Service.READ_TAG, "Line", "Left", "Code") == 0x0F and status(
        cip.Service.READ_TAG, "Line") == 0x0F  # nested
    assert status(cip.Service.READ_TAG, "Line", "Count") == 0
    assert status(cip.Service.READ_TAG, "Solo", "Level") == 0
    real = logix.WriteTag(0xCA, 1, b"\0\0\x80\x3f").encode()
    assert status(cip.Service.WRITE_TAG, "Solo", "Level", data=real) == 0
    assert device.tag("Solo").attribute[0]["Level"] == 1.0 and device.tag("Board").attribute[1]["Serial"] == 0


@pytest.mark.interop
def test_pycomm3_member_access():
    from pycomm3 import LogixDriver

    device = Device.from_specs(["Solo=Open", "Panel1=Panel"], udts=PANEL_UDTS,
                               identity={"revision": (32, 11)})
    device.tag("Solo").attribute[0] = {"Level": 1.5, "Serial": 77}
    with serve_in_thread(device) as server, LogixDriver(f"127.0.0.1:{server.port}") as plc:
        assert plc.read("Solo").value == {"Level": 1.5, "Serial": 77}  # read only members read
        assert plc.write("Solo.Level", 2.5).error is None and plc.read("Solo.Level").value == 2.5
        refused = plc.write("Solo.Serial", 1)
        assert refused.error and "permission" in refused.error.lower()
        assert plc.write("Solo", {"Level": 3.0, "Serial": 1}).error  # the whole holds a read only member
        denied = plc.read("Panel1")  # holds an External Access None member
        assert denied.error and "permission" in denied.error.lower()
        assert plc.read("Panel1.Code").error and plc.read("Panel1.Level").error is None
        assert device.tag("Solo").attribute[0] == {"Level": 2.5, "Serial": 77}
