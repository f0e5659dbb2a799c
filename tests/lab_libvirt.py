"""libvirt for the lab tests (Vagrant's libvirt provider): the daemon, started here only when it
is not running (and then stopped again, by pid), an isolated network and a storage pool that the
test defines and removes afterwards by the uuid it recorded.

The network has no ``<forward>``: a bridge with this machine as its only other end (libvirt adds
rules that reject forwarding in and out of it), with DHCP for the VMs in the lower half of its
/24 and the upper half left for device addresses.  libvirt's own ``default`` network (NAT to the
outside) is never used.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

from tests.lab_targets import free_subnets, stop_process, upper_block

URI = "qemu:///system"


def virsh(*args: str, check: bool = True, timeout: float = 120.0) -> subprocess.CompletedProcess:
    proc = subprocess.run(["virsh", "-c", URI, *args], capture_output=True, text=True, timeout=timeout,
                          check=False, stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise RuntimeError(f"virsh {' '.join(args)}: {(proc.stderr or proc.stdout).strip()}")
    return proc


def answers() -> bool:
    """Whether a libvirtd answers on the system URI."""
    try:
        return virsh("version", check=False, timeout=30).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def missing_tools() -> str:
    """What of libvirt and vagrant-libvirt is not installed ('' when everything is)."""
    wanted = {"libvirtd": "libvirt-daemon-system", "virsh": "libvirt-clients", "dnsmasq": "dnsmasq-base",
              "vagrant": "vagrant"}
    missing = [package for tool, package in wanted.items()
               if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists()]
    if not list(Path("/usr/share/rubygems-integration/all/gems").glob("vagrant-libvirt-*")) and \
            not list(Path("/usr/share/vagrant-plugins/plugins.d").glob("*libvirt*")):
        missing.append("vagrant-libvirt")
    return " ".join(missing)


@contextmanager
def libvirtd(work: Path, timeout: float = 90.0) -> Iterator[bool]:
    """A libvirtd answering on the system URI; yields whether it was started here.  One started
    here (with a virtlogd, if none runs) is stopped again afterwards, by its pid."""
    if answers():
        yield False
        return
    started: list[subprocess.Popen] = []
    try:
        if not Path("/run/libvirt/virtlogd-sock").exists():
            started.append(_daemon("virtlogd", work))
        daemon = _daemon("libvirtd", work)
        started.append(daemon)
        deadline = time.monotonic() + timeout
        while not answers():
            if daemon.poll() is not None and not answers():
                # another session may have started one at the same moment: use it
                raise RuntimeError(f"libvirtd exited ({daemon.returncode}): "
                                   f"{(work / 'libvirtd.log').read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"libvirtd did not answer within {timeout:.0f}s")
            time.sleep(0.5)
        yield daemon.poll() is None
    finally:
        for process in reversed(started):
            stop_process(process, grace=60)


def _daemon(name: str, work: Path) -> subprocess.Popen:
    binary = shutil.which(name) or f"/usr/sbin/{name}"
    with open(work / f"{name}.log", "ab") as log:
        return subprocess.Popen([binary], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _taken() -> list[ipaddress.IPv4Network]:
    """Every IPv4 network this machine routes (docker bridges, other labs' networks, the LAN)."""
    proc = subprocess.run(["ip", "-j", "-4", "route", "show", "table", "all"], capture_output=True,
                          text=True, timeout=30, check=True)
    taken = []
    for route in json.loads(proc.stdout or "[]"):
        with suppress(ValueError):
            if route.get("dst") not in (None, "default"):
                taken.append(ipaddress.ip_network(route["dst"], strict=False))
    return taken


@dataclass
class LibvirtNetwork:
    """An isolated libvirt network this test defined."""

    name: str
    uuid: str
    bridge: str
    subnet: ipaddress.IPv4Network

    @property
    def gateway(self) -> ipaddress.IPv4Address:
        return self.subnet[1]

    def pool(self, index: int, size: int = 16) -> ipaddress.IPv4Network:
        return upper_block(self.subnet, index, size)


@contextmanager
def libvirt_network(prefix: str = "cpppo-lab") -> Iterator[LibvirtNetwork]:
    """An isolated network (no forwarding) on a free 10.x.y.0/24; undefined (by uuid) afterwards."""
    name = f"{prefix}-{os.getpid()}-{time.monotonic_ns() % 10**6}"
    bridge = f"cplv{os.getpid() % 100000}{time.monotonic_ns() % 100}"[:15]
    network = None
    errors = []
    for subnet in free_subnets(_taken()):
        xml = (f"<network><name>{escape(name)}</name><bridge name='{bridge}' stp='off' delay='0'/>"
               f"<ip address='{subnet[1]}' netmask='{subnet.netmask}'><dhcp>"
               f"<range start='{subnet[100]}' end='{subnet[127]}'/></dhcp></ip></network>")
        path = Path(f"/tmp/{name}.xml")
        path.write_text(xml)
        try:
            virsh("net-define", str(path))
        finally:
            path.unlink()
        uuid = virsh("net-uuid", name).stdout.strip()
        started = virsh("net-start", uuid, check=False)
        if started.returncode == 0:
            network = LibvirtNetwork(name, uuid, bridge, subnet)
            break
        errors.append(started.stderr.strip())
        virsh("net-undefine", uuid, check=False)
    if network is None:
        raise RuntimeError(f"no libvirt network could start: {errors[-3:]}")
    try:
        yield network
    finally:
        virsh("net-destroy", network.uuid, check=False)
        virsh("net-undefine", network.uuid, check=False)


@dataclass
class StoragePool:
    name: str
    uuid: str
    path: Path


@contextmanager
def storage_pool(path: Path, prefix: str = "cpppo-lab") -> Iterator[StoragePool]:
    """A directory pool at ``path`` (the box's image and the VMs' disks); its volumes deleted and
    the pool undefined (by uuid) afterwards."""
    name = f"{prefix}-{os.getpid()}-{time.monotonic_ns() % 10**6}"
    path.mkdir(parents=True, exist_ok=True)
    virsh("pool-define-as", name, "dir", "--target", str(path))
    uuid = virsh("pool-uuid", name).stdout.strip()
    try:
        virsh("pool-start", uuid)
        yield StoragePool(name, uuid, path)
    finally:
        virsh("pool-refresh", uuid, check=False)
        listed = virsh("vol-list", uuid, check=False).stdout.splitlines()[2:]
        for line in listed:
            if line.split():
                virsh("vol-delete", "--pool", uuid, line.split()[0], check=False)
        virsh("pool-destroy", uuid, check=False)
        virsh("pool-undefine", uuid, check=False)


def domain_exists(uuid: str) -> bool:
    return virsh("dominfo", uuid, check=False).returncode == 0


def remove_domain(uuid: str) -> None:
    """Power off and undefine a domain (by uuid) that is still there."""
    if domain_exists(uuid):
        virsh("destroy", uuid, check=False)
        virsh("undefine", uuid, "--nvram", check=False)
