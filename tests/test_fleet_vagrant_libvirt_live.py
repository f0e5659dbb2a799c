"""``backend = "vagrant"`` with ``provider = "libvirt"`` for real (Debian's vagrant 2.3.4 and
vagrant-libvirt 0.11.2): ``cpppo-fleet up`` of a fleet of one VM and four devices (2 EtherNet/IP,
2 Modbus/TCP) makes the fleet's isolated libvirt network and storage pool, brings the VM up from
the box that packer built from the offline disk (tests/lab_box.py; nothing is downloaded),
provisions it with the labhost role over SSH and runs its shard; testinfra checks what the role
left, pycomm3 and pymodbus reach every device from this machine at its address on the fleet's
network, ``status --json`` names the VM; ``down`` leaves no domain, no network, no storage pool and
no volume (checked by the uuids and paths the fleet recorded).

This covers what tests/test_lab_vm.py checks (a VM of the offline disk booted, the role applied
over SSH, testinfra, the devices answering) through the fleet's own commands.  libvirtd is
started here when none runs, and stopped again afterwards (by pid).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fleet import libvirt
from fleet.hosts import load as load_hosts
from fleet.vagrant import installed_boxes, machine_ids, network_name, project_dir, run_vagrant
from tests.lab_box import BUILD_DIR
from tests.lab_libvirt import _taken, libvirtd, missing_tools
from tests.lab_targets import ROOT, SSH_OPTIONS, ansible_playbook_command, free_subnets

pytestmark = [pytest.mark.slow, pytest.mark.root, pytest.mark.timeout(3600),
              pytest.mark.skipif(bool(missing_tools()), reason=f"needs {missing_tools()} (apt-get install "
                                 "vagrant vagrant-libvirt libvirt-daemon-system dnsmasq-base)")]

# On this 2-core machine under software emulation (load 5 to 8): 18 minutes with the session's
# packer build of the box (11 of them), 8 minutes with the box kept (up 5.3 to 6.6 min, down 53 s)

CLI = Path(sys.executable).parent / "cpppo-fleet"
HOME = "/opt/cpppo-fleet"
VENV = f"{HOME}/venv"


def cli(*args: str, timeout: float = 2400.0) -> subprocess.CompletedProcess:
    return subprocess.run([str(CLI), *args], capture_output=True, text=True, timeout=timeout, check=False,
                          stdin=subprocess.DEVNULL)


def added_box(build, where: Path) -> str:
    """The session's box, added to Vagrant once (kept, under a name of this tree and key; added
    again when packer built it anew)."""
    name = "cpppo-fleet/labhost-" + hashlib.sha1(f"{ROOT}:{build.key.with_suffix('.pub').read_text()}"
                                                 .encode()).hexdigest()[:8]
    stamp = build.box.with_suffix(".added")
    fresh = stamp.exists() and stamp.stat().st_mtime >= build.box.stat().st_mtime
    if not (fresh and name in installed_boxes(where, "libvirt")):
        added = run_vagrant(where, ["box", "add", "--force", "--name", name, str(build.box)], timeout=900)
        assert added.returncode == 0, added.stdout + added.stderr
        stamp.write_text(name)
    return name


def test_a_fleet_on_a_libvirt_vm(labhost_vm_build, tmp_path):
    import testinfra
    from pycomm3 import LogixDriver
    from pymodbus.client import ModbusTcpClient

    if not ansible_playbook_command() or shutil.which("ssh") is None:
        pytest.skip("needs ansible-playbook (a test extra) and OpenSSH's client")
    build = labhost_vm_build
    build.require()
    times: dict[str, float] = {}
    with libvirtd(tmp_path) as started:
        begun = time.monotonic()
        box = added_box(build, tmp_path)
        times["box add"] = time.monotonic() - begun
        subnet = next(free_subnets(_taken()))
        fleet_file = tmp_path / "plant.toml"
        fleet_file.write_text(f"""\
[fleet]
name = "lvplant"
backend = "vagrant"
health_interval = 2.0

[vagrant]
vms = 1
provider = "libvirt"
network = "{subnet}"
box = "{box}"
key = "{build.key}"
vm_dir = "{build.vm_dir}"
timeout = 120
vars = {{ cpppo_fleet_build_dir = "{BUILD_DIR}" }}

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
        project = project_dir(fleet_file, "lvplant")
        net_name = network_name("lvplant", project)
        state: dict = {}
        begun = time.monotonic()
        try:
            up = cli("up", str(fleet_file), "--timeout", "900")
            times["up"] = time.monotonic() - begun
            state = json.loads((project / "state.json").read_text())
            assert up.returncode == 0, up.stdout + up.stderr[-8000:]
            assert "vagrant: " in up.stderr  # vagrant's progress is shown
            print(f"up: {up.stdout.strip()}")
            assert sorted(state["domains"]) == ["vm1"] and state["domains"] == machine_ids(project)
            domain = state["domains"]["vm1"]
            # the VM's only NIC is on the fleet's isolated network, with the fixed MAC
            nics = [line.split() for line in libvirt.virsh("domiflist", domain).stdout.splitlines()[2:]
                    if line.split()]
            assert [(nic[2], nic[4]) for nic in nics] == [(net_name, libvirt.mac_address(net_name, 0))], nics
            net_xml = libvirt.virsh("net-dumpxml", state["network"]).stdout
            assert "<forward" not in net_xml, net_xml
            assert net_name in libvirt.virsh("pool-info", state["pool"]).stdout
            host = load_hosts(fleet_file).hosts[0]
            assert (host.name, host.address, host.interface) == ("vm1", str(subnet[11]), "eth0")

            target = testinfra.get_host(f"ssh://root@{host.address}", ssh_identity_file=str(build.key),
                                        ssh_extra_args=" ".join(SSH_OPTIONS))
            assert target.pip("cpppo-fleet", pip_path=f"{VENV}/bin/pip").is_installed
            unit = target.service("cpppo-fleet")
            journal = target.run("journalctl -u cpppo-fleet --no-pager | tail -30").stdout
            assert unit.is_enabled and unit.is_running, journal
            assert target.file(f"{HOME}/fleet.toml").content_string == lab.shard("vm1").toml
            # the image's docker fleet was taken down before its file was replaced
            left = target.run("docker ps --all --quiet --filter label=cpppo-fleet.fleet=imaged")
            assert left.rc == 0 and left.stdout.strip() == "", left.stdout
            devices = lab.shard("vm1").plan.devices
            assert {d.host for d in devices} <= set(target.interface("eth0").addresses)
            assert all(ipaddress.ip_address(d.host) in subnet for d in devices)

            proc = cli("status", str(fleet_file), "--json", timeout=300)
            report = json.loads(proc.stdout)
            assert proc.returncode == 0, report["summary"]
            assert report["healthy"] == report["total"] == 4, report["summary"]
            assert {d["name"]: d["lab_host"] for d in report["devices"]} == {
                "plc1": "vm1", "plc2": "vm1", "pump1": "vm1", "pump2": "vm1"}
            assert {n: h["state"] for n, h in report["hosts"].items()} == {"vm1": "up"}

            for index, plc in enumerate(d for d in devices if d.kind == "enip"):
                with LogixDriver(f"{plc.host}:{plc.port}") as driver:
                    assert driver.write("SCADA[3]", 30 + index).error is None
                    assert driver.read("SCADA[3]").value == 30 + index
            for pump in (d for d in devices if d.kind == "modbus"):
                client = ModbusTcpClient(pump.host, port=pump.port, timeout=10)
                assert client.connect(), f"no Modbus/TCP at {pump.host}:{pump.port}"
                try:
                    assert client.read_holding_registers(0, count=4).registers == [7, 7, 7, 7]
                finally:
                    client.close()
        finally:
            begun = time.monotonic()
            down = cli("down", str(fleet_file), timeout=900)
            times["down"] = time.monotonic() - begun
            left = []
            pool_path = Path(state["pool_path"]) if state.get("pool_path") else None
            for machine, uuid in state.get("domains", {}).items():
                if libvirt.remove_domain(uuid):
                    left.append(f"domain {uuid} ({machine})")
            if state.get("pool") and libvirt.pool_exists(state["pool"]):
                left.append(f"pool {state['pool']}")
            if pool_path is not None and pool_path.exists():
                left.append(f"pool folder {pool_path} ({sorted(p.name for p in pool_path.iterdir())})")
            if state.get("pool"):
                libvirt.remove_pool(state["pool"], pool_path)
            if state.get("network") and libvirt.network_exists(state["network"]):
                left.append(f"network {state['network']}")
                libvirt.remove_network(state["network"])
    assert down.returncode == 0, down.stdout + down.stderr[-4000:]
    assert state.get("network") and state.get("pool") and state.get("domains")
    assert not left, f"down left {left}"
    assert not project.exists() and not (tmp_path / ".fleet" / "lvplant").exists()
    daemon = "started here" if started else "running"
    print(f"libvirt fleet (1 VM, 4 devices; libvirtd {daemon}): "
          + ", ".join(f"{k} {v:.0f}s" for k, v in times.items()))
