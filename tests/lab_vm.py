"""Lab hosts as virtual machines for the tests: the disk built offline by images/build-vm-disk.sh
(mmdebstrap), booted by qemu on a tap device in a private docker bridge the test made, with
its address from the kernel command line, so Ansible and clients reach it as a real lab host.

KVM is used only where it can boot a guest (here /dev/kvm exists but cannot run Debian's
kernel): :func:`kvm_boots` tries, and qemu falls back to software emulation (TCG).
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from fleet import libvirt
from tests.lab_targets import ROOT, LabNetwork, wait_for_ssh

VM_DIR = ROOT / ".cache" / "vm"
BUILD_DISK = ROOT / "images" / "build-vm-disk.sh"
QEMU = libvirt.QEMU
CMDLINE = "root=/dev/vda rw console=ttyS0 net.ifnames=0 panic=-1"


def build_disk(public_key: Path, out: Path = VM_DIR, timeout: float = 1800.0) -> Path:
    """The offline-built VM disk for ``public_key`` (kept while the script and key are unchanged)."""
    proc = subprocess.run(["bash", str(BUILD_DISK), str(out), str(public_key)], capture_output=True,
                          text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{BUILD_DISK.name} failed: {(proc.stderr or proc.stdout).strip()[-2000:]}")
    return out


def kvm_boots(vm_dir: Path = VM_DIR) -> bool:
    """Whether KVM boots this guest's kernel (fleet.libvirt's test, on the lab disk's kernel)."""
    return libvirt.kvm_boots(vm_dir)


def bridge_of(network: LabNetwork) -> str:
    """The Linux bridge behind a docker bridge network."""
    network.network.reload()
    options = network.network.attrs.get("Options") or {}
    return options.get("com.docker.network.bridge.name") or f"br-{network.id[:12]}"


@dataclass
class LabVm:
    """A running VM: its qemu process, tap device and address."""

    name: str
    address: str
    accelerator: str
    process: subprocess.Popen
    tap: str
    serial: Path
    boot_seconds: float = 0.0

    def stop(self) -> None:
        """Power off (kill qemu by its pid), then remove the tap device."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)
        subprocess.run(["ip", "link", "del", self.tap], capture_output=True, timeout=30, check=False)


def start_vm(network: LabNetwork, address: ipaddress.IPv4Address, work: Path, vm_dir: Path = VM_DIR,
             memory: int = 1024, ssh_timeout: float = 600.0, disk: Path | None = None) -> LabVm:
    """Boot a copy-on-write overlay of the disk (``vm_dir``'s, or ``disk``, booted with
    ``vm_dir``'s kernel) on a new tap in ``network``'s bridge at ``address``."""
    accelerator = "kvm" if kvm_boots(vm_dir) else "tcg"
    overlay = work / f"vm-{address}.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(disk or vm_dir / "disk.qcow2"),
                    "-F", "qcow2", str(overlay)], check=True, timeout=60)
    tap = f"tcpf{os.getpid() % 100000}{int(address) % 256}"[:15]
    subprocess.run(["ip", "tuntap", "add", "dev", tap, "mode", "tap"], check=True, timeout=30)
    subprocess.run(["ip", "link", "set", tap, "master", bridge_of(network), "up"], check=True, timeout=30)
    gateway = network.subnet[1]
    ip = f"ip={address}::{gateway}:{network.subnet.netmask}:cpppo-lab:eth0:none"
    serial = work / f"vm-{address}.serial.log"
    mac = "52:54:00:" + ":".join(f"{b:02x}" for b in address.packed[1:])
    args = [QEMU, "-accel", accelerator, "-nodefaults", "-m", str(memory), "-smp", "2", "-display", "none",
            "-monitor", "none", "-serial", f"file:{serial}", "-no-reboot",
            "-kernel", str(vm_dir / "vmlinuz"), "-initrd", str(vm_dir / "initrd.img"),
            "-append", f"{CMDLINE} {ip}", "-drive", f"file={overlay},if=virtio,cache=unsafe",
            "-netdev", f"tap,id=n0,ifname={tap},script=no,downscript=no",
            "-device", f"virtio-net-pci,netdev=n0,mac={mac}"]
    if accelerator == "tcg":
        args[3:3] = ["-cpu", "max"]  # after "-accel tcg"
    begun = time.monotonic()
    process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    vm = LabVm(f"vm{int(address) % 256}", str(address), accelerator, process, tap, serial)
    try:
        wait_for_ssh(vm.address, timeout=ssh_timeout)
    except BaseException:
        vm.stop()
        raise
    vm.boot_seconds = time.monotonic() - begun
    return vm
