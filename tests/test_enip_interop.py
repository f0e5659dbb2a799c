"""Third-party clients against our EtherNet/IP server on an ephemeral loopback port:
pycomm3 (LogixDriver, CIPDriver), pylogix, and the upstream cpppo client (from its cached
virtualenv).  Also what pycomm3 and pylogix do with bits (a bit read is a whole-integer read
masked by the client; a bit write is Read Modify Write Tag), BOOL arrays held as DWORDs,
STRING members, and tag lists with arrays of every type and program-scoped tags."""

from __future__ import annotations

import re
import subprocess

import pytest

from cpppo.enip.device.model import Device
from cpppo.enip.server.background import serve_in_thread
from tests.support import python_module

pytestmark = pytest.mark.interop

TAGS = ["SCADA=INT[1000]", "TEXT=SSTRING[100]", "FLOAT=REAL", "STR=STRING[3]", "COUNT=DINT",
        "BIG=DINT[2000]", "Tag@22/1/1=DINT[4]", "FLAG=BOOL", "WIDE=LINT[2]"]


@pytest.fixture(scope="module", params=[(20, 11), (32, 11)], ids=["v20-symbolic", "v32-instance-ids"])
def server(request):
    """Logix revision 20 makes pycomm3 address tags by name; 21+ by Symbol instance id."""
    device = Device.from_specs(TAGS, identity={"product_name": "1756-L61/B LOGIX5561",
                                               "revision": request.param, "serial_number": 0xC0FFEE})
    with serve_in_thread(device) as srv:
        yield srv


def test_pycomm3_logix_driver(server):
    from pycomm3 import LogixDriver

    with LogixDriver(f"127.0.0.1:{server.port}") as plc:
        assert plc.info["product_name"] == "1756-L61/B LOGIX5561" and plc.info["name"] == "cpppo"
        assert set(plc.tags) >= {"SCADA", "TEXT", "FLOAT", "STR", "COUNT", "BIG", "Tag"}
        assert plc.write("SCADA[4]", 42).error is None and plc.read("SCADA[4]").value == 42
        assert plc.write("SCADA{4}", [1, 2, 3, 4]).error is None
        assert plc.read("SCADA{5}").value == [1, 2, 3, 4, 42]
        assert plc.write("FLOAT", 2.5).error is None and plc.read("FLOAT").value == 2.5
        assert plc.write("WIDE[1]", -(2**40)).error is None and plc.read("WIDE[1]").value == -(2**40)
        assert plc.write("FLAG", True).error is None and plc.read("FLAG").value is True
        assert plc.write("STR[1]", "hello pycomm3").error is None
        assert plc.read("STR[1]").value == "hello pycomm3"
        assert plc.read("STR{3}").value == ["", "hello pycomm3", ""]
        assert plc.write("TEXT[2]", "short").error is None and plc.read("TEXT[2]").value == "short"
        multi = plc.read("SCADA[4]", "FLOAT", "STR[1]", "COUNT")
        assert [t.value for t in multi] == [42, 2.5, "hello pycomm3", 0]
        assert all(t.error is None for t in multi)
        big = list(range(-1000, 1000))
        assert plc.write("BIG{2000}", big).error is None  # fragmented write
        assert plc.read("BIG{2000}").value == big  # fragmented read
        assert plc.read("NOPE").error
        assert plc.get_plc_time().value["microseconds"] > 1_600_000_000 * 10**6
        assert [t["tag_name"] for t in plc.get_tag_list()][:3] == ["SCADA", "TEXT", "FLOAT"]


def test_pycomm3_cip_driver_generic_message(server):
    from pycomm3 import CIPDriver, Services

    with CIPDriver(f"127.0.0.1:{server.port}") as drv:
        name = drv.generic_message(service=Services.get_attribute_single, class_code=1, instance=1,
                                   attribute=7, connected=False)
        assert name.error is None and name.value == b"\x141756-L61/B LOGIX5561"
        identity = CIPDriver.list_identity(f"127.0.0.1:{server.port}")
        assert identity["serial"] == "00c0ffee"


def test_pylogix(server):
    from pylogix import PLC

    with PLC("127.0.0.1", port=server.port, timeout=5.0) as comm:
        assert comm.Write("SCADA[1]", 77).Status == "Success"
        assert comm.Read("SCADA[1]").Value == 77
        assert comm.Read("SCADA[0]", 3).Value[1] == 77
        assert comm.Write("STR[0]", "hi pylogix").Status == "Success"
        assert comm.Read("STR[0]").Value == "hi pylogix"
        assert comm.Write("FLOAT", 3.25).Status == "Success" and comm.Read("FLOAT").Value == 3.25
        values = comm.Read(["SCADA[1]", "FLOAT", "STR[0]"])
        assert [r.Value for r in values] == [77, 3.25, "hi pylogix"]
        props = comm.GetDeviceProperties().Value
        assert props.ProductName == "1756-L61/B LOGIX5561" and props.SerialNumber == "0xc0ffee"
        assert comm.GetPLCTime().Status == "Success"
        tags = comm.GetTagList()
        assert tags.Status == "Success" and {"SCADA", "STR", "FLOAT"} <= {t.TagName for t in tags.Value}
        big = list(range(1000))
        assert comm.Write("SCADA[0]", big).Status == "Success" and comm.Read("SCADA[0]", 1000).Value == big


def _upstream(upstream_python, module: str, *args: str) -> str:
    result = subprocess.run(python_module(module, *args, python=upstream_python), capture_output=True,
                            text=True, timeout=60)
    return result.stdout + result.stderr


def test_upstream_cpppo_client(server, upstream_python):
    address = f"127.0.0.1:{server.port}"
    client = "cpppo.server.enip.client"
    out = _upstream(upstream_python, client, "-a", address, "--print", "SCADA[601]=99", "SCADA[600-603]",
                    'TEXT[11]=(SSTRING)"Hello, world!"', "TEXT[10-12]", "FLOAT=1.5", "FLOAT",
                    'STR[2]=(STRING)"abc"', "@22/1/1")
    assert re.search(r"== \[\d+, 99, \d+, \d+\]: 'OK'", out), out
    assert "['', 'Hello, world!', '']: 'OK'" in out and "[1.5]: 'OK'" in out
    assert "(STRING)" not in out and "Status" not in out, out
    out = _upstream(upstream_python, "cpppo.server.enip.client", "-a", address, "--print", "-m", "SCADA[1]",
                    "SCADA[0-1]")
    assert out.count("'OK'") == 2, out
    out = _upstream(upstream_python, "cpppo.server.enip.get_attribute", "-a", address, "@1/1/7",
                    "@22/1/1=(DINT)5,6,7,8", "@22/1/1")
    assert "== [20, 49, 55, 53, 54" in out and "S_A_S      @0x0016/1/1 == True" in out
    assert "[5, 0, 0, 0, 6, 0, 0, 0, 7, 0, 0, 0, 8, 0, 0, 0]" in out
    for transport in ([], ["-u"]):
        out = _upstream(upstream_python, client, "-a", address, "-i", "--print", *transport)
        assert "'1756-L61/B LOGIX5561'" in out and str(0xC0FFEE) in out, out


# --- bits, STRING members, BOOL arrays, every type's arrays, program scope ---------------------

TYPE_NAMES = ["BOOL", "SINT", "INT", "DINT", "LINT", "USINT", "UINT", "UDINT", "ULINT", "REAL", "LREAL",
              "DWORD", "SSTRING", "STRING"]
#: A_<type>: an array of every type we serve (lengths 2, 3, ...); DWORD[4] is a Logix BOOL[128]
TYPED_TAGS = [f"A_{name}={name}[{n}]" for n, name in enumerate(TYPE_NAMES, start=2)] + [
    "D=DINT", "L=LINT", "I=INT", "R=REAL", "Str=STRING[2]",
    "Program:Main.Speed=REAL", "Program:Main.Counts=DINT[5]", "Program:Aux.Name=STRING"]
PYCOMM3_TYPE = {"SSTRING": "SHORT_STRING", "BOOL": "DWORD"}  # BOOL[2] is held (and listed) as Logix does:
PYLOGIX_TYPE = {"ULINT": "LWORD", "SSTRING": "STRING", "STRING": "ASCIISTRING82",  # DWORD[1]
                "BOOL": "DWORD"}  # pylogix's own names
LISTED = {"BOOL": 1}  # the elements listed, where not the declared length


@pytest.fixture(scope="module", params=[(20, 11), (32, 11)], ids=["v20-symbolic", "v32-instance-ids"])
def typed_server(request):
    device = Device.from_specs(TYPED_TAGS, identity={"revision": request.param})
    with serve_in_thread(device) as srv:
        yield srv, device


def test_pycomm3_bit_writes_use_read_modify_write(typed_server):
    from pycomm3 import LogixDriver

    server, device = typed_server
    with LogixDriver(f"127.0.0.1:{server.port}") as plc:
        plc.write(("D", 0), ("L", 0), ("I", 0))
        assert plc.write(("D.5", True)).error is None and plc.read("D").value == 32
        assert plc.read("D.5").value is True and plc.read("D.4").value is False  # read whole, masked
        assert plc.write(("D.31", True)).error is None and plc.read("D").value == -(2**31) + 32
        assert plc.write(("D.5", False)).error is None and plc.read("D").value == -(2**31)
        assert plc.write(("L.40", True)).error is None and plc.read("L").value == 1 << 40
        assert plc.write(("A_SINT[2].7", True)).error is None and plc.read("A_SINT{3}").value == [0, 0, -128]
        results = plc.write(("I.1", True), ("I.2", True), ("D.0", True))  # grouped per tag
        assert all(r.error is None for r in results) and plc.read("I").value == 6
        assert plc.read("D").value == -(2**31) + 1
        assert plc.write(("R.1", True)).error  # not an integer: refused (0xFF/0x2107)
        # a BOOL array the way a Logix controller holds it: DWORD elements of 32 BOOLs
        assert plc.write(("A_DWORD[37]", True)).error is None
        assert device.tag("A_DWORD").attribute[0:4] == [0, 32, 0, 0]
        assert plc.read("A_DWORD[37]").value is True and plc.read("A_DWORD[36]").value is False
        assert plc.write(("A_DWORD[37]", False)).error is None
        assert plc.write(("A_DWORD{64}", [True] * 64)).error is None  # whole DWORDs: Write Tag
        assert plc.read("A_DWORD{40}").value == [True] * 40
        assert device.tag("A_DWORD").attribute[0:4] == [0xFFFFFFFF, 0xFFFFFFFF, 0, 0]


def test_pycomm3_string_members(typed_server):
    from pycomm3 import LogixDriver

    server, _ = typed_server
    with LogixDriver(f"127.0.0.1:{server.port}") as plc:
        assert plc.write("Str[1]", "hello").error is None
        assert plc.read("Str[1].LEN").value == 5 and plc.read("Str[1].DATA[1]").value == ord("e")
        assert plc.read("Str[1].DATA{5}").value == list(b"hello")
        assert plc.write("Str[1].LEN", 3).error is None and plc.read("Str[1]").value == "hel"
        assert plc.write("Str[1].DATA[0]", ord("H")).error is None and plc.read("Str[1]").value == "Hel"


def test_pycomm3_tag_list_types_dimensions_and_programs(typed_server):
    from pycomm3 import LogixDriver

    server, _ = typed_server
    with LogixDriver(f"127.0.0.1:{server.port}") as plc:
        tags = {t["tag_name"]: t for t in plc.get_tag_list()}
        for n, name in enumerate(TYPE_NAMES, start=2):
            tag = tags[f"A_{name}"]
            listed = [LISTED.get(name, n), 0, 0]
            assert (tag["data_type_name"], tag["dim"], tag["dimensions"]) == (PYCOMM3_TYPE.get(name, name), 1,
                                                                             listed), name
            assert tag["tag_type"] == ("struct" if name == "STRING" else "atomic")
        assert (tags["D"]["dim"], tags["D"]["dimensions"]) == (0, [0, 0, 0])
        assert not any(name.startswith("Program:") for name in tags)
        assert set(plc.info["programs"]) == {"Main", "Aux"}
        main = plc.get_tag_list("Main")
        assert [(t["tag_name"], t["data_type_name"], t["dimensions"]) for t in main] == [
            ("Program:Main.Speed", "REAL", [0, 0, 0]), ("Program:Main.Counts", "DINT", [5, 0, 0])]
        everything = {t["tag_name"]: t for t in plc.get_tag_list("*")}
        assert {"A_STRING", "Program:Main.Counts", "Program:Aux.Name"} <= set(everything)
        assert everything["Program:Aux.Name"]["data_type_name"] == "STRING"
        assert plc.write("Program:Main.Speed", 2.5).error is None
        assert plc.read("Program:Main.Speed").value == 2.5
        assert plc.write("Program:Main.Counts[2]", 7).error is None
        assert plc.write(("Program:Main.Counts[2].4", True)).error is None
        assert plc.read("Program:Main.Counts{5}").value == [0, 0, 23, 0, 0]
        assert plc.write("Program:Aux.Name", "aux").error is None
        assert plc.read("Program:Aux.Name").value == "aux"


def test_pylogix_bits_bool_arrays_and_string_members(typed_server):
    from pylogix import PLC

    server, device = typed_server
    device.tag("D").attribute[0] = 0
    device.tag("A_DWORD").attribute[0:4] = [0, 0, 0, 0]
    with PLC("127.0.0.1", port=server.port, timeout=5.0) as comm:
        assert comm.Write("D.5", True).Status == "Success" and comm.Read("D").Value == 32
        assert comm.Read("D.5").Value is True and comm.Read("D.0", 6).Value == [False] * 5 + [True]
        assert comm.Write("D.5", False).Status == "Success" and comm.Read("D").Value == 0
        written = comm.Write([("D.1", True), ("D.2", True)])
        assert [r.Status for r in written] == ["Success"] * 2 and comm.Read("D").Value == 6
        assert comm.Write("A_DWORD[37]", True).Status == "Success"
        assert device.tag("A_DWORD").attribute[0:4] == [0, 32, 0, 0]
        assert comm.Read("A_DWORD[36]", 3).Value == [False, True, False]
        assert comm.Write("Str[0]", "hello").Status == "Success"
        assert comm.Read("Str[0].LEN").Value == 5 and comm.Read("Str[0].DATA[0]", 5).Value == list(b"hello")
        assert comm.Write("Str[0].LEN", 4).Status == "Success" and comm.Read("Str[0]").Value == "hell"


def test_pylogix_tag_list_with_programs(typed_server):
    from pylogix import PLC

    server, _ = typed_server
    with PLC("127.0.0.1", port=server.port, timeout=5.0) as comm:
        listing = comm.GetTagList(True)
        assert listing.Status == "Success"
        tags = {t.TagName: t for t in listing.Value}
        for n, name in enumerate(TYPE_NAMES, start=2):
            tag = tags[f"A_{name}"]
            expected = (PYLOGIX_TYPE.get(name, name), 1, LISTED.get(name, n))
            assert (tag.DataType, tag.Array, tag.Size) == expected, name
        assert (tags["D"].DataType, tags["D"].Array, tags["D"].Size) == ("DINT", 0, 0)
        assert {"Program:Main", "Program:Aux"} <= set(tags)
        assert (tags["Program:Main.Counts"].DataType, tags["Program:Main.Counts"].Size) == ("DINT", 5)
        assert tags["Program:Aux.Name"].DataType == "ASCIISTRING82"
        assert comm.GetProgramsList().Value == ["Program:Main", "Program:Aux"]
        program = comm.GetProgramTagList("Program:Main")
        assert [t.TagName for t in program.Value] == ["Program:Main.Speed", "Program:Main.Counts"]
        assert comm.Write("Program:Main.Speed", 1.5).Status == "Success"
        assert comm.Read("Program:Main.Speed").Value == 1.5
