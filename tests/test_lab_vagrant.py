"""The Vagrantfile with Debian's vagrant (2.3.4): it validates (leaving nothing in the tree), and
with Vagrant's docker provider ``vagrant up`` brings up a lab host that the labhost role
provisions from this machine over SSH (no get-pip, no index: the wheelhouse is built here);
testinfra and third-party clients check it; ``vagrant destroy`` leaves no container behind.

The libvirt provider (a VM of the box packer builds) is exercised in tests/test_lab_libvirt.py.
"""

from __future__ import annotations

import re
import shutil
import sys
import time

import pytest

from fleet.config import load
from fleet.plan import expand
from tests.lab_targets import (
    ROOT,
    SSH_OPTIONS,
    VAGRANT_DIR,
    ansible_playbook_command,
    build_labhost_image,
    lab_fleet_toml,
    lab_network,
    ssh_keypair,
    vagrant,
)

needs_vagrant = pytest.mark.skipif(shutil.which("vagrant") is None,
                                   reason="vagrant not installed (apt-get install vagrant: Debian's 2.3.4)")


@needs_vagrant
def test_vagrantfile_validates_and_fetches_nothing(tmp_path):
    for provider in ("docker", "libvirt"):
        proc = vagrant(["validate"], tmp_path, {"VAGRANT_DEFAULT_PROVIDER": provider}, timeout=120)
        assert proc.returncode == 0 and "validated successfully" in proc.stdout, proc.stdout + proc.stderr
    assert not (VAGRANT_DIR / ".vagrant").exists()
    text = (VAGRANT_DIR / "Vagrantfile").read_text()
    assert "ansible_local" not in text and "install_mode" not in text and not re.search(r"https?://", text)
    assert ".vagrant/" in (ROOT / ".gitignore").read_text().split()


@needs_vagrant
@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_vagrant_up_with_the_docker_provider(docker_client, tmp_path):
    import testinfra
    from pycomm3 import LogixDriver
    from pymodbus.client import ModbusTcpClient

    if not ansible_playbook_command():
        pytest.skip("ansible-playbook not found (ansible-core is a test extra: pip install -e '.[test]')")
    key = ssh_keypair(tmp_path)
    build_labhost_image(docker_client)
    with lab_network(docker_client) as network:
        fleet_file = tmp_path / "plant.toml"
        fleet_file.write_text(lab_fleet_toml("vagrant", network.pool(0), interface="eth1"))
        plan = expand(load(fleet_file))
        env = {"CPPPO_FLEET_SSH_KEY": str(key), "CPPPO_FLEET_NETWORK": network.network.name,
               "CPPPO_FLEET_LAB_IP": str(network.subnet[100]), "CPPPO_FLEET_FLEET_FILE": str(fleet_file),
               "CPPPO_FLEET_PYTHON": sys.executable,
               "CPPPO_FLEET_ANSIBLE_PLAYBOOK": ansible_playbook_command()[0],
               "CPPPO_FLEET_BUILD_DIR": str(ROOT / ".cache" / "labhost")}
        begun = time.monotonic()
        up = vagrant(["up", "--provider=docker"], tmp_path, env)
        seconds = time.monotonic() - begun
        container = None
        try:
            id_file = tmp_path / "dot" / "machines" / "default" / "docker" / "id"
            container = id_file.read_text().strip() if id_file.exists() else None
            assert up.returncode == 0, up.stdout[-5000:] + up.stderr
            print(f"vagrant up (docker provider, role included): {seconds:.0f}s")
            assert not (VAGRANT_DIR / ".vagrant").exists()
            config = vagrant(["ssh-config"], tmp_path, env, timeout=120).stdout
            address = re.search(r"HostName (\S+)", config)[1]
            target = testinfra.get_host(f"ssh://root@{address}", ssh_identity_file=str(key),
                                        ssh_extra_args=" ".join(SSH_OPTIONS))
            assert target.pip("cpppo-fleet", pip_path="/opt/cpppo-fleet/venv/bin/pip").is_installed
            unit = target.service("cpppo-fleet")
            assert unit.is_enabled and unit.is_running
            assert {d.host for d in plan.devices} <= set(target.interface("eth1").addresses)
            plc = next(d for d in plan.devices if d.kind == "enip")
            with LogixDriver(f"{plc.host}:{plc.port}") as driver:
                assert driver.read("SCADA[0]").value == 0
            pump = next(d for d in plan.devices if d.kind == "modbus")
            client = ModbusTcpClient(pump.host, port=pump.port, timeout=5)
            assert client.connect()
            try:
                assert client.read_holding_registers(0, count=2).registers == [7, 7]
            finally:
                client.close()
            again = vagrant(["provision"], tmp_path, env)
            assert again.returncode == 0 and re.search(r"default\s+:.*changed=0 ", again.stdout), again.stdout
        finally:
            down = vagrant(["destroy", "-f"], tmp_path, env)
            if container:
                import docker.errors

                try:
                    docker_client.containers.get(container).remove(force=True)
                    leftover = True
                except docker.errors.NotFound:
                    leftover = False
                assert down.returncode == 0 and not leftover, down.stdout + down.stderr
