"""The lab-host VM image that Packer builds, shared by the tests that need one (a pytest plugin,
registered in tests/conftest.py): ``packer build -only=qemu.labhost`` from the disk built offline
(images/build-vm-disk.sh), provisioned by the labhost role in docker mode (Docker's engine
started, the device image built here and loaded there, a docker-backend fleet enabled for the
next boot), then packed as a Vagrant box for vagrant-libvirt by packer's vagrant post-processor.

It is built once per session, for tests/test_lab_packer_qemu.py (which boots the disk and checks
it with testinfra), tests/test_lab_libvirt.py (which brings the box up with Vagrant) and
tests/test_fleet_vagrant_libvirt_live.py (a fleet on it); ``CPPPO_FLEET_LABHOST_BUILD=DIR``
reuses the one :func:`build_labhost_vm` built into DIR, when iterating by hand.  What
the VM does during the build is kept small: the wheels and the device image are built on this
machine, the disk already has the Debian packages (apt is not run), nothing is compiled in the
VM, the disk is not resized and the box is compressed at level 1.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from fleet.labimage import qemu_build_args, run_packer
from fleet.labimage import template as packer_template
from tests.lab_targets import ROOT, ansible_playbook_command, ssh_keypair
from tests.lab_vm import QEMU, VM_DIR, build_disk, kvm_boots

TEMPLATE = packer_template(ROOT)
BUILD_DIR = ROOT / ".cache" / "labhost"
# the fleet the image runs from its first boot: the docker backend, two devices in one container
IMAGE_FLEET = """\
[fleet]
name = "imaged"
backend = "docker"
address_pool = "172.30.9.0/24"
devices_per_container = 2
docker_image = "cpppo-fleet/device:latest"
health_interval = 2.0

[[device]]
kind = "enip"
count = 1
name = "imaged-plc{n}"
tags = ["SCADA=INT[100]"]

[[device]]
kind = "modbus"
count = 1
name = "imaged-pump{n}"
registers = ["40001-40010=7"]
"""


@dataclass
class LabhostBuild:
    """The result of the packer qemu build (also when it failed: the tests say why)."""

    returncode: int
    output: str
    seconds: float
    directory: Path
    fleet_file: Path
    key: Path
    vm_dir: Path = VM_DIR
    disk_seconds: float = 0.0

    @property
    def disk(self) -> Path:
        return self.directory / "labhost.qcow2"

    @property
    def box(self) -> Path:
        return self.directory / "cpppo-fleet-labhost-libvirt.box"

    def require(self) -> None:
        """Fail (the test that needs the image) when the build did not make one."""
        if self.returncode != 0 or not self.disk.exists() or not self.box.exists():
            pytest.fail(f"the packer qemu build made no image (rc {self.returncode}): {self.output[-3000:]}")


def missing_tools() -> str:
    """What the build needs that is not installed ('' when everything is)."""
    tools = {"packer": "packer", QEMU: "qemu-system-x86", "qemu-img": "qemu-utils",
             "mmdebstrap": "mmdebstrap", "mkfs.ext4": "e2fsprogs", "ssh": "openssh-client"}
    missing = [package for tool, package in tools.items() if shutil.which(tool) is None]
    if not ansible_playbook_command():
        missing.append("ansible-core (pip install -e '.[test]')")
    return " ".join(missing)


def build_labhost_vm(work: Path, timeout: float = 2700.0) -> LabhostBuild:
    """The offline disk (cached under .cache/vm), then the packer qemu build into ``work``."""
    key = ssh_keypair(VM_DIR.parent)  # baked into the disk: kept with it
    begun = time.monotonic()
    build_disk(key.with_suffix(".pub"))
    disk_seconds = time.monotonic() - begun
    fleet_file = work / "imaged.toml"
    fleet_file.write_text(IMAGE_FLEET)
    output = work / "output"
    begun = time.monotonic()
    proc = run_packer(qemu_build_args(vm_dir=VM_DIR, key=key, output=output, fleet_file=fleet_file,
                                      docker=True, up_timeout=900, build_dir=BUILD_DIR,
                                      ansible_playbook=ansible_playbook_command()[0],
                                      accelerator="kvm" if kvm_boots() else "tcg", root=ROOT),
                      work, timeout)
    return LabhostBuild(proc.returncode, proc.stdout + proc.stderr, time.monotonic() - begun, output,
                        fleet_file, key, disk_seconds=disk_seconds)


@pytest.fixture(scope="session")
def labhost_vm_build(tmp_path_factory, docker_client, is_root) -> LabhostBuild:
    """The packer-built lab-host VM image (disk and box), built once per session."""
    if not is_root:
        pytest.skip("needs root (mmdebstrap, and the VM's tap device)")
    missing = missing_tools()
    if missing:
        pytest.skip(f"the packer qemu build needs: {missing} (apt-get install packer qemu-system-x86 "
                    "qemu-utils mmdebstrap e2fsprogs openssh-client)")
    kept = os.environ.get("CPPPO_FLEET_LABHOST_BUILD")
    if kept:  # by hand, iterating: the build an earlier session kept (its folder, as below)
        folder = Path(kept)
        key = ssh_keypair(VM_DIR.parent)
        build = LabhostBuild(0, f"kept build {folder}", 0.0, folder / "output", folder / "imaged.toml", key)
        build.require()
        return build
    build = build_labhost_vm(tmp_path_factory.mktemp("labhost-vm"))
    print(f"packer qemu build ({'kvm' if kvm_boots() else 'tcg'}): {build.seconds:.0f}s "
          f"(offline disk {build.disk_seconds:.0f}s)")
    return build
