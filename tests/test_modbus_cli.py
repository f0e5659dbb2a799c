"""The modbus_sim and modbus_poll commands: options, one-line errors, clean exits."""

from __future__ import annotations

import signal
import socket
import sys

import pytest

from cpppo.bin import modbus_poll, modbus_sim
from tests.support import free_port, python_module, running
from tests.test_modbus_support import HOST, exchange, frame

H = bytes.fromhex


@pytest.mark.parametrize(("argv", "message"), [
    (["-a", ":1502", "4x"], "bad register spec '4x'"),
    (["-a", ":99999", "40001"], "port 99999 is outside"),
    (["-a", ":1502", "-u", "300", "40001"], "bad unit ids"),
    (["-a", ":1502", "-d", "x", "40001"], "bad --delay 'x'"),
])
def test_modbus_sim_bad_arguments_end_in_one_line(capsys, argv, message):
    assert modbus_sim.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_modbus_poll_bad_arguments_end_in_one_line(capsys):
    assert modbus_poll.main(["-a", ":1502", "40001-"]) == 2
    err = capsys.readouterr().err
    assert "bad register spec" in err and err.count("\n") == 1


def test_endpoint_and_units_parsing():
    assert modbus_sim.parse_endpoint(":1502") == ("", 1502)
    assert modbus_sim.parse_endpoint("localhost") == ("localhost", 502)
    assert modbus_sim.parse_endpoint("127.0.0.2:7502") == ("127.0.0.2", 7502)
    assert modbus_sim.parse_units("1,3-5") == (1, 3, 4, 5)
    assert modbus_sim.parse_units(None) is None


def test_modbus_sim_units_delay_and_clean_exit():
    port = free_port()
    argv = python_module("cpppo.bin.modbus_sim", "-a", f"{HOST}:{port}", "-u", "3", "-d", "0.01-0.02",
                         "-v", "40001-40010=5", "1-8=1", "10001=1", "30001=7", python=sys.executable)
    with running(argv, listen=(HOST, port)) as proc:
        def ask(unit: int, pdu: str, expect: int) -> bytes:
            return exchange(port, frame(1, unit, H(pdu)), expect=expect, timeout=5)[7:]
        assert ask(3, "03 0000 0002", 13) == H("03 04 0005 0005")
        assert ask(1, "03 0000 0001", 9) == H("83 0b")
        assert ask(3, "04 0000 0001", 11) == H("04 02 0007")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        out = proc.stdout.read()
    success = f"Success; Started Modbus/TCP Simulator; PID = {proc.pid}; address = {HOST}:{port}"
    assert success in out.splitlines()


def test_modbus_sim_address_in_use_is_one_line():
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = python_module("cpppo.bin.modbus_sim", "-a", f"{HOST}:{port}", "40001", python=sys.executable)
        with running(argv) as proc:
            assert proc.wait(20) == 1
            out = proc.stdout.read()
    assert f"cannot listen on {HOST}:{port}" in out and "Traceback" not in out


def test_modbus_poll_offline_keeps_running_and_exits_cleanly():
    port = free_port()
    argv = python_module("cpppo.bin.modbus_poll", "-a", f"{HOST}:{port}", "-R", "0.1", "-v", "40001-40002",
                         python=sys.executable)
    with running(argv) as proc:
        lines = []
        while not any("failing: 40001-40002" in line for line in lines):
            line = proc.stdout.readline()
            assert line, "".join(lines)
            lines.append(line)
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    assert "Traceback" not in "".join(lines)


def test_modbus_poll_count_reads_once_and_exits(capsys):
    port = free_port()
    address = f"{HOST}:{port}"
    sim = python_module("cpppo.bin.modbus_sim", "-a", address, "40001-40010=7", python=sys.executable)
    with running(sim, listen=(HOST, port)):
        assert modbus_poll.main(["-a", address, "--count", "1", "40001-40003", "40005"]) == 0
        assert capsys.readouterr().out.splitlines() == [f"{n} == 7" for n in (40001, 40002, 40003, 40005)]
        # the write goes first, then 3 polls: the values once (nothing changes after)
        assert modbus_poll.main(["-a", address, "-R", "0.05", "-c", "3", "40001=9", "40001-40002"]) == 0
        assert capsys.readouterr().out.splitlines() == ["40001 == 9", "40002 == 7"]


def test_modbus_poll_count_with_nothing_answering_fails_in_one_line(capsys):
    port = free_port()
    assert modbus_poll.main(["-a", f"{HOST}:{port}", "-t", "0.3", "-c", "2", "40001-40002"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines()[-1] == f"modbus_poll: no value from {HOST}:{port} for 40001-40002"
