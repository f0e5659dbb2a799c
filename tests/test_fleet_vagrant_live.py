"""``backend = "vagrant"`` for real, with Vagrant's docker provider: ``cpppo-fleet build`` makes the
lab-host image with Packer (the role applied; a second build with nothing changed is skipped),
then ``cpppo-fleet up`` writes the Vagrant project, brings up two machines (systemd containers of
that image) on a network it makes, applies the labhost role through ansible-playbook (quick: the
project is installed already) and runs each one's shard; pycomm3 and pymodbus read a device on
each; ``status`` names each device's VM; ``down`` leaves no
container, no network and no project (checked by id).
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fleet.hosts import load as load_hosts
from fleet.vagrant import machine_ids, project_dir
from tests.lab_targets import ROOT, ansible_playbook_command, free_subnets

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(2400),
              pytest.mark.skipif(shutil.which("vagrant") is None,
                                 reason="vagrant not installed (apt-get install vagrant: Debian's 2.3.4)"),
              pytest.mark.skipif(shutil.which("packer") is None,
                                 reason="packer not installed (apt-get install packer: Debian's 1.6.6)")]
# 75 s at load 2.4 on this 2-core machine (the image built 37 s, built again: skipped at once; up
# 23 s, the role only adding each shard; down 12 s); before `build`, with the role installing the
# project on two fresh machines, 4 minutes at load 8: within CI's budget, so it runs every time

CLI = Path(sys.executable).parent / "cpppo-fleet"


def cli(*args: str, timeout: float = 1800.0) -> subprocess.CompletedProcess:
    return subprocess.run([str(CLI), *args], capture_output=True, text=True, timeout=timeout, check=False,
                          stdin=subprocess.DEVNULL)


def test_a_fleet_on_two_vagrant_machines(docker_client, tmp_path):
    import docker.errors
    from pycomm3 import LogixDriver
    from pymodbus.client import ModbusTcpClient

    if not ansible_playbook_command() or shutil.which("ssh") is None:
        pytest.skip("needs ansible-playbook (a test extra) and OpenSSH's client")
    taken = [ipaddress.ip_network(c["Subnet"]) for n in docker_client.networks.list()
             for c in ((n.attrs.get("IPAM") or {}).get("Config") or []) if ":" not in c.get("Subnet", ":")]
    subnet = next(free_subnets(taken))
    fleet_file = tmp_path / "plant.toml"
    fleet_file.write_text(f"""\
[fleet]
name = "vmplant"
backend = "vagrant"
health_interval = 2.0

[vagrant]
vms = 2
provider = "docker"
network = "{subnet}"
timeout = 60
vars = {{ cpppo_fleet_build_dir = "{ROOT / '.cache' / 'labhost'}" }}

[[device]]
kind = "enip"
count = 2
name = "plc{{n}}"
tags = ["SCADA=INT[10]"]

[[device]]
kind = "modbus"
count = 2
name = "pump{{n}}"
registers = ["40001-40004=7"]
""")
    lab = load_hosts(fleet_file)
    begun = time.monotonic()
    build = cli("build", str(fleet_file))
    build_seconds = time.monotonic() - begun
    assert build.returncode == 0, build.stdout + build.stderr[-6000:]
    image = docker_client.images.get(lab.vms.image)
    print(f"build: {build_seconds:.0f}s; {build.stdout.strip()}")
    if "built image" in build.stdout:
        assert "packer: " in build.stderr  # packer's progress is shown
    again = cli("build", str(fleet_file))
    assert again.returncode == 0, again.stdout + again.stderr[-4000:]
    assert f"image {lab.vms.image} is up to date" in again.stdout, again.stdout
    assert "packer: " not in again.stderr and docker_client.images.get(lab.vms.image).id == image.id
    print(f"build again: {again.stdout.strip()}")
    project = project_dir(fleet_file, "vmplant")
    containers: dict[str, str] = {}
    network = None
    begun = time.monotonic()
    try:
        up = cli("up", str(fleet_file), "--timeout", "300")
        up_seconds = time.monotonic() - begun
        containers = machine_ids(project)
        state = json.loads((project / "state.json").read_text())
        network = state["network"]
        assert up.returncode == 0, up.stdout + up.stderr[-6000:]
        assert "vagrant: " in up.stderr  # vagrant's progress is shown
        print(f"up (2 docker machines, role on each, 4 devices): {up_seconds:.0f}s; {up.stdout.strip()}")
        assert sorted(containers) == ["vm1", "vm2"]
        for container in containers.values():
            attached = docker_client.containers.get(container).attrs["NetworkSettings"]["Networks"]
            assert network in {n["NetworkID"] for n in attached.values()}

        proc = cli("status", str(fleet_file), "--json", timeout=300)
        report = json.loads(proc.stdout)
        assert proc.returncode == 0, report["summary"]
        assert {d["name"]: d["lab_host"] for d in report["devices"]} == {
            "plc1": "vm1", "plc2": "vm1", "pump1": "vm2", "pump2": "vm2"}
        assert {n: h["state"] for n, h in report["hosts"].items()} == {"vm1": "up", "vm2": "up"}
        table = cli("status", str(fleet_file), timeout=300)
        assert table.returncode == 0 and "vm1" in table.stdout and "vm2" in table.stdout, table.stdout

        plc = lab.shard("vm1").plan.devices[0]
        assert ipaddress.ip_address(plc.host) in subnet
        with LogixDriver(f"{plc.host}:{plc.port}") as driver:
            assert driver.read("SCADA[0]").value == 0
        pump = lab.shard("vm2").plan.devices[1]
        client = ModbusTcpClient(pump.host, port=pump.port, timeout=5)
        assert client.connect()
        try:
            assert client.read_holding_registers(0, count=4).registers == [7, 7, 7, 7]
        finally:
            client.close()
    finally:
        begun = time.monotonic()
        down = cli("down", str(fleet_file), timeout=900)
        print(f"down: {time.monotonic() - begun:.0f}s")
        left = []
        for container in containers.values():
            try:
                docker_client.containers.get(container).remove(force=True, v=True)
                left.append(container)
            except docker.errors.NotFound:
                pass
        if network:
            try:
                docker_client.networks.get(network).remove()
                left.append(network)
            except docker.errors.NotFound:
                pass
    assert down.returncode == 0, down.stdout + down.stderr[-4000:]
    assert not left, f"down left {left}"
    assert not project.exists() and not (tmp_path / ".fleet" / "vmplant").exists()
