"""Faults on the Docker backend, through the command line as on the process backend: `fault`,
`faults`, `status` and `fault --clear` reach the containerised workers (and the poller's
container) over the bind-mounted control folder; pycomm3 and pymodbus see each fault."""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleet.config import load
from fleet.plan import expand
from tests.fleet_support import CliFleet, until
from tests.test_fleet_docker import device_image, docker_fleet, free_subnet, wait_all_healthy

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.interop]
__all__ = ["device_image"]  # the session fixture, shared


def fleet_text(name: str, pool: str, image: str) -> str:
    return f"""
[fleet]
name = "{name}"
backend = "docker"
address_pool = "{pool}"
docker_image = "{image}"
health_interval = 300   # a sweep only every 5 minutes: the poller's checks after fault/clear show
health_timeout = 2.0

[[device]]
kind = "enip"
count = 2
name = "plc{{n}}"
tags = ["SCADA=INT[100]", "Motor_Speed=REAL"]

[[device]]
kind = "modbus"
count = 1
name = "pump{{n}}"
registers = ["40001-40010=7"]
"""


@pytest.fixture(scope="module")
def fleet(docker_client, device_image, tmp_path_factory) -> Iterator[CliFleet]:
    tmp = tmp_path_factory.mktemp("faults-docker")
    name = f"f{uuid.uuid4().hex[:8]}"
    pool = free_subnet(docker_client, "172.29.0.0/16")
    (tmp / "fleet.toml").write_text(fleet_text(name, pool, device_image))
    plan = expand(load(tmp / "fleet.toml"))
    with docker_fleet(docker_client, tmp / "state", plan) as backend:
        applied = backend.up()
        assert [r.error for r in wait_all_healthy(applied.devices) if not r.ok] == []
        f = CliFleet(tmp, (tmp / "fleet.toml").read_text(), state=tmp / "state")
        until(lambda: _workers_answer(f), 60, "every worker's control socket")
        until(f.all_healthy, 60, "all healthy in status")
        yield f


DOCKER_DNS = "0B00007F"  # 127.0.0.11 in /proc/net/tcp: Docker's embedded DNS server on a user network


def _workers_answer(f: CliFleet) -> bool:
    from fleet.control import ControlError, control_dir, request, socket_path

    try:
        for worker in f.plan.workers:
            request(socket_path(control_dir(f.state), worker.name), {"op": "ping"})
    except ControlError:
        return False
    return True


def _refused(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    return False


def test_fault_status_and_clear_through_the_cli(fleet: CliFleet) -> None:
    from pycomm3 import LogixDriver
    from pymodbus.client import ModbusTcpClient

    pump, plc = fleet.plan.device("pump1"), fleet.plan.device("plc1")
    assert "error 0x04 on 1 device" in fleet.cli("fault", "pump1", "error", "4")
    assert "offline on 2 devices until " in fleet.cli("fault", "plc*", "offline", "--for", "5m")
    assert sorted(json.loads(fleet.cli("faults", "--json"))) == ["plc1", "plc2", "pump1"]

    client = ModbusTcpClient(pump.host, port=pump.port, timeout=3, retries=0)
    try:
        assert client.connect()
        reply = client.read_holding_registers(0, count=1, device_id=1)
        assert reply.isError() and reply.exception_code == 4
    finally:
        client.close()
    assert _refused(plc.host, plc.port)

    status = fleet.status(code=1)  # injected faults count...
    devices = {d["name"]: d for d in status["devices"]}
    assert devices["plc1"]["state"] == "faulted" and devices["plc1"]["fault"].startswith("offline until ")
    assert status["faults"]["pump1"]["describe"] == "error 0x04"
    # the poller's container polled the faulted devices at once (not in 5 minutes): it saw them refuse
    until(lambda: fleet.devices()["plc1"]["last_ok"] is False, 30, "the poller seeing plc1 refuse")
    assert fleet.invoke("status", "--json", "--faults-ok", code=None).exit_code == 0  # ...unless allowed

    assert "cleared faults" in fleet.cli("fault", "--clear")
    assert json.loads(fleet.cli("faults", "--json")) == {}
    until(lambda: not _refused(plc.host, plc.port), 30, "plc1 listening again")
    with LogixDriver(f"{plc.host}:{plc.port}") as driver:
        assert driver.read("SCADA[1]").error is None
    client = ModbusTcpClient(pump.host, port=pump.port, timeout=3, retries=0)
    try:
        assert client.connect() and client.read_holding_registers(0, count=1, device_id=1).registers == [7]
    finally:
        client.close()
    until(fleet.all_healthy, 30, "all healthy in status right after the clear")
    history = [(e["event"], e["device"]) for e in json.loads(fleet.cli("faults", "--history", "--json"))]
    assert ("inject", "plc2") in history and ("clear", "plc2") in history


def test_timeout_and_latency_in_a_container(fleet: CliFleet) -> None:
    from pycomm3 import LogixDriver
    from pycomm3.exceptions import CommError

    plc = fleet.plan.device("plc2")
    fleet.cli("fault", "plc2", "timeout")
    driver = LogixDriver(f"{plc.host}:{plc.port}")
    driver.socket_timeout = 1.0
    with pytest.raises(CommError):
        driver.open()
    driver.close()
    fleet.cli("fault", "plc2", "error", "0x08:SCADA")  # replaces the timeout
    with LogixDriver(f"{plc.host}:{plc.port}") as driver:
        assert driver.read("SCADA[1]").error == "Service not supported"
        assert driver.read("Motor_Speed").error is None
    fleet.cli("fault", "--clear", "plc2")
    with LogixDriver(f"{plc.host}:{plc.port}") as driver:
        assert driver.read("SCADA[1]").error is None


def test_no_network_port_for_the_control_channel(fleet: CliFleet) -> None:
    """The control channel is a unix socket per worker in the state folder's control/ (bind-
    mounted into the containers), not a port: the sockets are there, and a worker container
    listens on TCP only at its device's port (and the metrics port)."""
    from fleet.metrics import WORKER_PORT

    control = Path(fleet.state) / "control"
    for worker in fleet.plan.workers:
        assert (control / f"{worker.name}.sock").is_socket()
    import docker

    client = docker.from_env(timeout=30)
    try:
        for device in fleet.plan.devices:
            found = client.api.containers(filters={"label": [f"cpppo-fleet.device={device.name}",
                                                             f"cpppo-fleet.fleet={fleet.plan.fleet.name}"]})
            (container,) = found
            out = client.api.exec_create(container["Id"], ["cat", "/proc/net/tcp", "/proc/net/tcp6"])
            table = client.api.exec_start(out["Id"]).decode()
            rows = [line.split() for line in table.splitlines() if line.split() and line.split()[0] != "sl"]
            listening = {int(port, 16) for address, port in (row[1].rsplit(":", 1) for row in rows
                                                              if row[3] == "0A") if address != DOCKER_DNS}
            assert listening <= {device.port, WORKER_PORT}, listening
    finally:
        client.close()
