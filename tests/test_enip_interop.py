"""Third-party clients against our EtherNet/IP server on an ephemeral loopback port:
pycomm3 (LogixDriver, CIPDriver), pylogix, and the upstream cpppo client (from its cached
virtualenv)."""

from __future__ import annotations

import re
import subprocess

import pytest

from cpppo.server.enip.background import serve_in_thread
from cpppo.server.enip.device import Device
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
