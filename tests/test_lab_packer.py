"""The Packer template with Debian's packer (1.6.6, built-in plugins only): it validates, and its
docker build (from the local lab-host image, provisioned over SSH by the labhost role) makes an
image whose container boots the fleet under systemd, checked with testinfra and pycomm3.

The qemu build (from the offline-built VM disk) is tests/test_lab_packer_qemu.py.
"""

from __future__ import annotations

import os
import shutil
import time

import pytest

from fleet.config import load
from fleet.labimage import docker_build_args, run_packer, validate_args
from fleet.plan import expand
from tests.lab_box import TEMPLATE
from tests.lab_targets import (
    ROOT,
    SSH_OPTIONS,
    ansible_playbook_command,
    build_labhost_image,
    lab_fleet_toml,
    lab_network,
    remove_labhosts,
    ssh_keypair,
    start_labhosts,
)

needs_packer = pytest.mark.skipif(shutil.which("packer") is None,
                                  reason="packer not installed (apt-get install packer: Debian's 1.6.6)")


@needs_packer
def test_template_validates_with_debians_packer(tmp_path):
    key = ssh_keypair(tmp_path)
    proc = run_packer(validate_args(key, ROOT), tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "required_plugins" not in TEMPLATE.read_text()  # nothing for `packer init` to download


@needs_packer
@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_docker_build_makes_an_image_that_boots_the_fleet(docker_client, tmp_path):
    import testinfra
    from pycomm3 import LogixDriver

    if not ansible_playbook_command():
        pytest.skip("ansible-playbook not found (ansible-core is a test extra: pip install -e '.[test]')")
    key = ssh_keypair(tmp_path)
    build_labhost_image(docker_client)
    tag = f"test-{os.getpid()}-{time.monotonic_ns()}"
    repository = "cpppo-fleet/labhost-built"
    with lab_network(docker_client) as network:
        fleet_file = tmp_path / "plant.toml"
        fleet_file.write_text(lab_fleet_toml("built", network.pool(0)))
        plan = expand(load(fleet_file))
        begun = time.monotonic()
        proc = run_packer(docker_build_args(
            network=network.network.name, address=str(network.subnet[100]), key=key, fleet_file=fleet_file,
            interface="eth0", ansible_playbook=ansible_playbook_command()[0],
            build_dir=ROOT / ".cache" / "labhost", repository=repository, tag=tag, root=ROOT), tmp_path,
            timeout=900)
        seconds = time.monotonic() - begun
        image = None
        try:
            assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr
            image = docker_client.images.get(f"{repository}:{tag}")
            print(f"packer docker build: {seconds:.0f}s")
            hosts = start_labhosts(docker_client, network, 1, key.with_suffix(".pub"), image=image.id,
                                   prefix="built")
            try:
                target = testinfra.get_host(f"ssh://root@{hosts[0].address}", ssh_identity_file=str(key),
                                            ssh_extra_args=" ".join(SSH_OPTIONS))
                assert target.pip("cpppo-fleet", pip_path="/opt/cpppo-fleet/venv/bin/pip").is_installed
                unit = target.service("cpppo-fleet")
                assert unit.is_enabled
                deadline = time.monotonic() + 180
                while not unit.is_running and time.monotonic() < deadline:
                    time.sleep(1)
                assert unit.is_running, target.run("journalctl -u cpppo-fleet --no-pager | tail -20").stdout
                device = next(d for d in plan.devices if d.kind == "enip")
                with LogixDriver(f"{device.host}:{device.port}") as driver:
                    assert driver.write("SCADA[1]", 11).error is None
                    assert driver.read("SCADA[1]").value == 11
            finally:
                remove_labhosts(hosts)
        finally:
            if image is not None:
                docker_client.images.remove(image.id, force=True)
