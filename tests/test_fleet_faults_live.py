"""Faults on a running fleet (process backend), as third-party clients see them: pymodbus and
mbpoll get the exception or time out, pycomm3 gets the CIP status, a refused connection, a
dropped one; and normal service after ``fault --clear``.  The rest of the fleet is unaffected."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fleet_support import CliFleet, until
from tests.support import free_port

pytestmark = [pytest.mark.slow, pytest.mark.interop]

MBPOLL = shutil.which("mbpoll")


def fleet_text(octet: int, port: int) -> str:
    return f"""
[fleet]
name = "faults{octet}"
address_pool = "127.78.{octet}.0/24"
health_interval = 0.5
health_timeout = 1.0
devices_per_worker = 2

[[device]]
kind = "modbus"
count = 3
name = "pump{{n}}"
port = {port}
registers = ["40001-40010=7", "1-8=0", "30001~counter(rate=20)"]

[[device]]
kind = "enip"
count = 2
name = "line{{n}}"
port = {port}
tags = ["SCADA=INT[10]", "Speed=REAL", "Count=DINT~counter(rate=20)"]
"""


@pytest.fixture(scope="module")
def fleet(tmp_path_factory) -> Iterator[CliFleet]:
    octet = 100 + os.getpid() % 100
    tmp = tmp_path_factory.mktemp("faults")
    f = CliFleet(tmp, fleet_text(octet, free_port(f"127.78.{octet}.1")))
    try:
        f.cli("up")
        until(f.all_healthy, what="all healthy")
        yield f
    finally:
        f.backend.down()


@pytest.fixture(autouse=True)
def cleared(fleet: CliFleet) -> Iterator[None]:
    yield
    fleet.cli("fault", "--clear")


def endpoint(fleet: CliFleet, name: str) -> tuple[str, int]:
    device = fleet.plan.device(name)
    return device.host, device.port


def modbus(fleet: CliFleet, name: str, timeout: float = 2.0):
    from pymodbus.client import ModbusTcpClient

    host, port = endpoint(fleet, name)
    return ModbusTcpClient(host, port=port, timeout=timeout, retries=0)


def test_modbus_exception_then_clear(fleet: CliFleet) -> None:
    out = fleet.cli("fault", "pump*", "error", "4")
    assert "error 0x04 on 3 devices" in out
    client = modbus(fleet, "pump2")
    try:
        client.connect()
        reply = client.read_holding_registers(0, count=2, device_id=1)
        assert reply.isError() and reply.exception_code == 4
        fleet.cli("fault", "--clear", "pump*")
        assert client.read_holding_registers(0, count=2, device_id=1).registers == [7, 7]
    finally:
        client.close()


@pytest.mark.skipif(MBPOLL is None, reason="Debian's mbpoll is not installed")
def test_mbpoll_sees_the_exception(fleet: CliFleet) -> None:
    fleet.cli("fault", "pump1", "error", "6")
    host, port = endpoint(fleet, "pump1")
    result = subprocess.run([MBPOLL, "-m", "tcp", "-p", str(port), "-o", "2", "-a", "1", "-t", "4", "-r", "1",
                             "-c", "2", "-1", host], capture_output=True, text=True, timeout=30)
    assert "busy" in (result.stdout + result.stderr).lower()  # exception 6: Slave device busy


def test_enip_status_offline_and_drop(fleet: CliFleet) -> None:
    from pycomm3 import LogixDriver
    from pycomm3.exceptions import CommError

    host, port = endpoint(fleet, "line1")
    fleet.cli("fault", "line1", "error", "0x05:Speed")
    with LogixDriver(f"{host}:{port}") as plc:
        assert plc.read("SCADA[1]").error is None  # only Speed fails
        speed = plc.read("Speed")
        assert speed.value is None and speed.error is not None
    fleet.cli("fault", "line1", "offline", "--for", "30s")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((host, port), timeout=2).close()
    assert json.loads(fleet.cli("faults", "--json"))["line1"]["kind"] == "offline"
    fleet.cli("fault", "--clear", "line1")
    until(lambda: _accepts(host, port), what="line1 listening again")
    with LogixDriver(f"{host}:{port}") as plc:
        assert plc.read("SCADA[1]").error is None
    fleet.cli("fault", "line2", "drop")
    host2, port2 = endpoint(fleet, "line2")
    plc = LogixDriver(f"{host2}:{port2}", init_tags=False)
    with pytest.raises(CommError):  # the connection is dropped at the first request
        plc.open()
    plc.close()


def test_the_rest_of_the_fleet_is_unaffected_and_history_is_kept(fleet: CliFleet) -> None:
    fleet.cli("fault", "pump1", "offline")
    client = modbus(fleet, "pump2")  # pump2 shares pump1's worker
    try:
        client.connect()
        assert client.read_holding_registers(0, count=1, device_id=1).registers == [7]
    finally:
        client.close()
    history = fleet.cli("faults", "--history")
    assert "inject" in history and "pump1" in history and "offline" in history


@pytest.mark.parametrize(("words", "message"), [
    (["pump1", "melt"], "unknown fault kind 'melt'"),
    (["nothing*", "timeout"], "no device matches 'nothing*'"),
    (["pump1", "offline", "--for", "soon"], "bad --for 'soon'"),
    (["pump1", "offline", "--for", "0s"], "--for '0s' must be longer than 0"),
    (["pump*", "drop", "1.5"], "probability '1.5' is out of range"),
    (["line1", "error", "0x100"], "out of range 1..0xFF"),
    (["pump1", "latency", "800ms..200ms"], "the low end is above the high end"),
    (["pump1", "latency", "9999h"], "must be between 0 and 7 days"),
    (["line1", "flap", "10ms"], "too short"),
    (["pump1", "timeout", "5s"], "timeout takes no argument"),
    (["pump1", "latency", "1s", "2s"], "fault takes PATTERN KIND [ARG]"),
    (["--clear", "nothing*"], "no device matches 'nothing*'"),
])
def test_bad_fault_commands_are_one_line_and_change_nothing(fleet: CliFleet, words, message) -> None:
    """Exit 2, one line naming the problem, and nothing changed anywhere: no worker holds a
    fault, the record and the history are as they were."""
    fleet.cli("fault", "pump2", "latency", "1ms")  # something to keep as it is
    history = fleet.cli("faults", "--history", "--json")
    result = fleet.invoke("fault", *words, code=2)
    assert result.output.strip().splitlines() == [result.output.strip()] and message in result.output, \
        result.output
    assert list(json.loads(fleet.cli("faults", "--json"))) == ["pump2"]
    assert fleet.cli("faults", "--history", "--json") == history
    from fleet.control import control_dir, request, socket_path

    held = {}
    for worker in fleet.plan.workers:
        held |= request(socket_path(control_dir(fleet.state), worker.name), {"op": "faults"})["faults"]
    assert {name: f["describe"] for name, f in held.items()} == {"pump2": "latency 1ms"}


def _listening(pid: int) -> set[tuple[str, int]]:
    """The TCP addresses process ``pid`` listens on (its socket inodes in /proc/net/tcp)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    out = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        row = line.split()
        if row[3] == "0A" and row[9] in inodes:  # LISTEN
            address, port = row[1].split(":")
            out.add((socket.inet_ntoa(bytes.fromhex(address)[::-1]), int(port, 16)))
    return out


def test_the_control_channel_opens_no_network_port(fleet: CliFleet) -> None:
    """Each worker's control channel is a unix socket in the state folder: a worker listens on
    TCP only at its devices' addresses and its /metrics."""
    from urllib.parse import urlsplit

    from fleet.metrics import worker_urls

    urls = worker_urls(fleet.plan, fleet.state)
    for worker, pid in fleet.pids().items():
        if worker == "health":
            continue
        assert (fleet.state / "control" / f"{worker}.sock").is_socket()
        metrics = urlsplit(urls[worker])
        devices = {(d.host, d.port) for d in fleet.plan.worker_devices(worker)}
        assert _listening(pid) == devices | {(metrics.hostname, metrics.port)}


def _accepts(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
        return True
    except OSError:
        return False


def test_status_shows_faulted_devices(fleet: CliFleet) -> None:
    fleet.cli("fault", "pump2", "latency", "200ms..500ms", "--for", "1h")
    status = fleet.status(code=1)  # a faulted device is not healthy...
    device = {d["name"]: d for d in status["devices"]}["pump2"]
    assert device["state"] == "faulted" and device["fault"].startswith("latency 200-500ms until ")
    assert status["faults"]["pump2"]["kind"] == "latency"
    until(lambda: fleet.invoke("status", "--json", "--faults-ok", code=None).exit_code == 0,
          what="status --faults-ok exits 0 with only injected faults")  # ...unless they are allowed
    table = fleet.cli("status", code=1)
    assert "faulted" in table and "latency 200-500ms" in table


# -- each fault kind as each third-party client sees it, then normal service after the clear --

KINDS = ("latency", "timeout", "offline", "drop", "error", "freeze", "corrupt", "flap")
ARGS = {"latency": ["300ms"], "flap": ["1s"]}  # error: the protocol's own code, below


def _moving(read, moving: bool) -> bool:
    """Whether a counter counting 20 a second moves (or, ``moving=False``, holds) over 0.3 s."""
    before = read()
    time.sleep(0.3)
    return (read() != before) is moving


def _both_seen(attempt) -> bool:
    """``attempt()`` (True: served, False: refused) gives both answers within 20 s: a flap."""
    seen, deadline = set(), time.monotonic() + 20
    while len(seen) < 2 and time.monotonic() < deadline:
        seen.add(attempt())
        time.sleep(0.1)
    return seen == {True, False}


def _pymodbus_look(fleet: CliFleet, name: str, kind: str) -> None:
    from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

    def connects() -> bool:
        client = modbus(fleet, name, timeout=1.0)
        try:
            return bool(client.connect())
        finally:
            client.close()

    if kind == "offline":
        assert not connects()  # refused
        return
    if kind == "flap":
        assert _both_seen(connects)
        return
    client = modbus(fleet, name, timeout=1.0)
    try:
        assert client.connect()
        if kind == "freeze":
            until(lambda: _moving(lambda: _counter(client), False), 10, "the counter held")
            return
        begun = time.monotonic()
        try:
            reply = client.read_holding_registers(0, count=2, device_id=1)
        except ModbusException as exc:
            reply = exc
        took = time.monotonic() - begun
        if kind == "latency":
            assert reply.registers == [7, 7] and took >= 0.29  # the injected delay, at least
        elif kind == "error":
            assert reply.isError() and reply.exception_code == 4
        elif kind == "timeout":
            assert isinstance(reply, ModbusIOException) and "No response" in str(reply)
        elif kind == "drop":
            assert isinstance(reply, ConnectionException)  # closed (or reset) under it
        else:  # corrupt: no well-formed answer
            assert isinstance(reply, ModbusException) or reply.isError() or reply.registers != [7, 7]
    finally:
        client.close()


def _counter(client) -> int:
    return client.read_input_registers(0, count=1, device_id=1).registers[0]


def _pymodbus_served(fleet: CliFleet, name: str) -> bool:
    from pymodbus.exceptions import ModbusException

    client = modbus(fleet, name, timeout=1.0)
    try:
        return client.connect() and client.read_holding_registers(0, count=2, device_id=1).registers == [7, 7]
    except ModbusException:
        return False
    finally:
        client.close()


@pytest.mark.parametrize("kind", KINDS)
def test_pymodbus_sees_each_fault_then_normal_service(fleet: CliFleet, kind: str) -> None:
    """pymodbus: late answers, no answer (ModbusIOException), a refused or closed connection,
    exception 04, held values, garbage, a port that comes and goes; after `fault --clear`
    the right registers again."""
    fleet.cli("fault", "pump3", kind, *ARGS.get(kind, ["4"] if kind == "error" else []))
    _pymodbus_look(fleet, "pump3", kind)
    fleet.cli("fault", "--clear", "pump3")
    until(lambda: _pymodbus_served(fleet, "pump3"), what="pump3 served again")
    client = modbus(fleet, "pump3")
    try:
        assert client.connect()
        until(lambda: _moving(lambda: _counter(client), True), 10, "the counter moving")
    finally:
        client.close()


MBPOLL_SAYS = {"timeout": ["timed out"], "offline": ["Connection refused"], "error": ["server failure"],
               "drop": ["reset by peer", "closed"], "corrupt": ["failed"]}


def _mbpoll(fleet: CliFleet, name: str, table: str = "4") -> subprocess.CompletedProcess:
    host, port = endpoint(fleet, name)
    return subprocess.run([MBPOLL, "-m", "tcp", "-p", str(port), "-o", "1", "-a", "1", "-t", table, "-r", "1",
                           "-c", "2" if table == "4" else "1", "-1", host],
                          capture_output=True, text=True, timeout=30)


def _mbpoll_value(fleet: CliFleet, name: str) -> str | None:
    result = _mbpoll(fleet, name, "3")
    return result.stdout.split("[1]:")[1].split()[0] if result.returncode == 0 else None


@pytest.mark.skipif(MBPOLL is None, reason="Debian's mbpoll is not installed")
@pytest.mark.parametrize("kind", KINDS)
def test_mbpoll_sees_each_fault_then_normal_service(fleet: CliFleet, kind: str) -> None:
    """mbpoll: the same faults in its own words (timed out, refused, reset, server failure)."""
    fleet.cli("fault", "pump2", kind, *ARGS.get(kind, ["4"] if kind == "error" else []))
    if kind == "freeze":
        until(lambda: _moving(lambda: _mbpoll_value(fleet, "pump2"), False), 10, "mbpoll: the counter held")
    elif kind == "flap":
        assert _both_seen(lambda: _mbpoll(fleet, "pump2").returncode == 0)
    else:
        result = _mbpoll(fleet, "pump2")
        said = result.stdout + result.stderr
        if kind == "latency":
            assert result.returncode == 0 and "[1]: \t7" in said and "[2]: \t7" in said
        else:
            assert result.returncode != 0, said
            assert any(words in said for words in MBPOLL_SAYS[kind]), said
    fleet.cli("fault", "--clear", "pump2")
    until(lambda: "[1]: \t7" in _mbpoll(fleet, "pump2").stdout, what="mbpoll served again")
    until(lambda: _moving(lambda: _mbpoll_value(fleet, "pump2"), True), 10, "mbpoll sees the counter moving")


def _logix(fleet: CliFleet, name: str):
    from pycomm3 import LogixDriver

    host, port = endpoint(fleet, name)
    plc = LogixDriver(f"{host}:{port}")
    plc.socket_timeout = 1.0
    return plc


def _pycomm3_opens(fleet: CliFleet, name: str) -> bool:
    from pycomm3.exceptions import PycommError

    plc = _logix(fleet, name)
    try:
        return bool(plc.open()) and plc.read("SCADA[1]").error is None  # open() False: no session
    except PycommError:
        return False
    finally:
        plc.close()


@pytest.mark.parametrize("kind", KINDS)
def test_pycomm3_sees_each_fault_then_normal_service(fleet: CliFleet, kind: str) -> None:
    """pycomm3 (a Logix client): late replies, a connection that cannot be opened (no answer,
    refused, closed, garbage), CIP status 0x08, held values, a port that comes and goes; after
    `fault --clear` it connects and reads again.  An open connection meets latency, error and
    freeze; the others are met by a controller connecting afresh."""
    from pycomm3.exceptions import CommError

    arg = ARGS.get(kind, ["0x08"] if kind == "error" else [])
    if kind in ("latency", "error", "freeze"):
        with _logix(fleet, "line2") as plc:
            fleet.cli("fault", "line2", kind, *arg)
            begun = time.monotonic()
            tag = plc.read("SCADA[1]")
            if kind == "latency":
                assert tag.error is None and time.monotonic() - begun >= 0.29
            elif kind == "error":
                assert tag.value is None and tag.error == "Service not supported"
            else:
                until(lambda: _moving(lambda: plc.read("Count").value, False), 10, "Count held")
    elif kind == "flap":
        fleet.cli("fault", "line2", kind, *arg)
        assert _both_seen(lambda: _pycomm3_opens(fleet, "line2"))
    elif kind == "corrupt":  # garbage: no session (pycomm3 raises, or logs it and cannot read)
        fleet.cli("fault", "line2", kind, *arg)
        assert not _pycomm3_opens(fleet, "line2")
    else:
        fleet.cli("fault", "line2", kind, *arg)
        plc = _logix(fleet, "line2")
        with pytest.raises(CommError):
            plc.open()
        plc.close()
        if kind == "offline":
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(endpoint(fleet, "line2"), timeout=2).close()
    fleet.cli("fault", "--clear", "line2")
    until(lambda: _pycomm3_opens(fleet, "line2"), what="pycomm3 served again")
    with _logix(fleet, "line2") as plc:
        until(lambda: _moving(lambda: plc.read("Count").value, True), 10, "Count moving")


def test_status_sees_a_fault_and_its_clear_at_once(tmp_path) -> None:
    """The health poller polls the devices `fault` and `fault --clear` name at once rather than
    at their place in the health interval (300 s here): status shows the faulted device's
    refused poll, and the device healthy right after the clear, or right after its `--for`."""
    octet = 100 + (os.getpid() + 53) % 100
    text = fleet_text(octet, free_port(f"127.78.{octet}.1")).replace("health_interval = 0.5",
                                                                      "health_interval = 300")
    f = CliFleet(tmp_path, text)
    try:
        f.cli("up")
        until(f.all_healthy, what="all healthy")
        f.cli("fault", "pump1", "offline")
        until(lambda: f.devices()["pump1"]["last_ok"] is False, what="the poller seeing pump1 refuse")
        assert f.devices()["pump1"]["state"] == "faulted"
        f.cli("fault", "--clear", "pump1")
        until(lambda: f.devices()["pump1"]["state"] == "healthy", what="pump1 healthy after the clear")
        f.cli("fault", "pump2", "offline", "--for", "3s")  # and when a fault ends by itself
        until(lambda: f.devices()["pump2"]["last_ok"] is False, what="the poller seeing pump2 refuse")
        until(lambda: f.devices()["pump2"]["state"] == "healthy", what="pump2 healthy once its fault ended")
    finally:
        f.backend.down()


SCHEDULED = """
[[fault]]
devices = "pump2"
kind = "error"
arg = 6
at = "0s"
for = "1h"

[[fault]]
devices = "line*"
kind = "latency"
arg = "100ms"
rate = "30/min"
stop = "10m"
for = "2s"
seed = 7
"""


def test_scheduled_faults_fire_and_are_recorded(tmp_path) -> None:
    octet = 100 + (os.getpid() + 37) % 100
    f = CliFleet(tmp_path, fleet_text(octet, free_port(f"127.78.{octet}.1")) + SCHEDULED)
    try:
        f.cli("up")
        until(lambda: any(e["device"] == "pump2" for e in json.loads(f.cli("faults", "--history", "--json"))),
              what="the timed fault recorded")
        client = modbus(f, "pump2")
        try:
            client.connect()
            reply = client.read_holding_registers(0, count=1, device_id=1)
            assert reply.isError() and reply.exception_code == 6
        finally:
            client.close()
        events = f.plan.fault_events(f.plan.device("line1").worker)
        assert events and events == f.plan.fault_events(f.plan.device("line1").worker)  # repeatable
        assert all(e["device"].startswith("line") or e["device"] == "pump2" for e in events)
    finally:
        f.backend.down()


CHAOS = """
[[fault]]
devices = "pump1"
kind = "timeout"
at = "3s"
for = "6s"

[[fault]]
devices = "*"
kind = "latency"
arg = "50ms..100ms"
rate = "90/min"
start = "2s"
stop = "7s"
for = "5s"
seed = 11
"""


def test_a_schedule_repeats_exactly_after_down_and_up(tmp_path) -> None:
    """The same [[fault]] rows and seeds inject the same faults into the same devices at the same
    offsets from `up` in a second run (the history's `until` less the run's epoch); the history
    of both runs is kept."""
    from fleet.faults import SCHEDULE_EPOCH_FILE

    octet = 100 + (os.getpid() + 71) % 100
    f = CliFleet(tmp_path, fleet_text(octet, free_port(f"127.78.{octet}.1")) + CHAOS)
    expected = sorted((e["device"], e["kind"]) for w in f.plan.workers for e in f.plan.fault_events(w.name))
    assert len(expected) > 3 and ("pump1", "timeout") in expected
    control = f.state / "control"

    def run() -> list[tuple]:
        f.cli("up")
        epoch = float((control / SCHEDULE_EPOCH_FILE).read_text())
        mine = []

        def injected() -> bool:
            mine[:] = [e for e in json.loads(f.cli("faults", "--history", "--json"))
                       if e["event"] == "inject" and e["source"] == "schedule" and e["time"] >= epoch]
            return len(mine) >= len(expected)

        until(injected, 60, "every scheduled fault injected")
        f.cli("down")
        return sorted((e["until"] - epoch, e["device"], e["fault"]) for e in mine)

    try:
        first = run()
        assert sorted((device, fault.split()[0]) for _, device, fault in first) == expected
        second = run()
        assert [e[1:] for e in second] == [e[1:] for e in first]
        assert [e[0] for e in second] == pytest.approx([e[0] for e in first], abs=1e-3)
        history = json.loads(f.cli("faults", "--history", "--json"))
        assert len([e for e in history if e["source"] == "schedule"]) == 2 * len(expected)
    finally:
        f.backend.down()


@pytest.mark.parametrize(("row", "message"), [
    ('[[fault]]\ndevices = "nothing*"\nkind = "offline"\nat = "1s"\n',
     "fault[0]: key 'devices': 'nothing*' matches no"),
    ('[[fault]]\ndevices = "pump*"\nkind = "offline"\nat = "soon"\n', "fault[0]: key 'at': bad 'at' 'soon'"),
    ('[[fault]]\ndevices = "pump*"\nkind = "melt"\nat = "1s"\n', "fault[0]: key 'kind': unknown fault kind"),
])
def test_bad_schedule_rows_are_refused_by_validate_and_up(tmp_path, row, message) -> None:
    path = tmp_path / "fleet.toml"
    path.write_text(fleet_text(1, 1502) + row)
    from typer.testing import CliRunner

    from fleet.cli import app

    for command in (["validate"], ["up", "--state-dir", str(tmp_path / "state")]):  # up too, before anything
        result = CliRunner().invoke(app, [*command, str(path)])
        assert result.exit_code == 2 and message in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "state").exists()
