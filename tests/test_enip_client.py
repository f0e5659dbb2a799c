"""The EtherNet/IP client (spec 2.1.4-2.1.5): operation parsing, and the connector and the
``enip_client`` command against the upstream cpppo server (and ours, where it exists)."""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cpppo.enip.client import connector
from cpppo.enip.client import operations as client_ops
from cpppo.enip.client.operations import OperationError, format_path, parse_route_path
from cpppo.enip.codec import encapsulation
from cpppo.server.enip import client
from tests.support import free_port, python_module, running

TAGS = ["SCADA=INT[1000]", "TEXT=SSTRING[10]", "FLOAT=REAL", "Motor_Velocity@0x93/3/10=REAL"]


# --- parse_operations (no server) ------------------------------------------------------

def test_parse_operations_spec_example() -> None:
    assert list(client.parse_operations(["A_Tag[1-2]=(REAL)111,222"])) == [{
        "data": [111.0, 222.0], "elements": 2, "method": "write",
        "path": [{"symbolic": "A_Tag"}, {"element": 1}], "tag_type": 202}]


@pytest.mark.parametrize("text, path", [
    ('@4/5/{"connection":100}', [{"class": 4}, {"instance": 5}, {"connection": 100}]),
    ('@0x04/5/{"connection":100}', [{"class": 4}, {"instance": 5}, {"connection": 100}]),
    ('@{"class":4}/5/{"connection":100}', [{"class": 4}, {"instance": 5}, {"connection": 100}]),
    ("@0x1FF/01/0x1A", [{"class": 511}, {"instance": 1}, {"attribute": 26}]),
    ("@511/1/0b11010/0o7", [{"class": 511}, {"instance": 1}, {"attribute": 26}, {"element": 7}]),
    ("Tag[1].SubTag[0]", [{"symbolic": "Tag"}, {"element": 1}, {"symbolic": "SubTag"}, {"element": 0}]),
])
def test_parse_paths(text: str, path: list) -> None:
    (op,) = client.parse_operations([text])
    assert op["path"] == path and op["method"] == "read" and op["elements"] == 1


def test_parse_counts_offsets_casts() -> None:
    ops = list(client.parse_operations([
        "Tag[1].SubTag[0-9]", "Tag[1].SubTag[0]*10", "Tag[0-9]+16=(DINT)4,5,6,7,8,9", "Tag=9.9,10",
        "Tag[8-9]=88,99", 'TEXT[1]=(SSTRING)"Hello, world!"', "@511/01/26[99]=1", "B=(BOOL)true"]))
    assert ops[0]["elements"] == 10 and ops[1]["elements"] == 10
    assert ops[2]["offset"] == 16 and ops[2]["tag_type"] == 0xC4 and ops[2]["data"] == [4, 5, 6, 7, 8, 9]
    assert ops[3]["tag_type"] == 0xCA and ops[3]["data"] == [9.9, 10.0]
    assert ops[4]["tag_type"] == 0xC3 and ops[4]["elements"] == 2
    assert ops[5]["data"] == ["Hello, world!"] and ops[5]["tag_type"] == 0xDA
    assert ops[6]["path"][-1] == {"element": 99} and ops[6]["data"] == [1]
    assert ops[7]["data"] == [1] and ops[7]["tag_type"] == 0xC1


@pytest.mark.parametrize("text, position, why", [
    ("Tag[1-", 3, "expected [<index>]"),
    ("Tag[1-2]=1", 9, "1 values given for 2 elements"),
    ("Tag=(FOO)1", 5, "unknown type 'FOO'"),
    ("@1/x", 3, "expected a number"),
    ("Tag=(SINT)300", 10, "out of range for SINT"),
    ("Tag=1,,2", 6, "missing value"),
    ("9Tag", 0, "expected a tag name"),
    ("Tag=(REAL)1e400", 10, "1e400 is out of range for REAL"),
    ("Tag=(REAL)1,-3.5e38", 12, "-3.5e38 is out of range for REAL"),
    ("Tag=2.5,1e309", 8, "1e309 is out of range for REAL"),
    ("Tag=(LREAL)1e309", 11, "1e309 is out of range for LREAL"),
    ("Tag=(DINT)2147483648", 10, "2147483648 is out of range for DINT"),
    ("Tag=(UINT)-1", 10, "-1 is out of range for UINT"),
    ("Tag=(INT)-32769", 9, "-32769 is out of range for INT"),
])
def test_bad_operation_names_text_and_position(text: str, position: int, why: str) -> None:
    with pytest.raises(OperationError) as err:
        list(client.parse_operations([text]))
    assert err.value.position == position
    assert repr(text) in str(err.value) and f"position {position}" in str(err.value) and why in str(err.value)


def test_float_limits_and_explicit_infinities_are_accepted() -> None:
    ops = list(client.parse_operations(["R=(REAL)3.4028235e38", "R=(REAL)-inf", "R=(LREAL)1e308",
                                        "R=(REAL)1e-50"]))
    assert [op["data"][0] for op in ops[:3]] == [3.4028235e38, float("-inf"), 1e308]
    assert ops[3]["data"] == [1e-50]  # underflow to 0 on the wire is not an overflow


def test_send_path_forms() -> None:
    assert client_ops.parse_send_path("@6/1") == client_ops.parse_send_path('@{"class":6}/1') == [
        {"class": 6}, {"instance": 1}]
    assert client_ops.parse_send_path("") == client_ops.parse_send_path("  ") == []
    for bad, why in (("zz", "expected @<class>/<instance>"), ("6/1", "expected @<class>/<instance>"),
                     ("@6/x", "expected a number, found 'x' at position 3"), ("@", "empty path segment")):
        with pytest.raises(ValueError, match="bad --send-path") as err:
            client_ops.parse_send_path(bad)
        assert repr(bad) in str(err.value) and why in str(err.value)


def test_route_path_forms_and_format() -> None:
    assert parse_route_path('{"port": 1, "link": 0}') == parse_route_path("1/0") == [{"port": 1, "link": 0}]
    assert parse_route_path('["1/3", {"port":2,"link":"1.2.3.4"}]') == [
        {"port": 1, "link": 3}, {"port": 2, "link": "1.2.3.4"}]
    assert parse_route_path("false") is False and parse_route_path("0") is False
    with pytest.raises(ValueError, match="bad route path"):
        parse_route_path("7")
    assert format_path([{"symbolic": "SCADA"}, {"element": 1}], 10) == "SCADA[1-10]"


# --- against the upstream server -----------------------------------------------------

@pytest.fixture(scope="module")
def upstream_server(upstream_python):
    port = free_port()
    argv = python_module("cpppo.server.enip", "-a", f"127.0.0.1:{port}", *TAGS, python=upstream_python)
    with running(argv, listen=("127.0.0.1", port)):
        yield ("127.0.0.1", port)


@pytest.mark.interop
def test_connector_read_write_pipeline_multiple(upstream_server) -> None:
    host, port = upstream_server
    big = ",".join(str(i) for i in range(600))
    tags = ["SCADA[1]=99", "SCADA[0-10]", 'TEXT[1]=(SSTRING)"Hello, world!"', "TEXT[0-3]", "FLOAT=1.5",
            "FLOAT", f"SCADA[0-599]={big}", "SCADA[0-999]", "SCADA[1]=(DINT)1"]
    with client.connector(host=host, port=port, timeout=5.0) as conn:
        for kwds in ({"depth": 0}, {"depth": 3}, {"depth": 5, "multiple": 250}, {"fragment": True}):
            results = list(conn.operate(client.parse_operations(tags), **kwds))
            assert [r[0] for r in results] == list(range(len(tags)))
            vals = [r[5] for r in results]
            assert vals[0] is True and vals[1][:2] == [0, 99] and len(vals[1]) == 11
            assert vals[3] == ["", "Hello, world!", "", ""] and vals[5] == [1.5]
            assert vals[7] == list(range(600)) + [0] * 400   # automatic fragmented read of 2000 bytes
            assert vals[8] is None and results[8][4][0] == 0xFF  # upstream refuses DINT into INT
            if kwds.get("multiple"):
                assert results[1][1].startswith("Multiple")
        failures, values = conn.process(client.parse_operations(["SCADA[1-2]=7,8", "SCADA[1-2]"]),
                                        validating=True)
        assert failures == 0 and values == [[7, 8], [7, 8]]  # validate fills in the written data


@pytest.mark.interop
def test_connector_raw_requests_and_next(upstream_server) -> None:
    host, port = upstream_server
    with client.connector(host=host, port=port, timeout=5.0) as conn:
        conn.write("SCADA[4]", data=[44, 55, 66], tag_type=0xC3)
        conn.read("SCADA[4-6]")
        replies = []
        deadline = time.monotonic() + 5
        while len(replies) < 2 and time.monotonic() < deadline:
            assert conn.readable(timeout=1.0), "Failed to receive reply"
            rpy = next(conn)
            if rpy is not None:
                replies.append(rpy)
        req = replies[1]["enip.CIP.send_data.CPF.item[1].unconnected_send.request"]
        assert replies[0].enip.status == 0 and replies[0]["enip.CIP.send_data.CPF.item[1].type_id"] == 178
        assert req.status == 0 and req.read_tag.data == [44, 55, 66]
        conn.get_attribute_single("@1/1/7")
        rpy, _ = client.await_response(conn, timeout=5.0)
        data = rpy["enip.CIP.send_data.CPF.item[1].unconnected_send.request.get_attribute_single.data"]
        assert bytes(data[1:]).decode() == "1756-L61/B LOGIX5561" and data[0] == 20


@pytest.mark.interop
def test_connector_attribute_operations(upstream_server) -> None:
    host, port = upstream_server
    ops = [{"method": "set_attribute_single", "path": [{"class": 0x93}, {"instance": 3}, {"attribute": 10}],
            "data": [1.0], "tag_type": 0xCA},
           {"method": "get_attribute_single", "path": [{"class": 0x93}, {"instance": 3}, {"attribute": 10}]},
           {"method": "get_attributes_all", "path": [{"class": 1}, {"instance": 1}]}]
    with client.connector(host=host, port=port, timeout=5.0) as conn:
        results = list(conn.pipeline(ops, depth=2))
        assert [r[1] for r in results] == ["Single S_A_S", "Single G_A_S", "Single G_A_A"]
        assert results[0][5] is True and results[1][5] == [0, 0, 128, 63]
        assert results[2][5][:6] == [1, 0, 14, 0, 54, 0]
        assert list(conn.results(["Motor_Velocity"])) == [[1.0]]


@pytest.mark.interop
def test_enip_client_cli_prints_results(upstream_server) -> None:
    host, port = upstream_server
    out = subprocess.run(
        [sys.executable, "-m", "cpppo.server.enip.client", "-a", f"{host}:{port}", "--print",
         "SCADA[901]=99", "SCADA[900-903]", "FLOAT=2.5", "FLOAT", "-d", "2", "-m", "-r", "2"],
        capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[:4] == ["SCADA[901]               <= [99]: 'OK'",
                         "SCADA[900-903]           == [0, 99, 0, 0]: 'OK'",
                         "FLOAT                    <= [2.5]: 'OK'",
                         "FLOAT                    == [2.5]: 'OK'"]
    assert len(lines) == 9 and "TPS" in lines[-1] and "8 operations, 0 failed" in lines[-1]


@pytest.mark.interop
def test_enip_client_cli_errors_are_one_line(upstream_server) -> None:
    host, port = upstream_server
    bad = client.main(["-a", f"{host}:{port}", "SCADA[1-"])
    assert bad == 1
    refused = subprocess.run([sys.executable, "-m", "cpppo.server.enip.client",
                              "-a", f"127.0.0.1:{free_port()}",
                              "SCADA"], capture_output=True, text=True, timeout=30)
    assert refused.returncode == 1 and refused.stderr.strip().endswith("Connection refused")
    assert len(refused.stderr.strip().splitlines()) == 1
    failed = subprocess.run([sys.executable, "-m", "cpppo.server.enip.client", "-a", f"{host}:{port}",
                             "--print",
                             "SCADA[1]=(DINT)1"], capture_output=True, text=True, timeout=30)
    assert failed.returncode == 1 and "'Status 0xff (General error) ext 0x2107'" in failed.stdout


@pytest.mark.interop
def test_list_identity_services_interfaces(upstream_server, capsys) -> None:
    host, port = upstream_server
    for udp in (False, True):
        with client.client(host=host, port=port, udp=udp, timeout=5.0) as conn:
            ident = connector.identity(conn, timeout=5.0)
            assert ident.product_name == "1756-L61/B LOGIX5561" and ident.vendor_id == 1
            conn.list_services(timeout=5.0)
            rpy, _ = client.await_response(conn, timeout=5.0)
            assert rpy["enip.CIP.list_services.CPF.item[0].communications_service.service_name"] \
                == "Communications"
    assert client.main(["-a", f"{host}:{port}", "-I", "-s", "-t", "5"]) == 0
    out = capsys.readouterr().out
    assert "List Services 0 from ('127.0.0.1'" in out and '"item[0].communications_service.capability"' in out
    assert client.main(["-a", f"{host}:{port}", "--udp", "--legacy", "0x0001", "-t", "5"]) == 0
    assert '"item[0].legacy_CPF_0x0001.sin_port": 44818' in capsys.readouterr().out


# --- failures: timeouts and dropped connections (a tiny in-test server) ----------------------

def _serve_once(behaviour: str) -> tuple[socket.socket, threading.Thread]:
    """A listener that registers sessions and then either never answers ('silent') or closes
    the connection at the first request ('drop')."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            buf = b""
            while True:
                data = conn.recv(4096)
                if not data:
                    return
                buf += data
                used, header, payload = encapsulation.decode(buf)
                if not used:
                    continue
                buf = buf[used:]
                if header.command == encapsulation.Command.REGISTER_SESSION:
                    conn.sendall(encapsulation.encode(header.command, payload, session=42,
                                                      context=header.context))
                elif behaviour == "drop":
                    return
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener, thread


@pytest.mark.parametrize("behaviour, error, message", [
    ("silent", client.ENIPTimeout, "Failed to receive any response"),
    ("drop", client.ENIPConnectionError, "Communication ceased before harvesting all pipeline responses"),
])
def test_pipeline_failures_raise_one_clear_error(behaviour, error, message) -> None:
    listener, thread = _serve_once(behaviour)
    with listener, client.connector(*listener.getsockname(), timeout=0.5) as conn:
        assert conn.session == 42
        begun = time.monotonic()
        with pytest.raises(error, match=message):
            list(conn.pipeline(client.parse_operations(["SCADA[0-3]"] * 4), depth=4))
        assert time.monotonic() - begun < 5
    thread.join(5)


def test_register_timeout_and_refused() -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)   # accepts (in the backlog), never answers
    with silent, pytest.raises(client.ENIPTimeout, match="Failed to receive any response"):
        client.connector(*silent.getsockname(), timeout=0.3)
    with pytest.raises(client.ENIPConnectionError, match="Connection refused"):
        client.connector("127.0.0.1", free_port(), timeout=1.0)
    assert issubclass(client.ENIPTimeout, TimeoutError)
    struct.calcsize("<Q")


# --- the client's hot-path framing equals the codec's ------------------------------------

def test_fast_framing_matches_codec() -> None:
    from cpppo.enip.client import wire
    from cpppo.enip.codec import cip, cpf, epath

    route = parse_route_path('["1/3", {"port":2,"link":"1.2.3.4"}]')
    request = wire.cip_request(cip.Service.READ_TAG, [{"symbolic": "SCADA"}, {"element": 3}], b"\x01\x00")
    wrapped = wire.unconnected_wrapper(route, [{"class": 6}, {"instance": 1}])(request)
    assert wrapped == wire.unconnected_send(request, route, [{"class": 6}, {"instance": 1}])
    outer = cip.Request.decode(wrapped)
    assert outer.service == 0x52 and outer.path == cip.CONNECTION_MANAGER_PATH
    inner = cip.UnconnectedSend.decode(outer.data)
    assert inner.message == request and inner.route_path == (epath.Port(1, 3), epath.Port(2, "1.2.3.4"))
    frame = wire.rr_frame(wrapped, session=7, context=9)
    used, header, payload = encapsulation.decode(frame)
    assert used == len(frame) and header.session == 7 and header.context == struct.pack("<Q", 9)
    assert frame == encapsulation.encode(0x6F, cpf.encode_rr_data(wrapped), session=7,
                                         context=struct.pack("<Q", 9))
    assert wire.rr_message(payload) == wrapped == cpf.decode_rr_data(payload).data


@pytest.mark.interop
def test_source_address_binds_locally(upstream_server) -> None:
    host, port = upstream_server
    with client.connector(host=host, port=port, timeout=5.0, source_address="127.0.0.1:0") as conn:
        assert conn.socket.getsockname()[0] == "127.0.0.1"
        assert list(conn.results(["SCADA[0]"])) != [None]


@given(st.text(alphabet='Tag_[]-.,=*+()@/{}":0123456789xSINTREAL ', max_size=30))
@settings(max_examples=300, deadline=None)
def test_any_operation_text_parses_or_raises_operation_error(text: str) -> None:
    try:
        op = client_ops.parse_operation(text)
    except OperationError as exc:
        assert 0 <= exc.position <= len(text) and repr(text) in str(exc)
    else:
        assert op["method"] in ("read", "write") and op["path"] and op["elements"] >= 1
