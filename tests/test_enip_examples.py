"""The runnable examples of spec 2.1.2-2.1.7, each run as the spec runs it: ``poll`` (TCPIP,
Identity, named parameters), ``list_identity_simple`` with ``enip.enip_format``, the ``io``
example, ``powerflex_motor_velocity``, and the remaining command lines of 2.1.4-2.1.6, against
our server (in a thread, or as a process where the spec starts one) and the upstream server."""

from __future__ import annotations

import ast
import re
import select
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cpppo.dotdict import dotdict
from cpppo.enip.cli import poll as poll_cli
from cpppo.enip.codec.errors import CodecError
from cpppo.enip.codec.tcpip import decode_tcpip
from cpppo.enip.device import model as device_mod
from cpppo.enip.server import background
from cpppo.server import enip
from cpppo.server.enip import client, get_attribute, list_identity_simple, powerflex_motor_velocity
from cpppo.server.enip import io as io_example
from cpppo.server.enip.ab import powerflex_750_series
from tests.support import free_port, python_module, running

SPECS = ["Tag=DINT[10]", "SCADA=INT[1000]", "TEXT=SSTRING[10]", "FLOAT@22/1/3=REAL",
         "Motor_Velocity@0x93/3/10=REAL", "Volume=REAL", "Temperature=REAL"]

# spec 2.1.2: the cpppo.cfg placed in the server's working directory
CPPPO_CFG = """\
[Identity]
# Generally, strings are not quoted
Product Name          = 1756-L61/B LOGIX5561

[TCPIP]
# However, some complex structures require JSON configuration:
Interface Configuration = {
    "ip_address":      "192.168.0.201",
    "network_mask":    "255.255.255.0",
    "dns_primary":     "8.8.8.8",
    "dns_secondary":   "8.8.4.4",
    "domain_name":     "example.com"
    }
Host Name              = controller
"""
INTERFACE = ["'192.168.0.201', '255.255.255.0', '0.0.0.0', '8.8.8.8', '8.8.4.4', 'example.com', 'controller'"]
NAME_BYTES = [20, 49, 55, 53, 54, 45, 76, 54, 49, 47, 66, 32, 76, 79, 71, 73, 88, 53, 53, 54, 49]


def _first_lines(stream, wanted: str, limit: int = 20, timeout: float = 10.0) -> str:
    """Lines of a running process's output up to the first containing ``wanted`` (bounded)."""
    seen = []
    deadline = time.monotonic() + timeout
    while len(seen) < limit and time.monotonic() < deadline:
        ready, _, _ = select.select([stream], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        seen.append(stream.readline())
        if wanted in seen[-1] or not seen[-1]:
            break
    return "".join(seen)


def run_module(module: str, *args: str, timeout: float = 30, **kwds) -> subprocess.CompletedProcess:
    return subprocess.run(python_module(module, *args), capture_output=True, text=True, timeout=timeout,
                          **kwds)


@pytest.fixture(scope="module")
def ours() -> Iterator[str]:
    """Our controller in a thread (TCP and UDP): its "host:port"."""
    dev = device_mod.Device.from_specs(SPECS, identity={"product_name": "Device 0", "serial_number": 0x1000})
    with background.serve_in_thread(dev, "127.0.0.1", 0, udp=True) as server:
        yield f"127.0.0.1:{server.port}"


@pytest.fixture(scope="module")
def upstream(upstream_python, tmp_path_factory) -> Iterator[str]:
    """The upstream controller, started in a directory holding the spec's cpppo.cfg."""
    cwd = tmp_path_factory.mktemp("upstream")
    (cwd / "cpppo.cfg").write_text(CPPPO_CFG)
    port = free_port()
    argv = python_module("cpppo.server.enip", "-a", f"127.0.0.1:{port}", *SPECS, python=upstream_python)
    with running(argv, listen=("127.0.0.1", port), cwd=cwd):
        yield f"127.0.0.1:{port}"


@pytest.fixture(scope="module")
def powerflex_sim() -> Iterator[str]:
    """Our simulated PowerFlex 750 (``python -m cpppo.server.enip.poll_test``) as a process."""
    port = free_port()
    with running(python_module("cpppo.server.enip.poll_test", "-a", f"127.0.0.1:{port}"),
                 listen=("127.0.0.1", port)):
        yield f"127.0.0.1:{port}"


def test_poll_test_help_shows_tags_as_optional(capsys) -> None:
    """poll_test brings its own parameters: extra TAG arguments are optional."""
    from cpppo.enip.cli import server as enip_server
    from cpppo.server.enip import poll_test
    with pytest.raises(SystemExit) as done:
        poll_test.main(["--help"])
    usage = capsys.readouterr().out
    assert done.value.code == 0 and "[TAG ...]" in usage and "TAG [TAG ...]" not in usage
    with pytest.raises(SystemExit) as done:
        enip_server.main(["--help"])
    assert done.value.code == 0 and "TAG [TAG ...]" in capsys.readouterr().out  # enip_server needs one


# --- 1. python -m cpppo.server.enip.poll -v TCPIP Identity (spec 2.1.2) ----------------------

def test_poll_tcpip_from_cpppo_cfg_against_ours(tmp_path: Path, capsys) -> None:
    """The whole 2.1.2 story: cpppo.cfg in the server's directory, then poll TCPIP."""
    (tmp_path / "cpppo.cfg").write_text(CPPPO_CFG)
    port = free_port()
    with running(python_module("cpppo.server.enip", "-v", "-a", f"127.0.0.1:{port}", "SCADA=INT[10]"),
                 listen=("127.0.0.1", port), cwd=tmp_path) as server:
        status = poll_cli.run(["-v", "-a", f"127.0.0.1:{port}", "-c", "0.1", "--count", "2",
                               "TCPIP", "Product Name"])
        loaded = _first_lines(server.stdout, "Loaded config")
        assert re.search(r"NORMAL +Loaded config files: \['cpppo\.cfg'\]", loaded), loaded
    out, err = capsys.readouterr()
    assert status == 0, err
    tcpip = f"          TCPIP: [2, 48, 0, [{{'class': 246}}, {{'instance': 1}}], {INTERFACE[0]}]"
    assert out.splitlines() == [tcpip, "   Product Name: ['1756-L61/B LOGIX5561']"] * 2
    assert re.search(rf"NORMAL +Polling begins via: 1756-L61/B LOGIX5561 at 127\.0\.0\.1:{port}\[\d+\]", err)


@pytest.mark.interop
def test_poll_tcpip_identity_against_upstream(upstream) -> None:
    result = run_module("cpppo.server.enip.poll", "-v", "-a", upstream, "-r", "0.1", "-n", "2", "TCPIP",
                        "Identity")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"          TCPIP: [2, 48, 0, [], {INTERFACE[0]}]",
        "       Identity: [1, 14, 54, 2836, 12640, 7079450, '1756-L61/B LOGIX5561', 255]"] * 2
    assert "Polling begins via: 1756-L61/B LOGIX5561 at 127.0.0.1:" in result.stderr


def test_poll_identity_against_ours(ours, capsys) -> None:
    assert poll_cli.run(["-a", ours, "-c", "0.05", "-n", "1", "Identity"]) == 0
    assert re.fullmatch(r"       Identity: \[1, 14, 54, 2836, 12640, 4096, 'Device 0', \d+\]\n",
                        capsys.readouterr().out)


def test_poll_named_parameters_of_the_powerflex_sim(powerflex_sim) -> None:
    result = run_module("cpppo.server.enip.poll", "-a", powerflex_sim, "-c", "0.1", "--count", "3",
                        "Motor Velocity", "Output Current", "Speed Units")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [" Motor Velocity: [789.010009765625]",
                                          " Output Current: [123.44999694824219]",
                                          "    Speed Units: [1]"] * 3


def test_poll_pass_thru_tags_and_attributes(ours, capsys) -> None:
    assert poll_cli.run(["-a", ours, "-c", "0.05", "-n", "1", "--pass-thru", "SCADA[1-2]", "@1/1/7"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "     SCADA[1-2]: [0, 0]", "         @1/1/7: [8, 68, 101, 118, 105, 99, 101, 32, 48]"]


@pytest.mark.parametrize(("args", "status", "message"), [
    (["Nope"], 1, "poll: unrecognized parameter name 'Nope' (use --pass-thru to poll Tags)"),
    (["-g", "ab.nope", "TCPIP"], 1, "poll: unknown gateway 'ab.nope'"),
    (["-a", "host:port", "TCPIP"], 1, "poll: bad address 'host:port': the port must be a number"),
    (["--route-path", "7", "TCPIP"], 1, "poll: bad route path"),
    (["--count", "0", "TCPIP"], 2, "poll: --count must be at least 1"),
])
def test_poll_user_errors_are_one_line(args, status, message, capsys) -> None:
    assert poll_cli.run(args) == status
    err = capsys.readouterr().err.strip()
    assert err.startswith(message) and len(err.splitlines()) == 1


def test_poll_failures_are_counted_and_bounded(capsys) -> None:
    port = free_port()
    assert poll_cli.run(["-a", f"127.0.0.1:{port}", "-c", "0.05", "-n", "2", "TCPIP"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.splitlines() == [f"poll: cannot reach 127.0.0.1:{port}: Connection refused"] * 2


def test_decode_tcpip_and_the_tcpip_parameter() -> None:
    raw = bytes([2, 0, 0, 0, 48, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 10] + [0] * 16 + [0, 0, 1, 0, 0x41, 0])
    zero = "0.0.0.0"
    assert decode_tcpip(raw) == [2, 48, 0, [], "10.0.0.1", zero, zero, zero, zero, "", "A"]
    for cut, field in ((10, "status"), (16, "path"), (30, "interface addresses"), (35, "domain name"),
                       (37, "host name")):
        with pytest.raises(CodecError, match=field):
            decode_tcpip(raw[:cut] if cut != 16 else raw[:12] + b"\x05\x00")
    assert powerflex_750_series(host="x").parameter_substitution("TCPIP") == [
        ("@0xF5/1", decode_tcpip, "TCPIP")]


# --- 2. list_identity_simple and enip.enip_format (spec 2.1.5, section 9) ---------------------

def test_list_identity_simple_against_ours(ours, capsys) -> None:
    """The 'broadcast' goes to our server's loopback unicast address (never a broadcast address)."""
    assert list_identity_simple.main([ours, "0.5"]) == 0
    out = capsys.readouterr().out
    reply = ast.literal_eval(out)
    assert reply["enip.CIP.list_identity.CPF.item[0].identity_object.product_name"] == "Device 0"
    assert reply["enip.command"] == 0x63 and reply["peer"][0] == "127.0.0.1"
    assert list_identity_simple.main([f"127.0.0.1:{free_port()}", "0.2"]) == 1
    assert capsys.readouterr().err.strip() == "list_identity_simple: no response within 0.2s"


def test_spec_list_identity_loop_with_enip_format(ours) -> None:
    """The spec's code, as written there (its host: our loopback address)."""
    host, port = client.parse_address(ours)
    printed = []
    with client.client(host=host, port=port, udp=True, broadcast=True) as conn:
        conn.list_identity(timeout=1.0)
        for _ in range(5):
            response, _elapsed = client.await_response(conn, timeout=0.3)
            if response:
                printed.append(enip.enip_format(response))
            else:
                break  # No response (None) w'in timeout or EOF ({})
    assert len(printed) == 1
    assert "\n    'enip.CIP.list_identity.CPF.item[0].identity_object.serial_number': 4096,\n" in printed[0]


@pytest.mark.interop
def test_list_identity_simple_against_upstream(upstream) -> None:
    result = run_module("cpppo.server.enip.list_identity_simple", upstream, "0.5")
    assert result.returncode == 0, result.stderr
    reply = ast.literal_eval(result.stdout)
    assert reply["enip.CIP.list_identity.CPF.item[0].identity_object.product_name"] == "1756-L61/B LOGIX5561"


def test_enip_format_is_a_dict_literal() -> None:
    reply = dotdict()
    reply["enip.status"] = 0
    reply["enip.sender_context.input"] = bytearray(8)
    reply["enip.CIP.list_identity.CPF.item"] = [dotdict(type_id=12, identity_object=dotdict(name="x")),
                                                dotdict(type_id=1)]
    reply["peer"] = ("127.0.0.1", 44818)
    text = enip.enip_format(reply)
    assert text.startswith("{\n    'enip.status':                  0,\n")
    assert ast.literal_eval(text) == {
        "enip.status": 0, "enip.sender_context.input": bytes(8), "peer": ("127.0.0.1", 44818),
        "enip.CIP.list_identity.CPF.item[0].type_id": 12,
        "enip.CIP.list_identity.CPF.item[0].identity_object.name": "x",
        "enip.CIP.list_identity.CPF.item[1].type_id": 1}
    keys = [line.split(":")[0].strip() for line in enip.enip_format(reply, sort_keys=True, indent=2)
            .splitlines()[1:-1]]
    assert keys == sorted(keys) and enip.enip_format({}) == "{\n}"
    with pytest.raises(TypeError, match="needs a dict"):
        enip.enip_format([1, 2])  # type: ignore[arg-type]


# --- 3. python -m cpppo.server.enip.io and powerflex_motor_velocity (spec 2.1.5, 2.1.6) -------

def test_io_example_against_ours(ours, capsys) -> None:
    assert io_example.main([ours]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Tag[0-9]                 <= [4, 5, 6, 7, 8, 9]: 'OK'"
    assert re.fullmatch(r"@0x0002/1/1              == \[\d+\]: 'OK'", lines[1])
    assert lines[2] == "Tag[3-5]                 == [0, 4, 5]: 'OK'"
    assert io_example.main([ours, "Tag[0-1]", "Nope"]) == 1          # a failed operation: status 1
    assert io_example.main([f"127.0.0.1:{free_port()}"]) == 1
    assert capsys.readouterr().err.strip().endswith("io: [Errno 111] Connection refused")


@pytest.mark.interop
def test_io_example_against_upstream(upstream) -> None:
    result = run_module("cpppo.server.enip.io", upstream)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "Tag[0-9]                 <= [4, 5, 6, 7, 8, 9]: 'OK'"
    assert result.stdout.splitlines()[2] == "Tag[3-5]                 == [0, 4, 5]: 'OK'"


def _motor_velocity(address: str) -> list[float]:
    host, port = client.parse_address(address)
    via = powerflex_750_series(host=host, port=port, timeout=5.0)
    with via:
        (value,) = via.read(via.parameter_substitution("Motor Velocity"), checking=True)
    via.close_gateway()
    return value


def test_powerflex_motor_velocity_against_the_powerflex_sim(powerflex_sim) -> None:
    result = run_module("cpppo.server.enip.powerflex_motor_velocity", f"@{powerflex_sim}", "123.45")
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"\w{3} \w{3} [ \d]\d [\d:]{8} \d{4}: Motor Velocity = \(REAL\)123\.45 +== True\n",
                        result.stdout)
    assert _motor_velocity(powerflex_sim) == [pytest.approx(123.45, abs=1e-4)]
    assert powerflex_motor_velocity.main([f"@{powerflex_sim}"]) == 0          # velocity defaults to 0
    assert _motor_velocity(powerflex_sim) == [0.0]
    assert powerflex_motor_velocity.main([f"@{powerflex_sim}", "789.01"]) == 0


@pytest.mark.parametrize(("args", "message"), [
    (["@127.0.0.1:{port}", "1"], "powerflex_motor_velocity: writing 'Motor Velocity = (REAL)1.0' failed: "
                                 "[Errno 111] Connection refused"),
    (["@127.0.0.1:{port}", "fast"], "powerflex_motor_velocity: could not convert string to float: 'fast'"),
])
def test_powerflex_motor_velocity_errors(args, message, capsys) -> None:
    port = free_port()
    assert powerflex_motor_velocity.main([a.format(port=port) for a in args]) == 1
    assert capsys.readouterr().err.strip() == message


@pytest.mark.interop
def test_powerflex_motor_velocity_against_upstream(upstream) -> None:
    result = run_module("cpppo.server.enip.powerflex_motor_velocity", f"@{upstream}", "12.5")
    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip().endswith(": Motor Velocity = (REAL)12.5      == True")
    assert _motor_velocity(upstream) == [12.5]


def test_poll_example_against_the_powerflex_sim(powerflex_sim) -> None:
    """Spec 2.1.7: start poll_test, then run poll_example and poll_example_many (1.2 s each)."""
    result = run_module("cpppo.server.enip.poll_example", powerflex_sim, "1.2")
    assert result.returncode == 0, result.stderr
    assert re.search(r"^\w{3} .*: +Output Current == \[123\.44999694824219\]$", result.stdout, re.M)
    assert re.search(r"^\w{3} .*: +Motor Velocity == \[[\d.]+\]$", result.stdout, re.M)
    many = run_module("cpppo.server.enip.poll_example_many", powerflex_sim, "1.2")
    assert many.returncode == 0, many.stderr
    for line in ("Output Frequency == [456.7799987792969]", "Elapsed Kwh == [987.6500244140625]",
                 "Speed Units == [1]"):
        assert re.search(rf"^[\d:. -]+: +{re.escape(line)}$", many.stdout, re.M), many.stdout


# --- 4. the other command lines of 2.1.4-2.1.6 -----------------------------------------------

def test_get_attribute_identity_and_name_bytes(ours, capsys) -> None:
    """2.1.5 section 7: ``get_attribute --depth 3 -v '@1/1' '@1/1/7'``; the SSTRING decodes."""
    assert get_attribute.main(["-a", ours, "--depth", "3", "-v", "@1/1", "@1/1/7"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert re.fullmatch(r".*:   0: Single G_A_A      @0x0001/1 == \[1, 0, 14, 0, 54, 0, .*\]", lines[0])
    assert lines[1].endswith(":   1: Single G_A_S      @0x0001/1/7 == " + str([8, *b"Device 0"]))
    name = ast.literal_eval(lines[1].split("== ")[1])
    assert "".join(chr(x) for x in name) == "\x08Device 0"


@pytest.mark.interop
def test_get_attribute_identity_against_upstream(upstream) -> None:
    result = run_module("cpppo.server.enip.get_attribute", "-a", upstream, "--depth", "3", "-v", "@1/1",
                        "@1/1/7")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].endswith("@0x0001/1 == " + str([1, 0, 14, 0, 54, 0, 20, 11, 96, 49, 26, 6, 108, 0,
                                                    *NAME_BYTES, 255, 0, 0, 0]))
    assert lines[1].endswith("@0x0001/1/7 == " + str(NAME_BYTES))
    assert "".join(chr(x) for x in NAME_BYTES) == "\x141756-L61/B LOGIX5561"


@pytest.mark.parametrize("where", ["ours", pytest.param("upstream", marks=pytest.mark.interop)])
def test_set_attribute_real_then_read_tag(where, request, capsys) -> None:
    """2.1.5 section 8: ``get_attribute '@22/1/3=(REAL)1.0' '@22/1/3'`` then ``client 'FLOAT'``."""
    address = request.getfixturevalue(where)
    assert get_attribute.main(["-a", address, "@22/1/3=(REAL)1.0", "@22/1/3"]) == 0
    assert client.main(["-a", address, "--print", "FLOAT"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith(":   0: Single S_A_S      @0x0016/1/3 == True")
    assert lines[1].endswith(":   1: Single G_A_S      @0x0016/1/3 == [0, 0, 128, 63]")
    assert lines[2] == "FLOAT                    == [1.0]: 'OK'"


def test_client_print_scada_and_text(ours) -> None:
    """2.1.4: ``client -v --print SCADA[1]=99 SCADA[0-10] 'TEXT[1]=(SSTRING)"Hello, world!"' TEXT[0-3]``."""
    result = run_module("cpppo.server.enip.client", "-a", ours, "-v", "--print", "SCADA[1]=99", "SCADA[0-10]",
                        'TEXT[1]=(SSTRING)"Hello, world!"', "TEXT[0-3]")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[:4] == [
        "SCADA[1]                 <= [99]: 'OK'",
        "SCADA[0-10]              == [0, 99, 0, 0, 0, 0, 0, 0, 0, 0, 0]: 'OK'",
        "TEXT[1]                  <= ['Hello, world!']: 'OK'",
        "TEXT[0-3]                == ['', 'Hello, world!', '', '']: 'OK'"]
    assert "Connect:  Success" in result.stderr


@pytest.mark.parametrize(("server", "flags", "ok"), [
    ({"route_path": "1/0"}, [], True),
    ({"route_path": "1/0"}, ["--route-path", '{"port": 1, "link": 0}'], True),
    ({"route_path": "1/0"}, ["--route-path", "1/3"], False),
    ({"route_path": None}, ["--route-path", '["1/3", {"port":2,"link":"1.2.3.4"}]'], True),
    ({"route_path": None}, ["--route-path", '["1/3", "2/1.2.3.4"]'], True),
    ({"simple": True}, ["--send-path=", "--route-path=false"], True),
    ({"simple": True}, ["-S"], True),
    ({"simple": True}, [], False),
])
def test_client_route_and_send_paths(server, flags, ok, capsys) -> None:
    """2.1.4: the --route-path forms, --send-path='' --route-path=false and -S, against a server
    that checks the route path (or is a simple, non-routing device)."""
    dev = device_mod.Device.from_specs(["SCADA=INT[10]"], **server)
    with background.serve_in_thread(dev, "127.0.0.1", 0) as handle:
        status = client.main(["-a", f"127.0.0.1:{handle.port}", "-t", "2", "--print", "SCADA[1]", *flags])
    out = capsys.readouterr().out
    assert (status == 0) is ok and ("SCADA[1]                 == [0]: 'OK'" in out) is ok


def test_thruput_spec_command_lines(ours, capsys) -> None:
    """2.1.5: ``thruput -a <host> Volume Temperature --repeat 25`` with more --depth and --multiple."""
    from cpppo.server.enip import thruput
    summaries = []
    for extra in ([], ["--depth", "20"], ["--depth", "20", "--multiple", "250"]):
        assert thruput.main(["-a", ours, "Volume", "Temperature", "--repeat", "25", *extra]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert len(lines) == 51 and all(re.fullmatch(r"[\d.]+: +\d+: \[0\.0\]", x) for x in lines[:50])
        summaries.append(lines[-1])
    requests = [int(s.split("using")[1].split("requests")[0]) for s in summaries]
    assert all(s.startswith(" 50 operations using") for s in summaries)
    assert requests[0] == requests[1] == 50 and requests[2] < 50
    assert "at pipeline depth 20;" in summaries[2]


def test_legacy_0x0001_over_udp_against_ours(ours, capsys) -> None:
    assert client.main(["-a", ours, "--udp", "--legacy", "0x0001", "-t", "2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Legacy 0x0001 0 from ('127.0.0.1',")
    assert '"item[0].legacy_CPF_0x0001.ip_address": "127.0.0.1"' in out


def test_example_modules_run_as_the_spec_names_them() -> None:
    """``python -m`` of each new example module answers (here: with a user error, no traceback)."""
    for module, args in (("cpppo.server.enip.poll", ["--help"]),
                         ("cpppo.server.enip.list_identity_simple", ["127.0.0.1:x"]),
                         ("cpppo.server.enip.io", ["127.0.0.1:x"]),
                         ("cpppo.server.enip.powerflex_motor_velocity", ["@127.0.0.1:x"])):
        result = run_module(module, *args)
        assert "Traceback" not in result.stderr, result.stderr
        if args == ["--help"]:
            assert result.returncode == 0 and "--count" in result.stdout and "TCPIP" in result.stdout
        else:
            assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(("domain", "host"), [("example.com", "plc7"), ("odd", "even"), ("", "a"),
                                             ("ab", "")])
def test_the_tcpip_object_served_is_what_the_client_decodes(domain: str, host: str) -> None:
    """One padded CIP STRING for the TCP/IP Object's names: the server writes it with the
    codec's encode_padded_strings, the client's decode_tcpip reads it with the codec's STRING."""
    import asyncio

    from cpppo.enip.client.aclient import AsyncClient
    from cpppo.enip.device.model import Device
    from cpppo.enip.server.background import serve_in_thread

    device = Device.from_specs(["X=INT"], tcpip={"ip_address": "10.0.0.7", "domain_name": domain,
                                                 "host_name": host})

    async def read(port: int) -> list[int]:
        async with AsyncClient("127.0.0.1", port, timeout=5.0) as client:
            return await client.get_attributes_all("@0xF5/1")

    with serve_in_thread(device) as server:
        decoded = decode_tcpip(asyncio.run(read(server.port)))
    assert decoded[3] == [{"class": 0xF6}, {"instance": 1}]  # the Ethernet Link object
    assert decoded[4] == "10.0.0.7" and decoded[-2:] == [domain, host]
    with pytest.raises(ValueError, match=r"TCPIP address '10\.0\.0' is not an IPv4 address"):
        Device.from_specs(["X=INT"], tcpip={"ip_address": "10.0.0"})
