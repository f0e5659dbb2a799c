"""Logix STRING tags through our clients: our server serves them as Logix does (structure
0x02A0 with the STRING handle 0x0FCE: a DINT length and 82 SINT characters), so ``enip_client``,
``connector`` results and ``AsyncClient.read`` give text; text written to a tag (``(STRING)``
or quoted values without a cast) goes as the structure, as pycomm3 writes it, and falls back to
a CIP STRING (0xD0) where the device refuses the structure (the upstream simulator)."""

from __future__ import annotations

import asyncio
import struct

import pytest

from cpppo.enip.client import wire
from cpppo.enip.client.aclient import AsyncClient, ENIPStatusError
from cpppo.enip.client.operations import LOGIX_STRING_TYPE, OperationError
from cpppo.enip.client.proxy import attribute_operations
from cpppo.enip.codec import logix
from cpppo.enip.device.model import Device
from cpppo.enip.server.background import serve_in_thread
from cpppo.server.enip import client
from tests.support import free_port, python_module, running

TAGS = ["TEXT=STRING[3]", "BIG=STRING[20]", "SHORT=SSTRING[2]", "COUNT=INT"]
LETTERS = [chr(ord("a") + i) * (i + 1) for i in range(20)]  # 'a', 'bb', ... 20 elements, 1760 bytes


@pytest.fixture()
def ours():
    device = Device.from_specs(TAGS, identity={"product_name": "1756-L61/B LOGIX5561", "revision": (20, 11)})
    with serve_in_thread(device) as server:
        yield device, ("127.0.0.1", server.port)


def test_parse_string_writes() -> None:
    cast, bare, attribute = client.parse_operations(['TEXT[0]=(STRING)"hi"', 'TEXT[0-1]="a","b"',
                                                     '@0x64/1/1=(STRING)"x"'])
    assert cast["tag_type"] == bare["tag_type"] == LOGIX_STRING_TYPE == 0x02A0
    assert cast["data"] == ["hi"] and bare["data"] == ["a", "b"] and bare["elements"] == 2
    assert attribute["tag_type"] == 0xD0  # an attribute holds a CIP STRING
    (bare_attribute,) = attribute_operations(['@0x64/1/1="x"'])  # not taken for USINT bytes
    assert bare_attribute["tag_type"] == 0xD0 and bare_attribute["method"] == "set_attribute_single"
    with pytest.raises(OperationError, match=r"at position 2: 'xxx.*longer than 82 characters"):
        list(client.parse_operations(['T="' + "x" * 83 + '"']))


def test_wire_string_encoding_and_decoding() -> None:
    assert logix.encode_type(*wire.type_code(LOGIX_STRING_TYPE)) == bytes.fromhex("a002ce0f")
    assert logix.encode_type(*wire.type_code(0xC3)) == bytes.fromhex("c300")
    raw = wire.encode_tag_values(LOGIX_STRING_TYPE, ["hi", ""])
    assert len(raw) == 176 and raw[:6] == b"\x02\x00\x00\x00hi"
    assert wire.decode_values(LOGIX_STRING_TYPE, raw, 0x0FCE) == ["hi", ""]
    assert wire.decode_values(LOGIX_STRING_TYPE, raw, 0x1234) == list(raw)  # another structure: raw
    assert wire.decode_values(LOGIX_STRING_TYPE, raw[:100], 0x0FCE) == list(raw[:100])  # a fragment
    # CIP STRINGs of odd length are padded to even, as upstream keeps them; both forms decode
    assert wire.encode_tag_values(0xD0, ["abc", "de"]) == b"\x03\x00abc\x00\x02\x00de"
    assert wire.decode_values(0xD0, b"\x03\x00abc\x00\x02\x00de") == ["abc", "de"]
    assert wire.decode_values(0xD0, b"\x03\x00abc\x02\x00de") == ["abc", "de"]
    assert wire.split_typed(bytes.fromhex("a002ce0f") + raw) == (0x02A0, 0x0FCE, raw)


def test_enip_client_prints_text(ours, capsys) -> None:
    device, (host, port) = ours
    status = client.main(["-a", f"{host}:{port}", "--print", 'TEXT[0]=(STRING)"hi"', 'TEXT[1]="there"',
                          "TEXT[0-2]", "TEXT[1]", 'SHORT[1]=(SSTRING)"s"', "SHORT[0-1]"])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "TEXT[0]                  <= ['hi']: 'OK'" in out
    assert "TEXT[0-2]                == ['hi', 'there', '']: 'OK'" in out
    assert "TEXT[1]                  == ['there']: 'OK'" in out
    assert "SHORT[0-1]               == ['', 's']: 'OK'" in out  # (SSTRING) is unchanged
    assert device.tag("TEXT").attribute[0:3] == ["hi", "there", ""]


@pytest.mark.parametrize("flags", [[], ["-n"], ["-m", "-d", "4"], ["-d", "3"]])
def test_large_string_arrays_fragment_and_pipeline(ours, capsys, flags) -> None:
    _device, (host, port) = ours
    values = ",".join(f'"{text}"' for text in LETTERS)
    assert client.main(["-a", f"{host}:{port}", "--print", *flags, f"BIG[0-19]={values}", "BIG[0-19]"]) == 0
    assert f"BIG[0-19]                == {LETTERS!r}: 'OK'" in capsys.readouterr().out
    assert client.main(["-a", f"{host}:{port}", "--print", *flags, 'BIG[19]="last"', "BIG[18-19]"]) == 0
    assert f"BIG[18-19]               == {[LETTERS[18], 'last']!r}: 'OK'" in capsys.readouterr().out


def test_connector_results_and_raw_request(ours) -> None:
    device, (host, port) = ours
    with client.connector(host=host, port=port, timeout=5) as conn:
        ops = client.parse_operations(['TEXT[2]="api"', "TEXT[0-2]", "TEXT[2]", 'COUNT="x"', "COUNT"])
        results = list(conn.operate(ops, depth=2))
        assert [r[5] for r in results] == [True, ["", "", "api"], ["api"], None, [0]]
        assert results[3][4] == (0xFF, (0x2107,))  # text into an INT: refused, as a type mismatch
        assert results[1][3]["read_tag"]["handle"] == 0x0FCE
        assert conn.string_type == LOGIX_STRING_TYPE  # our server takes the structure
        request = conn.write("TEXT[0]", ["raw"])  # text: the Logix STRING structure
        body = b"\xa0\x02\xce\x0f" + struct.pack("<Hi", 1, 3) + b"raw" + b"\0" * 81
        assert request.input[0] == 0x4D and request.input.endswith(body)
        reply, _ = client.await_response(conn, timeout=5)
        assert reply["enip.CIP.send_data.CPF.item[1].unconnected_send.request.status"] == 0
    assert device.tag("TEXT").attribute[0] == "raw"


def test_aclient_reads_and_writes_text(ours) -> None:
    device, (host, port) = ours

    async def scenario() -> tuple:
        async with AsyncClient(host, port, timeout=5) as conn:
            await conn.write("TEXT[0]", "async")
            await conn.write("TEXT[1]", ["named"], tag_type="STRING")
            await conn.write('TEXT[2]=(STRING)"cast"', None)
            with pytest.raises(ENIPStatusError, match="0x2107"):
                await conn.write("COUNT", "no")
            return await conn.read("TEXT[0-2]"), await conn.read("TEXT[1]")

    assert asyncio.run(scenario()) == (["async", "named", "cast"], "named")
    assert device.tag("TEXT").attribute[0:3] == ["async", "named", "cast"]


@pytest.mark.interop
def test_pycomm3_reads_what_our_client_wrote(ours) -> None:
    from pycomm3 import LogixDriver

    _device, (host, port) = ours
    assert client.main(["-a", f"{host}:{port}", 'TEXT[0-2]=(STRING)"one","two","three"']) == 0
    with LogixDriver(f"{host}:{port}") as plc:
        assert plc.read("TEXT{3}").value == ["one", "two", "three"]
        assert plc.write("TEXT[1]", "from pycomm3").error is None
    with client.connector(host=host, port=port, timeout=5) as conn:
        assert list(conn.results(client.parse_operations(["TEXT[1]"]))) == [["from pycomm3"]]


# --- against the upstream server: STRING tags are CIP STRINGs (0xD0) there ------------------

@pytest.fixture(scope="module")
def upstream(upstream_python):
    port = free_port()
    argv = python_module("cpppo.server.enip", "-a", f"127.0.0.1:{port}", "TEXT=STRING[3]", "COUNT=INT",
                         python=upstream_python)
    with running(argv, listen=("127.0.0.1", port)):
        yield "127.0.0.1", port


@pytest.mark.interop
@pytest.mark.parametrize("flags", [[], ["-n"], ["-m", "-d", "3"]])
def test_string_writes_fall_back_to_cip_string_upstream(upstream, capsys, flags) -> None:
    host, port = upstream
    assert client.main(["-a", f"{host}:{port}", "--print", *flags, 'TEXT[0]=(STRING)"odd"',
                        'TEXT[1-2]="even","x"', "TEXT[0-2]", 'TEXT[2]="y"', "TEXT[2]"]) == 0
    out = capsys.readouterr().out
    assert "TEXT[0-2]                == ['odd', 'even', 'x']: 'OK'" in out  # in order, despite retries
    assert "TEXT[2]                  == ['y']: 'OK'" in out


@pytest.mark.interop
def test_explicit_cip_string_writes_upstream(upstream) -> None:
    host, port = upstream
    with client.connector(host=host, port=port, timeout=5) as conn:
        ops = [{"path": [{"symbolic": "TEXT"}, {"element": 0}], "method": "write", "elements": 2,
                "data": ["abc", "de"], "tag_type": 0xD0}, "TEXT[0-1]", 'COUNT="text"']
        results = list(conn.operate(ops))
        assert [r[5] for r in results[:2]] == [True, ["abc", "de"]]
        assert results[2][5] is None and conn.string_type is None  # a real mismatch learns nothing

    async def scenario() -> object:
        async with AsyncClient(host, port, timeout=5) as conn:
            await conn.write("TEXT[2]", "async")
            return await conn.read("TEXT[0-2]")

    assert asyncio.run(scenario()) == ["abc", "de", "async"]
