"""The slow, faithful lab host: a VM of the disk built offline (images/build-vm-disk.sh:
mmdebstrap, no download but Debian's apt), booted by qemu on a private bridge this test makes
(KVM where it can boot a guest, software emulation otherwise), provisioned by the labhost role
over SSH, then checked with testinfra and from this machine with pycomm3 and pymodbus.

What the VM does is kept minimal: the wheels are built on this machine, nothing is compiled in
the VM, apt is not run (the disk has the packages), the fleet is four devices, and the role is
applied once (its second, unchanged application is checked on the containers,
tests/test_lab_ansible.py).  Times go to the test's output (-s).
"""

from __future__ import annotations

import shutil
import time

import pytest

from fleet.config import load
from fleet.plan import expand
from tests.lab_targets import (
    ROOT,
    SSH_OPTIONS,
    LabHost,
    ansible_playbook_command,
    lab_fleet_toml,
    lab_network,
    run_playbook,
    ssh_keypair,
    write_inventory,
)
from tests.lab_vm import QEMU, VM_DIR, build_disk, start_vm

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.root, pytest.mark.timeout(3000)]


@pytest.mark.skipif(shutil.which(QEMU) is None or shutil.which("mmdebstrap") is None,
                    reason="needs qemu-system-x86 and mmdebstrap (apt-get install qemu-system-x86 "
                           "qemu-utils mmdebstrap)")
def test_role_provisions_a_vm_booted_from_the_offline_disk(docker_client, need_root, tmp_path):
    import testinfra
    from pycomm3 import LogixDriver
    from pymodbus.client import ModbusTcpClient

    if not ansible_playbook_command():
        pytest.skip("ansible-playbook not found (ansible-core is a test extra: pip install -e '.[test]')")
    key = ssh_keypair(VM_DIR.parent)  # baked into the disk: kept with it
    times = {}
    begun = time.monotonic()
    build_disk(key.with_suffix(".pub"))
    times["disk"] = time.monotonic() - begun
    with lab_network(docker_client) as network:
        begun = time.monotonic()
        vm = start_vm(network, network.subnet[60], tmp_path)
        try:
            times["boot"] = time.monotonic() - begun
            fleet_file = tmp_path / "vm.toml"
            fleet_file.write_text(lab_fleet_toml("vm", network.pool(0)))
            plan = expand(load(fleet_file))
            inventory = write_inventory(tmp_path / "inventory.ini", [LabHost(vm.name, None, vm.address)], key,
                                        {vm.name: {"cpppo_fleet_fleet_file": str(fleet_file),
                                                   "cpppo_fleet_interface": "eth0"}})
            run = run_playbook(inventory, {"cpppo_fleet_build_dir": str(ROOT / ".cache" / "labhost")},
                               timeout=2400)
            times["role"] = run.seconds
            assert run.returncode == 0, run.output[-5000:]
            target = testinfra.get_host(f"ssh://root@{vm.address}", ssh_identity_file=str(key),
                                        ssh_extra_args=" ".join(SSH_OPTIONS))
            assert target.pip("cpppo-fleet", pip_path="/opt/cpppo-fleet/venv/bin/pip").is_installed
            unit = target.service("cpppo-fleet")
            assert unit.is_enabled and unit.is_running
            assert {d.host for d in plan.devices} <= set(target.interface("eth0").addresses)
            plc = next(d for d in plan.devices if d.kind == "enip")
            with LogixDriver(f"{plc.host}:{plc.port}") as driver:
                assert driver.write("SCADA[2]", 22).error is None and driver.read("SCADA[2]").value == 22
            pump = next(d for d in plan.devices if d.kind == "modbus")
            client = ModbusTcpClient(pump.host, port=pump.port, timeout=10)
            assert client.connect()
            try:
                assert client.read_holding_registers(0, count=2).registers == [7, 7]
            finally:
                client.close()
        finally:
            vm.stop()
    print(f"VM ({vm.accelerator}): " + ", ".join(f"{k} {v:.0f}s" for k, v in times.items()))
