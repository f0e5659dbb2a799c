"""A fleet that grows and a fleet whose supervisor died (issue 12, fleet items 4 and 5), on the
process backend.

Growing: ``up --only 'drive_0*'`` then ``up`` adds the other devices to the running worker
that hosts both sets: the drives keep running (same process, values written still there, no
restart counted); when a worker must restart, ``up`` says which devices it interrupts.
Supervisor gone: with supervisord killed, ``status`` says so, how many devices still answer
and that ``up`` replaces them; ``up`` says which devices that interrupts.  On the docker
backend a container serves all its devices from the start (``--only`` chooses containers), so
growing adds containers or leaves them alone; one recreated (its devices' specs changed) is
named with the devices it interrupts.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
from pathlib import Path

import pytest

from tests.fleet_support import CliFleet, until
from tests.support import free_port

pytestmark = pytest.mark.slow

OCTET = 20 + os.getpid() % 200


def fleet_text(block: int, port: int, pumps: str = '["40001-40010=7"]') -> str:
    return f"""
[fleet]
name = "grow{block}"
address_pool = "127.88.{OCTET}.{16 * block}/28"
health_interval = 0.5
health_timeout = 1.0
devices_per_worker = 4

[[device]]
kind = "modbus"
count = 2
name = "drive_{{n:02}}"
port = {port}
registers = ["40001-40010=1"]

[[device]]
kind = "modbus"
count = 2
name = "pump{{n}}"
port = {port}
registers = {pumps}
"""


def make(fleets: list[CliFleet], tmp: Path, block: int) -> CliFleet:
    port = free_port(f"127.88.{OCTET}.{16 * block + 1}")
    fleet = CliFleet(tmp, fleet_text(block, port))
    fleets.append(fleet)
    return fleet


def register(fleet: CliFleet, device: str, value: int | None = None) -> int:
    """Holding register 40001 of ``device`` (written first when ``value`` is given)."""
    from cpppo.modbus.aclient import AsyncModbusClient

    planned = fleet.plan.device(device)

    async def go() -> int:
        async with AsyncModbusClient(planned.host, planned.port, timeout=2.0) as client:
            if value is not None:
                await client.write_register(0, value)
            return (await client.read_holding_registers(0, 1))[0]

    return asyncio.run(go())


def test_growing_a_fleet_adds_devices_without_interrupting_the_running_ones(tmp_path: Path, fleets) -> None:
    fleet = make(fleets, tmp_path, 10)
    out = fleet.cli("up", "--only", "drive_0*")
    assert "2/2 devices healthy in 1 worker" in out and "restarted" not in out
    pid = fleet.pids()["w000"]
    assert register(fleet, "drive_01", 4242) == 4242

    out = fleet.cli("up")
    assert "4/4 devices healthy in 1 worker" in out, out
    assert "restarted" not in out, out
    assert fleet.pids()["w000"] == pid  # the same process: nothing was restarted
    assert register(fleet, "drive_01") == 4242  # and the value written before is still there
    devices = fleet.devices()
    assert {d["restarts"] for d in devices.values()} == {0}
    assert all(d["state"] == "healthy" for d in devices.values()), devices
    assert "now hosting 4 devices" in fleet.cli("logs", "w000")


def test_a_worker_that_must_restart_says_which_devices_it_interrupts(tmp_path: Path, fleets) -> None:
    fleet = make(fleets, tmp_path, 11)
    fleet.cli("up")
    pid = fleet.pids()["w000"]
    # the pumps' registers change: the worker hosting them must restart, drives and all
    fleet.path.write_text(fleet.path.read_text().replace('["40001-40010=7"]', '["40001-40020=9"]'))
    out = fleet.cli("up")
    assert "restarted w000, interrupting 4 devices: drive_01, drive_02, pump1, pump2" in out, out
    assert "4/4 devices healthy" in out and fleet.pids()["w000"] != pid


def test_status_after_the_supervisor_died_tells_the_truth(tmp_path: Path, fleets) -> None:
    fleet = make(fleets, tmp_path, 12)
    fleet.cli("up")
    orphans = fleet.pids()
    os.kill(fleet.backend._supervisord_pid(), signal.SIGKILL)
    until(lambda: not fleet.backend.answering(), what="supervisord gone")

    out = fleet.cli("status", code=1)
    assert "the supervisor is gone: 4 devices still answer" in out, out
    assert f"cpppo-fleet up {fleet.path} --state-dir {fleet.state}` replaces them" in out
    status = fleet.status(code=1)
    assert status["supervisor"] == "gone" and status["up"] is False
    assert status["healthy"] == 4 and {d["state"] for d in status["devices"]} == {"healthy"}
    assert {n: p["pid"] for n, p in status["programs"].items()} == orphans

    out = fleet.cli("up")
    assert "restarted w000, interrupting 4 devices" in out and "4/4 devices healthy" in out, out
    status = fleet.status(code=0)
    assert status["supervisor"] == "running" and status["up"] is True
    assert all(gone(pid) for pid in orphans.values()), orphans  # replaced, not left beside the new ones
    assert not set(orphans.values()) & {p["pid"] for p in status["programs"].values()}


def gone(pid: int) -> bool:
    """True if ``pid`` has exited (a zombie waiting for its parent counts)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
    except FileNotFoundError:
        return True


@pytest.mark.docker
def test_growing_a_docker_fleet_says_which_devices_it_interrupts(docker_client, tmp_path: Path,
                                                                 monkeypatch) -> None:

    from typer.testing import CliRunner

    from fleet.cli import app
    from tests.test_fleet_docker import free_subnet, labelled_build, remove_labelled

    test_id, image = labelled_build(monkeypatch)
    runner = CliRunner()
    pool = free_subnet(docker_client, "172.29.0.0/16")
    # one container of all four (by default each device has its own: growing adds containers)
    fleet_keys = f'name = "g{test_id[:8]}"\ndocker_image = "{image}"\ndevices_per_container = 4'
    text = fleet_text(0, 1502).replace('name = "grow0"', fleet_keys)
    text = re.sub(r'address_pool = ".*"', f'address_pool = "{pool}"', text, count=1)
    toml = tmp_path / "fleet.toml"
    toml.write_text(text)
    cli = ["--backend", "docker"]
    state = ["--state-dir", str(tmp_path / "state")]
    name = f"g{test_id[:8]}"

    def container() -> str:
        (listed,) = docker_client.api.containers(filters={"label": [f"cpppo-fleet.fleet={name}",
                                                                    "cpppo-fleet.worker=w000"]})
        return listed["Id"]

    def up() -> str:
        result = runner.invoke(app, [*cli, "up", str(toml), *state, "--timeout", "90"])
        assert result.exit_code == 0, result.output
        assert "4/4 devices healthy" in result.output, result.output
        return result.output

    try:
        first = runner.invoke(app, [*cli, "up", str(toml), *state, "--only", "drive_0*", "--timeout", "90"])
        assert first.exit_code == 0, first.output
        assert "2/2 devices healthy" in first.output and "restarted" not in first.output, first.output
        kept = container()
        assert "restarted" not in up() and container() == kept  # grown: the same container, untouched
        # the pumps' registers change: the container must be recreated, and up says whom it interrupts
        toml.write_text(toml.read_text().replace('["40001-40010=7"]', '["40001-40020=9"]'))
        out = up()
        assert "restarted w000, interrupting 4 devices: drive_01, drive_02, pump1, pump2" in out, out
        assert container() != kept
        down = runner.invoke(app, [*cli, "down", str(toml), *state])
        assert down.exit_code == 0, down.output
    finally:
        remove_labelled(docker_client, test_id)
