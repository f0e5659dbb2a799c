"""libvirt for ``backend = "vagrant"`` with ``provider = "libvirt"``: the objects a fleet makes
beside what vagrant-libvirt makes, each removed by the uuid recorded when it was made.

- The fleet's network: isolated (no ``<forward>``: this machine is its only other end), and it is
  vagrant-libvirt's management network, so each VM has one NIC, on it.  Its DHCP gives VM ``i``
  its fixed address by a fixed MAC (:func:`mac_address`, from the fleet and the index), so the
  addresses are known before the VMs boot.
- The fleet's storage pool: a directory under ``/var/lib/libvirt/images`` (qemu runs as
  ``libvirt-qemu`` and must read it) holding the box's kernel and initrd (its disk has no boot
  loader), the box's image that vagrant-libvirt uploads, and the VMs' disks.

Everything goes through ``virsh -c qemu:///system`` (libvirt-python is not installable without
libvirt's headers).
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

URI = "qemu:///system"
POOL_ROOT = Path("/var/lib/libvirt/images")
BOOT_FILES = ("vmlinuz", "initrd.img")
QEMU = "qemu-system-x86_64"


class LibvirtError(Exception):
    """libvirt could not do its part (no daemon, a network that does not start)."""


def virsh(*args: str, check: bool = True, timeout: float = 120.0) -> subprocess.CompletedProcess:
    if shutil.which("virsh") is None:
        raise LibvirtError('virsh not found: provider "libvirt" needs it (apt-get install libvirt-clients)')
    try:
        proc = subprocess.run(["virsh", "-c", URI, *args], capture_output=True, text=True, timeout=timeout,
                              check=False, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise LibvirtError(f"virsh {' '.join(args)}: no answer within {timeout:.0f}s") from None
    if check and proc.returncode != 0:
        text = (proc.stderr or proc.stdout).strip().splitlines()
        raise LibvirtError(f"virsh {' '.join(args)}: {' '.join(text[-2:])}")
    return proc


def answers() -> bool:
    """Whether a libvirtd answers on the system URI."""
    try:
        return virsh("version", check=False, timeout=30).returncode == 0
    except LibvirtError:
        return False


def require_daemon() -> None:
    if shutil.which("virsh") is None:
        raise LibvirtError('provider "libvirt": virsh not found (apt-get install libvirt-clients '
                           "libvirt-daemon-system)")
    if not answers():
        raise LibvirtError(f'provider "libvirt": no libvirtd answers on {URI} (start it: '
                           "systemctl start libvirtd, or run libvirtd)")


@functools.cache
def kvm_boots(vm_dir: Path, timeout: float = 30.0) -> bool:
    """Whether KVM boots this guest's kernel (``vm_dir``/vmlinuz): it must print its banner on
    the serial console within ``timeout`` (a broken nested KVM loops in the firmware instead)."""
    kernel = Path(vm_dir) / "vmlinuz"
    if not os.access("/dev/kvm", os.R_OK | os.W_OK) or shutil.which(QEMU) is None or not kernel.exists():
        return False
    proc = subprocess.Popen(
        [QEMU, "-accel", "kvm", "-m", "256", "-no-reboot", "-display", "none", "-monitor", "none",
         "-nic", "none", "-serial", "stdio", "-kernel", str(kernel),
         "-append", "console=ttyS0 earlyprintk=ttyS0 panic=-1"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    os.set_blocking(proc.stdout.fileno(), False)  # type: ignore[union-attr]
    seen = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and proc.poll() is None and b"Linux version" not in seen:
            time.sleep(0.2)
            seen += proc.stdout.read() or b""  # type: ignore[union-attr]
    finally:
        proc.kill()
        proc.wait(10)
    return b"Linux version" in seen


def mac_address(name: str, index: int) -> str:
    """VM ``index``'s (0-based) MAC on network ``name``: fixed, locally administered (QEMU's
    52:54:00 prefix)."""
    digest = hashlib.sha1(f"{name}/{index}".encode()).digest()
    return "52:54:00:" + ":".join(f"{b:02x}" for b in digest[:3])


def network_xml(name: str, subnet: ipaddress.IPv4Network, hosts: list[tuple[str, str, str]]) -> str:
    """An isolated network on ``subnet`` (this machine at its first address) whose DHCP serves
    only the ``hosts`` given: (mac, address, hostname)."""
    entries = "".join(f"<host mac={quoteattr(mac)} ip={quoteattr(ip)} name={quoteattr(host)}/>"
                      for mac, ip, host in hosts)
    return (f"<network><name>{escape(name)}</name><bridge stp='off' delay='0'/>"
            f"<ip address='{subnet[1]}' netmask='{subnet.netmask}'><dhcp>{entries}</dhcp></ip></network>")


def _define(kind: str, xml: str) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".xml", prefix="cpppo-fleet-") as file:
        file.write(xml)
        file.flush()
        virsh(f"{kind}-define", file.name)


def network_exists(uuid: str) -> bool:
    return virsh("net-info", uuid, check=False).returncode == 0


def pool_exists(uuid: str) -> bool:
    return virsh("pool-info", uuid, check=False).returncode == 0


def domain_exists(uuid: str) -> bool:
    return virsh("dominfo", uuid, check=False).returncode == 0


def ensure_network(name: str, subnet: ipaddress.IPv4Network, hosts: list[tuple[str, str, str]],
                   known: str | None) -> str:
    """The fleet's network (by the uuid recorded, else defined now), started; its uuid."""
    if known and network_exists(known):
        uuid = known
    else:
        if virsh("net-info", name, check=False).returncode == 0:
            raise LibvirtError(f"a libvirt network {name!r} exists that this fleet did not record "
                               f"(virsh net-uuid {name}; remove it, or move the fleet file)")
        _define("net", network_xml(name, subnet, hosts))
        uuid = virsh("net-uuid", name).stdout.strip()
    if "Active:         yes" not in virsh("net-info", uuid).stdout:
        started = virsh("net-start", uuid, check=False)
        if started.returncode != 0:
            remove_network(uuid)
            reason = " ".join((started.stderr or started.stdout).strip().splitlines()[-1:])
            raise LibvirtError(f"cannot start network {name} on {subnet}: {reason} "
                               "(choose another [vagrant] network)")
    return uuid


def ensure_pool(name: str, known: str | None) -> tuple[str, Path]:
    """The fleet's directory pool under :data:`POOL_ROOT` (by the uuid recorded, else defined
    now), started; its uuid and folder."""
    path = POOL_ROOT / name
    if known and pool_exists(known):
        uuid = known
    else:
        if virsh("pool-info", name, check=False).returncode == 0:
            raise LibvirtError(f"a libvirt storage pool {name!r} exists that this fleet did not record "
                               f"(virsh pool-uuid {name}; remove it, or move the fleet file)")
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o755)
        _define("pool", f"<pool type='dir'><name>{escape(name)}</name>"
                        f"<target><path>{escape(str(path))}</path></target></pool>")
        uuid = virsh("pool-uuid", name).stdout.strip()
    if "State:          running" not in virsh("pool-info", uuid).stdout:
        virsh("pool-start", uuid)
    return uuid, path


def add_boot_files(vm_dir: Path, pool_uuid: str, pool_path: Path) -> None:
    """The box's kernel and initrd, copied into the pool (where qemu may read them)."""
    for name in BOOT_FILES:
        target = pool_path / name
        if not target.exists() or target.stat().st_size != (vm_dir / name).stat().st_size:
            shutil.copyfile(vm_dir / name, target)
            target.chmod(0o644)
    virsh("pool-refresh", pool_uuid)


def remove_domain(uuid: str) -> bool:
    """Power off and undefine a domain (by uuid) with its storage; whether it was there."""
    if not domain_exists(uuid):
        return False
    virsh("destroy", uuid, check=False)
    virsh("undefine", uuid, "--nvram", "--remove-all-storage", check=False)
    return True


def remove_pool(uuid: str, path: Path | None) -> None:
    """Every volume of the pool deleted (by path), the pool stopped and undefined (by uuid), its
    folder removed."""
    if pool_exists(uuid):
        virsh("pool-refresh", uuid, check=False)
        if path is not None and path.is_dir():
            for volume in sorted(path.iterdir()):
                virsh("vol-delete", "--pool", uuid, str(volume), check=False)
        virsh("pool-destroy", uuid, check=False)
        virsh("pool-undefine", uuid, check=False)
    if path is not None and path.is_dir() and path.parent == POOL_ROOT:
        shutil.rmtree(path, ignore_errors=True)


def remove_network(uuid: str) -> None:
    if network_exists(uuid):
        virsh("net-destroy", uuid, check=False)
        virsh("net-undefine", uuid, check=False)
