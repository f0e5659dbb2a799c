"""Real small fleets brought up and down on the process (supervisord) backend."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleet.backends.process import ProcessBackend, _alive
from tests.fleet_support import CliFleet, until
from tests.support import free_port

pytestmark = pytest.mark.slow


def fleet_text(octet: int, port: int, enip: bool = True) -> str:
    text = f"""
[fleet]
name = "test{octet}"
address_pool = "127.77.{octet}.0/24"
health_interval = 0.5
health_timeout = 1.0
devices_per_worker = 2

[[device]]
kind = "modbus"
count = 3
name = "pump{{n}}"
port = {port}
registers = ["40001-40010=7", "1-8=0"]
identity = {{ product_name = "pump {{n}}" }}
"""
    if enip:
        text += f"""
[[device]]
kind = "enip"
count = 2
name = "line{{n}}"
port = {port}
tags = ["SCADA=INT[10]", "Speed=REAL"]
identity = {{ product_name = "1756-L61/B LOGIX5561", serial_number = "0x77{{n:04}}", vendor_id = 1 }}
"""
    return text


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[CliFleet]:
    """A small fleet on 127.77.<octet>.x; always brought down afterwards."""
    octet = 100 + os.getpid() % 100
    f = CliFleet(tmp_path, fleet_text(octet, free_port(f"127.77.{octet}.1")))
    try:
        yield f
    finally:
        f.backend.down()


def test_up_is_idempotent_recovers_from_sigkill_and_down_leaves_nothing(fleet: CliFleet) -> None:
    out = fleet.cli("up")
    assert "is up" in out and "cpppo-fleet status" in out and "cpppo-fleet down" in out
    status = fleet.status()
    assert status["healthy"] == status["total"] == len(fleet.plan.devices), status["summary"]
    conf = fleet.state / "supervisord.conf"
    before, mtime = fleet.pids(), conf.stat().st_mtime_ns
    assert set(before) == {"w000", "w001", "w002", "health"}

    fleet.cli("up")  # twice: nothing changes
    assert fleet.pids() == before and conf.stat().st_mtime_ns == mtime

    os.kill(before["w000"], signal.SIGKILL)  # supervisord restarts it; its devices come back
    until(lambda: fleet.pids().get("w000") not in (None, before["w000"]), what="w000 restarted")
    until(fleet.all_healthy, what="all healthy after the restart")
    devices = fleet.devices()
    assert devices["pump1"]["restarts"] == 1 and devices["pump3"]["restarts"] == 0
    assert devices["pump1"]["p50"] is not None and devices["pump1"]["endpoint"].startswith("127.77.")

    assert "serving 2 of 2 devices" in fleet.cli("logs", "pump1")
    assert "pump1  ok" in fleet.cli("poll")
    assert "restarted w001" in fleet.cli("restart", "pump3")
    table = fleet.cli("status", code=None)
    assert "pump3" in table and "healthy / " in table

    pids = fleet.pids()
    fleet.cli("down")
    assert not any(_alive(pid) for pid in pids.values())
    assert not (fleet.state / "supervisor.sock").exists()
    assert not (fleet.state / "supervisord.pid").exists()
    fleet.cli("down")  # idempotent
    status = fleet.status()
    assert status["healthy"] == 0 and {d["state"] for d in status["devices"]} == {"stopped"}
    fleet.cli("status", code=1)


def test_only_subset_then_converges_after_an_interrupted_up(fleet: CliFleet) -> None:
    fleet.cli("up", "--only", "pump1")
    assert set(fleet.pids()) == {"w000", "health"}
    states = {n: d["state"] for n, d in fleet.devices().items()}
    assert states["pump1"] == "healthy" and states["pump3"] == "stopped"
    assert fleet.status()["healthy"] == 1  # only pump1, though pump2 is planned on the same worker

    # an `up` of the whole fleet that died half-way: configuration written, nothing applied
    full = ProcessBackend(fleet.plan, fleet.state)
    full._write_files(full.applied_for(None, running=False)[0])
    fleet.cli("up")
    until(fleet.all_healthy, what="all healthy after converging")
    assert set(fleet.pids()) >= {"w000", "w001"}

    # supervisord itself killed: its workers are orphans; `up` stops them and starts afresh
    orphans = fleet.pids()
    os.kill(fleet.backend._supervisord_pid(), signal.SIGKILL)
    fleet.cli("up")
    assert not any(_alive(pid) for pid in orphans.values())
    until(fleet.all_healthy, what="all healthy after supervisord was killed")


def test_a_device_that_stops_answering_is_marked_down_with_the_error(fleet: CliFleet) -> None:
    fleet.cli("up")
    pid = fleet.pids()["w001"]  # pump3 (and line1 with ENIP)
    os.kill(pid, signal.SIGSTOP)  # alive and RUNNING for supervisord, but silent
    try:
        until(lambda: fleet.devices()["pump3"]["state"] == "down", what="pump3 down")
        device = fleet.devices()["pump3"]
        assert device["error"] and ("no answer" in device["error"] or "no reply" in device["error"])
        assert fleet.devices()["pump1"]["state"] == "healthy"
        fleet.cli("status", code=1)
        fleet.cli("poll", code=1)
    finally:
        os.kill(pid, signal.SIGCONT)
    until(fleet.all_healthy, what="healthy again after SIGCONT")
