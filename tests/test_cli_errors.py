"""Every command the README lists, black-boxed with inputs a user gets wrong: each must end in
one clear line on stderr naming the cause, with a non-zero exit, and never a traceback.

Commands run as real subprocesses (console scripts of this environment, or ``python -m``),
each bounded by a timeout (a command that wrongly starts serving is killed by
``subprocess.run``).  Placeholders in the argv are filled per test: ``{refused}`` is a loopback
host:port where nothing listens, ``{silent}`` one that accepts connections and never answers,
``{busy}`` one already bound by this test, ``{free}`` a free one, ``{tmp}`` a temporary folder
and ``{file}`` a regular file (so ``{file}/x`` cannot be created).  Argparse usage errors print
the usage block first; for those only the last line is checked (``one_line=False``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import free_port

BIN = Path(sys.executable).parent
HOST = f"127.87.{20 + os.getpid() % 200}.1"


def script(name: str) -> list[str]:
    return [str(BIN / name)]


def module(name: str) -> list[str]:
    return [sys.executable, "-m", name]


def case(argv: str, code: int, needle: str, one_line: bool = True, *, id: str | None = None):
    return pytest.param(argv.split("|"), code, needle, one_line, id=id or argv.replace("|", " "))


@pytest.fixture(scope="module")
def places(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    tmp = tmp_path_factory.mktemp("cli_errors")
    (tmp / "afile").write_text("not a folder\n")
    busy = socket.socket()
    busy.bind((HOST, 0))
    busy.listen(1)
    silent = socket.socket()
    silent.bind((HOST, 0))
    silent.listen(64)  # the kernel completes connects; nobody ever reads or answers
    try:
        yield {
            "refused": f"{HOST}:{free_port(HOST)}", "free": f"{HOST}:{free_port(HOST)}",
            "busy": "{}:{}".format(*busy.getsockname()), "silent": "{}:{}".format(*silent.getsockname()),
            "tmp": str(tmp), "file": str(tmp / "afile"),
        }
    finally:
        busy.close()
        silent.close()


def check(command: list[str], argv: list[str], code: int, needle: str, one_line: bool,
          places: dict[str, str], cwd: str | None = None) -> None:
    argv = [a.format(**places) for a in argv]
    needle = needle.format(**places)
    done = subprocess.run([*command, *argv], capture_output=True, text=True, timeout=30, cwd=cwd,
                          stdin=subprocess.DEVNULL)
    shown = f"{' '.join(argv)} -> {done.returncode}\nstdout: {done.stdout}\nstderr: {done.stderr}"
    assert "Traceback" not in done.stderr + done.stdout, shown
    assert done.returncode == code, shown
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines and needle in lines[-1], shown
    if one_line:
        assert len(lines) == 1, shown


# -- EtherNet/IP ------------------------------------------------------------------------------

SERVER_CASES = [
    case("--bogus|X=INT", 2, "unrecognized arguments: --bogus", False),
    case("-a|{free}|X=INT[", 2, "bad tag spec 'X=INT['"),
    case("-a|{free}|X=FOO", 2, "unknown type 'FOO'"),
    case("-a|{free}|@1/x/7", 2, "bad tag spec '@1/x/7'"),
    case("-a|{free}|X@1/x/7=INT", 2, "address must be @<class>/<instance>/<attribute>"),
    case("-a|{free}|X=INT[0]", 2, "array length must be 1-65535"),
    case("-a|{free}|X=INT|X=DINT", 2, "duplicate tag 'X'"),
    case("-a|{free}|X@1/1/7=INT", 2, "address @1/1/7 is already in use"),
    case("-a|127.0.0.1:99999|X=INT", 2, "port must be 0-65535"),
    case("-a|{busy}|X=INT", 1, "cannot serve on {busy}: Address already in use"),
    case("-a|{free}|-w|{busy}|X=INT", 1, "cannot serve the web API on {busy}: Address already in use"),
    case("-a|{free}|-d|abc|X=INT", 2, "bad --delay 'abc'"),
    case("-a|{free}|-c|{tmp}/missing.cfg|X=INT", 2, "no such configuration file"),
    case("-a|{free}|-l|{file}/log|X=INT", 2, "cannot write log file"),
    case("-a|{free}|--max-connections|0|X=INT", 2, "--max-connections must be >= 1"),
    case("-a|{free}|--max-in-flight|0|X=INT", 2, "--max-in-flight must be >= 1, got 0"),
]


@pytest.mark.parametrize(("argv", "code", "needle", "one_line"), SERVER_CASES)
def test_enip_server(places, argv, code, needle, one_line) -> None:
    check(script("enip_server"), argv, code, needle, one_line, places)


@pytest.mark.parametrize(("argv", "code", "needle", "one_line"), [
    case("-a|{busy}|X=INT", 1, "cannot serve on {busy}: Address already in use"),
    case("--bogus|X=INT", 2, "unrecognized arguments: --bogus", False),
])
def test_python_m_cpppo_server_enip(places, argv, code, needle, one_line) -> None:
    check(module("cpppo.server.enip"), argv, code, needle, one_line, places)


CLIENT_CASES = [  # shared by enip_client and enip_get_attribute
    case("--bogus", 2, "unrecognized arguments: --bogus", False),
    case("-a|{refused}|SCADA[0]", 1, "cannot reach {refused}: Connection refused"),
    case("-a|{silent}|-t|0.3|SCADA[0]", 1, "cannot reach {silent}: no answer (timed out)"),
    case("-a|127.0.0.1:99999|SCADA[0]", 1, "the port must be 0-65535"),
    case("-a|127.0.0.1:abc|SCADA[0]", 1, "the port must be a number"),
    case("-a|127.0.0.1:1:2|SCADA[0]", 1, "expected <host>[:<port>]"),
    case("-a|{refused}|@1/x/7", 1, "bad operation '@1/x/7' at position 3: expected a number"),
    case("-a|{refused}|-t|-1|SCADA[0]", 2, "argument -t/--timeout: must be > 0 seconds", False),
    case("-a|{refused}|-l|{file}/log|SCADA[0]", 2, "cannot write log file"),
    case("-a|{refused}|-i", 1, "cannot reach {refused}: Connection refused"),
    case("-a|{refused}|-r|-2|SCADA[0]", 2, "--repeat must be >= 1, got -2"),
    case("-a|{refused}|-d|-3|SCADA[0]", 2, "--depth must be >= 0, got -3"),
    case("-a|{refused}|-m|-1|SCADA[0]", 2, "--multiple must be >= 0, got -1"),
    case("-a|{refused}|--send-path|zz|SCADA[0]", 2, "bad --send-path 'zz': expected @<class>/<instance>"),
    case("-a|{refused}|--send-path=@6/x|SCADA[0]", 2, "bad --send-path '@6/x': expected a number"),
]


@pytest.mark.parametrize(("argv", "code", "needle", "one_line"), [
    *CLIENT_CASES,
    case("-a|{refused}", 2, "at least one tag (or -i/-s/-I/-L) is required", False),
    case("-a|{refused}|X=INT[", 1, "bad operation 'X=INT['"),
    case("-a|{refused}|SCADA[", 1, "expected [<index>] or [<first>-<last>]"),
    case("-a|{refused}|SCADA[0]=(FOO)1", 1, "unknown type 'FOO'"),
    case("-a|{refused}|SCADA[5-2]", 1, "empty element range [5-2]"),
    case("-a|{refused}|SCADA[0]=(INT)99999", 1, "99999 is out of range for INT"),
    case("-a|{refused}|SCADA[0-9]=(INT)1,2", 1, "2 values given for 10 elements"),
    case("-a|{refused}|SCADA[0]=(REAL)1e400", 1,
         "bad operation 'SCADA[0]=(REAL)1e400' at position 15: 1e400 is out of range for REAL"),
])
def test_enip_client(places, argv, code, needle, one_line) -> None:
    check(script("enip_client"), argv, code, needle, one_line, places)


@pytest.mark.parametrize(("argv", "code", "needle", "one_line"), [
    *CLIENT_CASES,
    case("-a|{refused}", 2, "at least one attribute (or -i/-s/-I/-L) is required", False),
    case("-a|{refused}|@22/1/3=(REAL)abc", 1, "'abc' is not a REAL value"),
])
def test_enip_get_attribute(places, argv, code, needle, one_line) -> None:
    check(script("enip_get_attribute"), argv, code, needle, one_line, places)


@pytest.mark.parametrize(("argv", "code", "needle", "one_line"), [
    case("--bogus", 2, "unrecognized arguments: --bogus", False),
    case("-a|{refused}", 1, "cannot reach {refused}: Connection refused"),
    case("-a|{silent}|-t|0.3", 1, "List Services: no response from {silent} within 0.3s"),
    case("-a|127.0.0.1:99999", 1, "the port must be 0-65535"),
    case("-a|{refused}|-t|0", 2, "argument -t/--timeout: must be > 0 seconds", False),
])
def test_enip_list_services(places, argv, code, needle, one_line) -> None:
    check(script("enip_list_services"), argv, code, needle, one_line, places)


@pytest.mark.parametrize(("argv", "code", "needle", "one_line"), [
    case("--bogus", 2, "the following arguments are required: parameter", False),
    case("-a|{refused}|-n|1|Motor_Velocity", 1, "cannot reach {refused}: Connection refused"),
    case("-a|{silent}|-t|0.3|-n|1|Motor_Velocity", 1, "cannot reach {silent}: no answer (timed out)"),
    case("-a|127.0.0.1:99999|-n|1|Motor_Velocity", 1, "the port must be 0-65535"),
    case("-a|{refused}|-n|1|No_Such_Parameter", 1, "unrecognized parameter name 'No_Such_Parameter'"),
    case("-a|{refused}|-n|1|-g|no.such|Motor_Velocity", 1, "unknown gateway 'no.such'"),
    case("-a|{refused}|-n|1|--pass-thru|SCADA[", 1, "bad operation 'SCADA['"),
    case("-a|{refused}|-n|0|Motor_Velocity", 2, "--count must be at least 1"),
    case("-a|{refused}|-n|1|-c|-1|Motor_Velocity", 2, "--cycle must be >= 0 seconds"),
    case("-a|{refused}|-n|1|-t|0|Motor_Velocity", 2, "argument -t/--timeout: must be > 0", False),
    case("-a|{refused}|-l|{file}/log|Motor_Velocity", 2, "cannot write log file"),
])
def test_python_m_poll(places, argv, code, needle, one_line) -> None:
    check(module("cpppo.server.enip.poll"), argv, code, needle, one_line, places)


@pytest.mark.parametrize(("argv", "code", "needle", "one_line"), [
    case("--bogus", 2, "the following arguments are required: tags", False),
    case("-a|{refused}|SCADA", 1, "cannot reach {refused}: Connection refused"),
    case("-a|{silent}|-t|0.3|SCADA", 1, "cannot reach {silent}: no answer (timed out)"),
    case("-a|{refused}|X=INT[", 1, "bad operation 'X=INT['"),
    case("-a|{refused}|-r|0|SCADA", 2, "--repeat must be >= 1", False),
    case("-a|{refused}|-t|-1|SCADA", 2, "argument -t/--timeout: must be > 0", False),
])
def test_python_m_thruput(places, argv, code, needle, one_line) -> None:
    check(module("cpppo.server.enip.thruput"), argv, code, needle, one_line, places)


@pytest.mark.parametrize(("argv", "code", "needle", "one_line"), [
    case("", 2, "usage: python -m cpppo.server.enip.historize <file>", id="no-arguments"),
    case("--bogus", 2, "usage: python -m cpppo.server.enip.historize <file>"),
    case("{file}/h.hst|-a|{free}|X=INT", 2, "cannot record to {file}/h.hst"),
    case("{tmp}/h.hst|-a|{free}|X=INT[", 2, "bad tag spec 'X=INT['"),
    case("{tmp}/h.hst|-a|{busy}|X=INT", 1, "cannot serve on {busy}: Address already in use"),
    case("{tmp}/h.hst|-a|{free}|--bogus|X=INT", 2, "unrecognized arguments: --bogus"),
])
def test_python_m_historize(places, argv, code, needle, one_line) -> None:
    check(module("cpppo.server.enip.historize"), [a for a in argv if a], code, needle, one_line, places)


@pytest.mark.parametrize(("argv", "code", "needle", "one_line"), [
    case("--bogus", 2, "unrecognized arguments: --bogus"),
    case("-a|{busy}", 1, "cannot serve on {busy}: Address already in use"),
    case("-a|{free}|X=INT[", 2, "bad tag spec 'X=INT['"),
    case("-a|{free}|Motor_Velocity=REAL", 2, "duplicate tag 'Motor_Velocity'"),
])
def test_python_m_poll_test(places, argv, code, needle, one_line) -> None:
    check(module("cpppo.server.enip.poll_test"), argv, code, needle, one_line, places)


# -- Modbus/TCP -------------------------------------------------------------------------------

@pytest.mark.parametrize(("argv", "code", "needle", "one_line"), [
    case("--bogus|40001", 2, "unrecognized arguments: --bogus", False),
    case("-a|{free}|X=INT[", 2, "bad register spec 'X=INT['"),
    case("-a|{free}|40010-40001", 2, "40010-40001 is not a range within 40001-99999"),
    case("-a|{free}|40001-40010=abc", 2, "value 'abc' is not a whole number"),
    case("-a|{free}|40001=99999", 2, "value 99999 is outside 0..65535"),
    case("-a|{free}|20001", 2, "20001 is not a Modbus register number"),
    case("-a|127.0.0.1:99999|40001", 2, "port 99999 is outside 0..65535"),
    case("-a|127.0.0.1:abc|40001", 2, "port 'abc' is not a number"),
    case("-a|{busy}|40001", 1, "cannot listen on {busy}: Address already in use"),
    case("-a|{free}|-u|0-300|40001", 2, "bad unit ids '0-300'"),
    case("-a|{free}|-d|abc|40001", 2, "bad --delay 'abc'"),
    case("-a|{free}|--max-connections|0|40001", 2, "--max-connections must be >= 1"),
    case("-a|{free}|--max-in-flight|0|40001", 2, "--max-in-flight must be >= 1, got 0"),
    case("-a|{free}|-l|{file}/log|40001", 2, "cannot write log file"),
])
def test_modbus_sim(places, argv, code, needle, one_line) -> None:
    check(script("modbus_sim"), argv, code, needle, one_line, places)


def test_python_m_modbus_sim(places) -> None:
    check(module("cpppo.bin.modbus_sim"), ["-a", "{busy}", "40001"], 1,
          "cannot listen on {busy}: Address already in use", True, places)


@pytest.mark.parametrize(("argv", "code", "needle", "one_line"), [
    case("--bogus|40001", 2, "unrecognized arguments: --bogus", False),
    case("-a|{refused}|X=INT[", 2, "bad register spec 'X=INT['"),
    case("-a|{refused}|40001=abc", 2, "value 'abc' is not a whole number"),
    case("-a|127.0.0.1:abc|40001", 2, "port 'abc' is not a number"),
    case("-a|{refused}|-R|0|40001", 2, "bad rate 0.0"),
    case("-a|{refused}|-t|0|40001", 2, "bad timeout 0.0"),
    case("-a|{refused}|-u|999|40001", 2, "bad unit id 999: must be 0..255"),
    case("-a|{refused}|-r|0|40001", 2, "bad reach 0"),
    case("-a|{refused}|-c|0|40001", 2, "bad count 0: must be >= 1"),
    case("-a|{refused}|30001=5", 1, "30001: input registers are read-only"),
    case("-a|{refused}|-t|0.3|40001=5", 1, "modbus_poll: {refused} offline", False),  # + "failing" log
    case("-a|{refused}|-l|{file}/log|40001", 2, "cannot write log file"),
])
def test_modbus_poll(places, argv, code, needle, one_line) -> None:
    check(script("modbus_poll"), argv, code, needle, one_line, places)


# -- cpppo-fleet ------------------------------------------------------------------------------

GOOD = """\
[fleet]
name = "errors"
address_pool = "{net}.0/28"

[[device]]
kind = "modbus"
count = 2
name = "pump{{n}}"
registers = ["40001-40010=7"]
"""

ENIP = '[[device]]\nkind = "enip"\ncount = 1\nname = "{name}"\ntags = ["{tag}"]\n'

FLEET_FILES = {  # name -> (edit of GOOD, or whole text)
    "badkey.toml": ("[[device]]\n", "[[device]]\nbogus = 1\n"),
    "badtype.toml": ("count = 2", 'count = "two"'),
    "badkind.toml": ('kind = "modbus"', 'kind = "profinet"'),
    "dupname.toml": (None, GOOD + ENIP.format(name="pump1", tag="X=INT")),
    "badtag.toml": (None, GOOD + ENIP.format(name="l{{n}}", tag="X=INT[")),
    "badreg.toml": ('"40001-40010=7"', '"X=INT["'),
    "syntax.toml": (None, "[fleet\nname = "),
    "binary.toml": (None, None),
}


@pytest.fixture(scope="module")
def fleet_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("fleet_errors")
    good = GOOD.format(net=HOST.rsplit(".", 1)[0])
    (folder / "fleet.toml").write_text(good)
    for name, (old, new) in FLEET_FILES.items():
        if name == "binary.toml":
            (folder / name).write_bytes(b"\xff\xfe[fleet]\n")
        elif old is None:
            (folder / name).write_text(new.format(net=HOST.rsplit(".", 1)[0]))
        else:
            (folder / name).write_text(good.replace(old, new))
    (folder / "adir.toml").mkdir()
    return folder


@pytest.mark.parametrize(("argv", "code", "needle", "one_line"), [
    case("--bogus", 2, "cpppo-fleet: No such option: --bogus"),
    case("frobnicate|fleet.toml", 2, "No such command 'frobnicate'"),
    case("plan|--bogus|fleet.toml", 2, "cpppo-fleet plan: No such option: --bogus"),
    case("--backend|k8s|plan|fleet.toml", 2, "--backend must be process or docker, got 'k8s'"),
    case("plan|missing.toml", 2, "missing.toml: file: cannot read: No such file or directory"),
    case("plan|adir.toml", 2, "adir.toml: file: cannot read: Is a directory"),
    case("plan|binary.toml", 2, "binary.toml: file: not UTF-8 text"),
    case("plan|syntax.toml", 2, "syntax.toml: file: not valid TOML"),
    case("validate|badkey.toml", 2, "badkey.toml: device[0]: key 'bogus': unknown key"),
    case("plan|badtype.toml", 2, "badtype.toml: device[0]: key 'count': must be an integer, got 'two'"),
    case("plan|badkind.toml", 2, "key 'kind': must be one of enip, modbus, modbus-rtu, got 'profinet'"),
    case("plan|dupname.toml", 2, "device[1]: key 'name': duplicate device name 'pump1'"),
    case("plan|badtag.toml", 2, "device[1]: key 'tags': bad tag spec 'X=INT['"),
    case("plan|badreg.toml", 2, "device[0]: key 'registers': bad register spec 'X=INT['"),
    case("up|badkey.toml", 2, "key 'bogus': unknown key"),
    case("status|badtype.toml", 2, "key 'count': must be an integer"),
    case("poll|dupname.toml", 2, "duplicate device name 'pump1'"),
    case("down|syntax.toml", 2, "not valid TOML"),
    case("logs|nosuch|fleet.toml", 2, "no device or worker named 'nosuch' in fleet.toml"),
    case("logs|pump1|fleet.toml|-n|0", 2, "Invalid value for '--lines' / '-n'"),
    case("logs", 2, "cpppo-fleet logs: Missing argument 'device'"),
    case("logs|pump1|fleet.toml", 1, "no log of w000 yet: the fleet has not been brought up", False),
    case("restart|zzz*|fleet.toml", 2, "no device that is up matches 'zzz*'"),
    case("up|fleet.toml|--only|zzz*", 1, "--only zzz*: no device matches"),
    case("up|fleet.toml|--state-dir|{file}", 1, "cannot create the state folder {file}: File exists"),
    case("up|fleet.toml|--timeout|-1", 2, "Invalid value for '--timeout'"),
])
def test_cpppo_fleet(places, fleet_dir, argv, code, needle, one_line) -> None:
    check(script("cpppo-fleet"), argv, code, needle, one_line, places, cwd=str(fleet_dir))
    assert not (fleet_dir / ".fleet" / "errors" / "supervisord.conf").exists()  # nothing was started
