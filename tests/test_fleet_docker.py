"""The docker backend with real containers: build the device image, bring a small fleet up on
a bridge network, poll every device at its own address with third-party clients, see a killed
worker restarted, inspect a container with pytest-testinfra, and bring it down leaving nothing.

Everything a test creates carries ``cpppo-fleet.test=<id>`` and is removed by id afterwards.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import random
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleet.backends.base import HEALTH_PROGRAM
from fleet.backends.docker.backend import DockerBackend
from fleet.config import parse
from fleet.plan import Plan, expand
from fleet.poller import run_sweep
from fleet.states import ProcessState
from fleet.store import Store

pytestmark = [pytest.mark.docker, pytest.mark.slow]

TEST_LABEL = "cpppo-fleet.test"


# -- helpers shared with test_fleet_docker_macvlan.py -------------------------------------------
def used_subnets(client) -> list[ipaddress.IPv4Network]:
    """Subnets already taken by docker networks or by the host's routes."""
    taken = []
    for net in client.api.networks():
        for config in (net.get("IPAM") or {}).get("Config") or []:
            with contextlib.suppress(ValueError, TypeError):
                taken.append(ipaddress.IPv4Network(config.get("Subnet"), strict=False))
    routes = subprocess.run(["ip", "-4", "route", "show", "table", "all"], capture_output=True, text=True,
                            check=False).stdout
    for line in routes.splitlines():
        with contextlib.suppress(ValueError, IndexError):
            first = line.split()[0] if not line.startswith(("local", "broadcast")) else line.split()[1]
            if "/" in first:
                taken.append(ipaddress.IPv4Network(first, strict=False))
    return taken


def free_subnet(client, within: str) -> str:
    """A random /24 in ``within`` that no docker network or host route uses."""
    taken = used_subnets(client)
    candidates = list(ipaddress.IPv4Network(within).subnets(new_prefix=24))
    random.shuffle(candidates)
    for net in candidates:
        if not any(net.overlaps(t) for t in taken):
            return str(net)
    raise RuntimeError(f"no free /24 in {within}")


def labelled_build(monkeypatch) -> tuple[str, str]:
    """Label the containers and networks this test makes with a fresh id (for
    :func:`remove_labelled`) and build the device image through the CLI: (test id, image)."""
    from typer.testing import CliRunner

    from fleet.cli import app

    test_id = uuid.uuid4().hex[:12]
    monkeypatch.setenv("CPPPO_FLEET_DOCKER_LABELS", f"{TEST_LABEL}={test_id}")
    build = CliRunner().invoke(app, ["build", "--quiet"])
    assert build.exit_code == 0, build.output
    return test_id, build.output.strip().splitlines()[-1]


def remove_labelled(client, test_id: str) -> None:
    """Remove, by id, every container and network carrying this test's label."""
    import docker.errors

    label = {"label": [f"{TEST_LABEL}={test_id}"]}
    for container in client.api.containers(all=True, filters=label):
        with contextlib.suppress(docker.errors.NotFound):
            client.api.remove_container(container["Id"], force=True, v=True)
    for net in client.api.networks(filters=label):
        with contextlib.suppress(docker.errors.NotFound):
            client.api.remove_network(net["Id"])


def fleet_plan(name: str, pool: str | list[str], image: str, extra: str = "", enip: int = 2,
               modbus: int = 2) -> Plan:
    return expand(parse(fleet_text(name, pool, image, extra, enip, modbus), source=f"{name}.toml"))


def fleet_text(name: str, pool: str | list[str], image: str, extra: str = "", enip: int = 2,
               modbus: int = 2) -> str:
    """The fleet.toml of :func:`fleet_plan`."""
    return f"""
[fleet]
name = "{name}"
backend = "docker"
address_pool = {json.dumps(pool)}
docker_image = "{image}"
health_interval = 1.0
{extra}
[[device]]
kind = "enip"
count = {enip}
name = "plc{{n}}"
tags = ["SCADA=INT[100]", "Motor_Speed=REAL"]
identity = {{ product_name = "1756-L61/B LOGIX5561", serial_number = "0x5100{{n:04}}" }}
[[device]]
kind = "modbus"
count = {modbus}
name = "pump{{n}}"
registers = ["40001-40010=7", "1-16=0"]
"""


def wait_all_healthy(devices, timeout: float = 60.0) -> list:
    deadline = time.monotonic() + timeout
    while True:
        results = run_sweep(devices, 2.0, 50)
        if all(r.ok for r in results) or time.monotonic() > deadline:
            return results
        time.sleep(0.3)


@pytest.fixture(scope="session")
def device_image(docker_client) -> str:
    """The device image for the current sources, built once per session (cached afterwards)."""
    from fleet.backends.docker.image import build_device_image

    return build_device_image(docker_client)


@contextlib.contextmanager
def docker_fleet(client, state_dir: Path, plan: Plan, healthcheck: float = 2.0) -> Iterator[DockerBackend]:
    """A DockerBackend labelled for this test; whatever it created is removed afterwards."""
    test_id = uuid.uuid4().hex[:12]
    backend = DockerBackend(plan, state_dir, labels={TEST_LABEL: test_id}, healthcheck=healthcheck)
    try:
        yield backend
    finally:
        remove_labelled(client, test_id)
        backend.close()


# -- a bridge fleet of four single-device containers, shared by the tests below ----------------
@pytest.fixture(scope="module")
def bridge_fleet(docker_client, device_image, tmp_path_factory) -> Iterator[tuple[DockerBackend, Plan]]:
    name = f"t{uuid.uuid4().hex[:8]}"
    plan = fleet_plan(name, free_subnet(docker_client, "172.29.0.0/16"), device_image)
    with docker_fleet(docker_client, tmp_path_factory.mktemp("docker") / name, plan) as backend:
        applied = backend.up()
        assert [r.error for r in wait_all_healthy(applied.devices) if not r.ok] == []
        yield backend, applied


def test_up_gives_every_device_its_own_container_and_address(bridge_fleet) -> None:
    backend, applied = bridge_fleet
    listed = backend.api.containers(filters=backend._filters())
    by_worker = {c["Labels"]["cpppo-fleet.worker"]: c for c in listed if "cpppo-fleet.worker" in c["Labels"]}
    assert sorted(by_worker) == sorted(w.name for w in applied.workers)
    for device in applied.devices:
        info = backend.api.inspect_container(by_worker[device.worker]["Id"])
        addresses = [n["IPAMConfig"]["IPv4Address"] for n in info["NetworkSettings"]["Networks"].values()]
        assert addresses == [device.host]
        assert info["Config"]["Labels"]["cpppo-fleet.device"] == device.name
        assert info["Config"]["Labels"]["cpppo-fleet.fleet"] == applied.fleet.name
        host = info["HostConfig"]
        assert host["ReadonlyRootfs"] and host["CapDrop"] == ["ALL"] and host["Memory"] == 64 * 2**20
        assert host["RestartPolicy"]["Name"] == "unless-stopped"
        assert info["Config"]["Healthcheck"]["Test"][-1] == "fleet.backends.docker.probe"


def test_up_again_keeps_the_containers(bridge_fleet) -> None:
    backend, _ = bridge_fleet
    before = {c["Id"] for c in backend.api.containers(all=True, filters=backend._filters())}
    backend.up()
    assert {c["Id"] for c in backend.api.containers(all=True, filters=backend._filters())} == before


@pytest.mark.interop
def test_third_party_clients_reach_every_device_at_its_address(bridge_fleet) -> None:
    from pycomm3 import CIPDriver, LogixDriver
    from pyModbusTCP.client import ModbusClient

    _, applied = bridge_fleet
    for device in applied.devices:
        if device.kind == "enip":
            identity = CIPDriver.list_identity(device.host)
            assert identity["product_name"] == "1756-L61/B LOGIX5561"
            assert int(identity["serial"], 16) == device.identity_dict["serial_number"]
            with LogixDriver(device.host, init_program_tags=False) as plc:
                assert plc.write(("SCADA[3]", 42)).error is None
                assert plc.read("SCADA[3]").value == 42
        else:
            client = ModbusClient(host=device.host, port=device.port, auto_open=True, timeout=3.0)
            try:
                assert client.read_holding_registers(0, 10) == [7] * 10
                assert client.write_single_coil(2, True)
                assert client.read_coils(0, 3) == [False, False, True]
            finally:
                client.close()


def test_docker_healthcheck_and_poller_report_healthy(bridge_fleet) -> None:
    backend, applied = bridge_fleet
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        programs = backend.status()
        health = {p: s.detail.split("health ")[1].split(",")[0] for p, s in programs.items() if p != "health"}
        with Store(backend.state.database) as store:
            history = store.history([d.name for d in applied.devices])
        polled = all(h.last is not None and h.last.ok for h in history.values())
        if set(health.values()) == {"healthy"} and polled:
            break
        time.sleep(1)
    assert set(health.values()) == {"healthy"}, programs
    assert polled, history
    assert {p.state for p in programs.values()} == {ProcessState.RUNNING}
    assert HEALTH_PROGRAM in programs
    assert "serving 1 of 1 device " in backend.logs(applied.workers[0].name)
    assert "healthy" in backend.logs(HEALTH_PROGRAM)


def test_killed_worker_is_restarted_by_docker(bridge_fleet) -> None:
    backend, applied = bridge_fleet
    worker = applied.workers[0].name
    before = backend.status()[worker]
    if os.geteuid() == 0:
        os.kill(before.pid, signal.SIGKILL)  # a crash: the container's main process, by its pid
    else:  # pragma: no cover - a docker-group user cannot signal root's view of the pid
        subprocess.run(["docker", "exec", backend._listed()[worker]["Id"], "kill", "-TERM", "1"], check=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        now = backend.status()[worker]
        if now.state is ProcessState.RUNNING and now.pid not in (None, before.pid):
            break
        time.sleep(0.2)
    assert now.state is ProcessState.RUNNING and now.pid != before.pid
    assert "restarts 1" in now.detail
    results = wait_all_healthy(applied.select([worker]))
    assert all(r.ok for r in results), results
    with Store(backend.state.database) as store:
        assert len(store.starts()[worker]) == 2  # status() keeps restart counts for `status`


def test_restart_restarts_the_container(bridge_fleet) -> None:
    backend, applied = bridge_fleet
    worker = applied.workers[-1].name
    before = backend.status()[worker]
    backend.restart([worker])
    after = backend.status()[worker]
    assert after.state is ProcessState.RUNNING and after.pid != before.pid
    assert all(r.ok for r in wait_all_healthy(applied.select([worker])))


def test_testinfra_sees_the_simulator_as_non_root_listening(bridge_fleet) -> None:
    import testinfra

    backend, applied = bridge_fleet
    for device in (applied.devices[0], applied.devices[-1]):  # an ENIP and a Modbus device
        container = backend._listed()[device.worker]["Id"]
        host = testinfra.get_host(f"docker://{container}")
        main = host.process.get(pid=1)
        assert main.user == "fleet" and "fleet.backends.docker.entry" in main.args
        assert host.user().name == "fleet"
        assert host.socket(f"tcp://{device.host}:{device.port}").is_listening
        if device.kind == "enip":
            assert host.socket(f"udp://{device.host}:{device.port}").is_listening


def test_faults_reach_the_containers_through_the_control_folder(bridge_fleet) -> None:
    """`fault` reaches a containerised worker over the bind-mounted control folder: pymodbus
    sees the exception; `--clear` restores normal answers."""
    from pymodbus.client import ModbusTcpClient

    from cpppo.faults import parse_fault
    from fleet import faults
    from fleet.control import control_dir

    backend, plan = bridge_fleet
    pump = plan.device("pump1")
    control = control_dir(backend.state.root)
    until_done = time.monotonic() + 30
    while True:  # the worker makes its socket once it serves
        done, failed = faults.apply(control, [pump], parse_fault("error", "4"))
        if done or time.monotonic() > until_done:
            break
        time.sleep(0.5)
    assert done == ["pump1"], failed
    client = ModbusTcpClient(pump.host, port=pump.port, timeout=3, retries=0)
    try:
        client.connect()
        reply = client.read_holding_registers(0, count=1, device_id=1)
        assert reply.isError() and reply.exception_code == 4
        assert faults.clear(control, [pump])[0] == ["pump1"]
        assert client.read_holding_registers(0, count=1, device_id=1).registers == [7]
    finally:
        client.close()


def test_down_leaves_no_container_or_network(bridge_fleet, docker_client, device_image) -> None:
    backend, _ = bridge_fleet
    # a leftover of an interrupted up: a stray labelled container down must also remove
    backend.api.create_container(device_image, name=f"{backend.plan.fleet.name}-stray",
                                 labels={**backend.labels, "cpppo-fleet.worker": "stray"})
    backend.down()
    label = {"label": [f"cpppo-fleet.fleet={backend.plan.fleet.name}"]}
    assert docker_client.api.containers(all=True, filters=label) == []
    assert docker_client.api.networks(filters=label) == []
    assert backend.status() == {}
    backend.down()  # idempotent


# -- many small bridges, started in parallel -------------------------------------------------------
@pytest.mark.timeout(900)  # 13 containers on a 2-core machine that other suites load heavily
def test_twelve_containers_on_three_bridges_start_in_parallel_and_down_leaves_nothing(
        docker_client, device_image, tmp_path) -> None:
    """12 single-device containers over three /28 bridges, started three at a time (one per
    bridge): all healthy, each on its own block's bridge; after ``down`` none of the containers
    or networks exists any more, looked up by the ids docker gave them (a wrong endpoint count,
    moby#17217, would leave a network behind "with active endpoints")."""
    import docker.errors

    block = ipaddress.IPv4Network(free_subnet(docker_client, "172.29.0.0/16"))
    pool = [f"{block[base + 1]}-{block[base + 4]}" for base in (0, 16, 32)]
    name = f"t{uuid.uuid4().hex[:8]}"
    plan = fleet_plan(name, pool, device_image, "docker_bridge_prefix = 28", enip=6, modbus=6)
    # Docker's own probes (a Python process each) seldom: not 13 of them every 2 s on 2 cores
    with docker_fleet(docker_client, tmp_path / name, plan, healthcheck=300.0) as backend:
        assert [n.subnet for n in backend.networks] == [f"{block[base]}/28" for base in (0, 16, 32)]
        seen: set[str] = set()
        applied = backend.up(progress=lambda done, total, what: seen.add(what))
        assert {"creating containers", "starting containers"} <= seen
        failing = [r for r in wait_all_healthy(applied.devices, timeout=240.0) if not r.ok]
        assert failing == [], (failing, failing and backend.logs(applied.device(failing[0].device).worker))
        label = {"label": [f"cpppo-fleet.fleet={name}"]}
        containers = docker_client.api.containers(all=True, filters=label)
        networks = docker_client.api.networks(filters=label)
        assert len(containers) == 13 and len(networks) == 3  # the poller is on all three
        for c in containers:
            attached = c["NetworkSettings"]["Networks"]
            if c["Labels"].get("cpppo-fleet.role") == "health":
                assert sorted(attached) == [f"{name}-net{i}" for i in range(3)]
                continue
            (network, settings), = attached.items()
            device = applied.device(c["Labels"]["cpppo-fleet.device"])
            assert ipaddress.IPv4Address(device.host) in ipaddress.IPv4Network(
                backend.networks[int(network.rsplit("net", 1)[1])].subnet)
            assert settings["IPAddress"] == device.host
        backend.down()
        for c in containers:
            with pytest.raises(docker.errors.NotFound):
                docker_client.api.inspect_container(c["Id"])
        for net in networks:
            with pytest.raises(docker.errors.NotFound):
                docker_client.api.inspect_network(net["Id"])


# -- several devices per container ----------------------------------------------------------------
def test_a_container_of_several_devices_serves_each_at_its_own_address(docker_client, device_image,
                                                                       tmp_path) -> None:
    name = f"t{uuid.uuid4().hex[:8]}"
    plan = fleet_plan(name, free_subnet(docker_client, "172.29.0.0/16"), device_image,
                      "devices_per_container = 3", enip=2, modbus=1)
    assert len(plan.workers) == 1
    with docker_fleet(docker_client, tmp_path / name, plan) as backend:
        applied = backend.up()
        assert all(r.ok for r in wait_all_healthy(applied.devices)), "not every device answers"
        container = backend._listed()["w000"]["Id"]
        top = backend.api.top(container, ps_args="-o user,pid,args")
        users = {row[0] for row in top["Processes"] if "fleet.backends.docker.entry" in row[-1]}
        assert users in ({"fleet"}, {"10001"})  # root only long enough to add the addresses
        backend.restart(["w000"])  # the addresses are added again in a fresh network namespace
        assert all(r.ok for r in wait_all_healthy(applied.devices))
        backend.down()


# -- the command line ------------------------------------------------------------------------------
def test_cli_builds_and_runs_a_fleet_on_docker(docker_client, tmp_path, monkeypatch) -> None:
    import json

    from typer.testing import CliRunner

    from fleet.cli import app

    test_id, image = labelled_build(monkeypatch)
    name = f"t{uuid.uuid4().hex[:8]}"
    toml = tmp_path / "fleet.toml"  # a process-backend file, run with --backend docker
    toml.write_text(f"""
[fleet]
name = "{name}"
address_pool = "{free_subnet(docker_client, "172.29.0.0/16")}"
health_interval = 1.0
[[device]]
kind = "enip"
count = 1
name = "plc{{n}}"
tags = ["SCADA=INT[10]"]
[[device]]
kind = "modbus"
count = 1
name = "pump{{n}}"
registers = ["40001-40010=7"]
""")
    runner = CliRunner()
    assert image.startswith("cpppo-fleet/device:")
    toml.write_text(toml.read_text().replace("[fleet]", f'[fleet]\ndocker_image = "{image}"'))
    state = ["--state-dir", str(tmp_path / "state")]
    try:
        up = runner.invoke(app, ["--backend", "docker", "up", str(toml), *state, "--timeout", "60"])
        assert up.exit_code == 0, up.output
        assert "2/2 devices healthy in 2 workers" in up.output
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            status = runner.invoke(app, ["--backend", "docker", "status", str(toml), *state, "--json"])
            if status.exit_code == 0:
                break
            time.sleep(1)
        report = json.loads(status.output)
        assert report["healthy"] == 2 and report["programs"]["health"]["state"] == "running"
        logs = runner.invoke(app, ["--backend", "docker", "logs", "pump1", str(toml), *state])
        assert "serving 1 of 1 device " in logs.output
        restart = runner.invoke(app, ["--backend", "docker", "restart", "plc*", str(toml), *state])
        assert restart.exit_code == 0 and "restarted w000" in restart.output
        down = runner.invoke(app, ["--backend", "docker", "down", str(toml), *state])
        assert down.exit_code == 0, down.output
        label = {"label": [f"cpppo-fleet.fleet={name}"]}
        assert docker_client.api.containers(all=True, filters=label) == []
        assert docker_client.api.networks(filters=label) == []
    finally:
        remove_labelled(docker_client, test_id)

