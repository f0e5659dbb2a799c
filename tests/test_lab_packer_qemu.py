"""Packer's qemu builder for real (Debian's packer 1.6.6): the disk built offline, provisioned by
the labhost role in docker mode, comes out as a qcow2 disk and a Vagrant box for vagrant-libvirt
(the session's build, tests/lab_box.py).  The disk then boots under qemu on a private bridge this
test makes, and testinfra checks what the role left: the project in its virtualenv, Docker's
engine running, the device image loaded, the fleet's service up from the first boot with its
devices in a container, which answer pymodbus and pycomm3 through an SSH tunnel (the container's
bridge is inside the VM).

The role's docker mode is tested here, on a VM: Docker's engine does not run in the systemd
containers of tests/test_lab_ansible.py (no ``--privileged`` on this machine, and the cgroups
are mounted read-only), and a VM is what a lab host running the docker backend is.
"""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
import time

import pytest

from fleet.config import load
from fleet.plan import expand
from tests.lab_targets import SSH_OPTIONS, lab_network, ssh_tunnel
from tests.lab_vm import start_vm

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.root, pytest.mark.timeout(3600)]

# Runs for tens of minutes on this 2-core machine (software-emulated VMs, provisioning over SSH):
# outside CI's 90-minute budget until measured on a quiet machine.  Run it by hand with
# CPPPO_FLEET_LAB_LONG=1 python -m pytest tests/test_lab_packer_qemu.py
pytestmark.append(pytest.mark.skipif(not os.environ.get("CPPPO_FLEET_LAB_LONG"),
                                     reason="long lab test (tens of minutes): set CPPPO_FLEET_LAB_LONG=1"))

HOME = "/opt/cpppo-fleet"
VENV = f"{HOME}/venv"


def test_qemu_build_makes_a_provisioned_disk_and_a_box(labhost_vm_build):
    build = labhost_vm_build
    assert build.returncode == 0, build.output[-6000:]
    recap = build.output.split("PLAY RECAP", 1)[-1]
    assert "failed=0" in recap and "unreachable=0" in recap, recap[:2000]
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(build.disk)],
                                     capture_output=True, text=True, timeout=60, check=True).stdout)
    assert info["format"] == "qcow2" and "backing-filename" not in info, info
    # packer writes GNU tar headers whose atime/ctime Python's tarfile reads as a name prefix
    with tarfile.open(build.box) as box:
        members = {m.name.rsplit("/", 1)[-1]: m for m in box.getmembers()}
        assert {"metadata.json", "box.img", "Vagrantfile"} <= set(members), sorted(members)
        metadata = json.load(box.extractfile(members["metadata.json"]))
    assert metadata["provider"] == "libvirt" and metadata["format"] == "qcow2", metadata
    assert int(metadata["virtual_size"]) >= 3, metadata
    print(f"packer qemu build: {build.seconds:.0f}s, box {build.box.stat().st_size / 2**20:.0f} MiB")


def test_built_disk_boots_its_docker_fleet(labhost_vm_build, docker_client, tmp_path):
    import testinfra
    from pycomm3 import LogixDriver
    from pymodbus.client import ModbusTcpClient

    build = labhost_vm_build
    build.require()
    plan = expand(load(build.fleet_file))
    times = {}
    with lab_network(docker_client) as network:
        begun = time.monotonic()
        vm = start_vm(network, network.subnet[61], tmp_path, vm_dir=build.vm_dir, disk=build.disk)
        try:
            times["boot"] = time.monotonic() - begun
            target = testinfra.get_host(f"ssh://root@{vm.address}", ssh_identity_file=str(build.key),
                                        ssh_extra_args=" ".join(SSH_OPTIONS))
            assert target.pip("cpppo-fleet", pip_path=f"{VENV}/bin/pip").is_installed
            assert not target.exists("gcc")  # nothing is compiled on a lab host
            assert target.file(f"{HOME}/fleet.toml").content_string == build.fleet_file.read_text()
            engine = target.service("docker")
            assert engine.is_enabled
            assert target.run("docker image inspect cpppo-fleet/device:latest").rc == 0
            unit = target.service("cpppo-fleet")
            assert unit.is_enabled
            # the fleet comes up at boot: its oneshot start ends when every device answers
            report, deadline = {}, time.monotonic() + 900
            while time.monotonic() < deadline:
                if unit.is_running:
                    status = target.run(f"{VENV}/bin/cpppo-fleet status {HOME}/fleet.toml "
                                        f"--state-dir {HOME}/state --json")
                    report = json.loads(status.stdout) if status.rc == 0 else {}
                    if report and report["healthy"] == report["total"]:
                        break
                time.sleep(5)
            times["fleet up"] = time.monotonic() - begun - times["boot"]
            journal = target.run("journalctl -u cpppo-fleet --no-pager | tail -30").stdout
            assert unit.is_running and engine.is_running, journal
            assert report.get("healthy") == report.get("total") == 2, (report, journal)
            containers = target.run("docker ps --filter label=cpppo-fleet.fleet=imaged "
                                    "--filter label=cpppo-fleet.worker --format '{{.Names}} {{.Status}}'")
            assert containers.rc == 0 and "Up" in containers.stdout, containers.stdout + containers.stderr
            # the devices are on a bridge inside the VM: third-party clients reach them through SSH
            pump = next(d for d in plan.devices if d.kind == "modbus")
            with ssh_tunnel(vm.address, build.key, pump.host, pump.port) as port:
                client = ModbusTcpClient("127.0.0.1", port=port, timeout=10)
                assert client.connect()
                try:
                    reply = client.read_holding_registers(0, count=3)
                    assert not reply.isError() and reply.registers == [7, 7, 7], reply
                finally:
                    client.close()
            plc = next(d for d in plan.devices if d.kind == "enip")
            with ssh_tunnel(vm.address, build.key, plc.host, plc.port) as port, \
                    LogixDriver(f"127.0.0.1:{port}") as driver:
                assert driver.write("SCADA[4]", 44).error is None
                assert driver.read("SCADA[4]").value == 44
        finally:
            vm.stop()
    print(f"built disk ({vm.accelerator}): " + ", ".join(f"{k} {v:.0f}s" for k, v in times.items()))
