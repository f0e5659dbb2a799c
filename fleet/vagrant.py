"""``backend = "vagrant"``: a fleet on virtual machines the fleet builds with Vagrant, each VM
one more lab host of the multi-host machinery (:mod:`fleet.hosts`, :mod:`fleet.lab`).

    [fleet]
    name = "plant"
    backend = "vagrant"

    [vagrant]                     # all optional
    vms = 2                       # or: devices_per_vm = 500 (vms = ceil(devices / devices_per_vm))
    provider = "docker"           # systemd containers of the lab-host image (fast); "libvirt": VMs
    network = "10.77.0.0/24"      # the private network the fleet creates: VM i at .(10 + i),
                                  # the upper half shared out as the VMs' device addresses
    image = "cpppo-fleet/labhost-built:latest"  # docker: the image `cpppo-fleet build` makes (never pulled)
    box = "cpppo-fleet/labhost"   # libvirt: the box (packer's qemu build), its key, kernel folder
    key = "lab-key"               # docker: a key pair is made in the project when not given
    vm_dir = ".cache/vm"          # libvirt: the box's kernel and initrd (the disk has no loader)
    driver = "auto"               # libvirt: "kvm" where KVM boots the box's kernel, else "qemu" (TCG)
    memory = 1024                 # libvirt: MiB per VM
    cpus = 2                      # libvirt
    timeout = 20.0                # as [hosts] timeout
    vars = {}                     # as [hosts] vars

``up`` writes a Vagrant project into ``.fleet/<name>/vagrant/`` (one machine per VM, each on
the fleet's private network at its own address), runs ``vagrant up``, reads ``vagrant
ssh-config`` for where SSH reaches each machine, and then deploys the shards like any multi-host
fleet (the labhost role through ansible-playbook).  ``down`` takes the shards down, runs
``vagrant destroy -f``, removes the network and the project, and checks by id that no machine
and no network is left.

With ``provider = "libvirt"`` the fleet's network is an isolated libvirt network that is also
vagrant-libvirt's management network (each VM's one NIC, eth0, its address fixed by DHCP from a
fixed MAC), and the VMs' disks, the box's image and its kernel and initrd live in a storage pool
of the fleet's (:mod:`fleet.libvirt`); ``down`` removes the domains, the pool's volumes, the pool
and the network by the uuids recorded in the project's ``state.json``.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import math
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleet.config import FleetConfig
from fleet.table import ConfigError, Table

VAGRANT_KEYS = frozenset({"vms", "devices_per_vm", "provider", "network", "image", "box", "key", "vm_dir",
                          "driver", "memory", "cpus", "timeout", "vars"})
PROVIDERS = ("docker", "libvirt")
DEFAULT_NETWORK = "10.77.0.0/24"
DEFAULT_IMAGE = "cpppo-fleet/labhost-built:latest"  # fleet.labimage: the role applied already
DEFAULT_BOX = "cpppo-fleet/labhost"
INTERFACE = "eth1"  # docker: the private network is each machine's second NIC
LIBVIRT_INTERFACE = "eth0"  # libvirt: the fleet's network is each VM's only NIC
LIBVIRT_BOOT_TIMEOUT = 900
LIBVIRT_CMDLINE = "root=/dev/vda rw console=ttyS0 net.ifnames=0 ip=eth0:dhcp"
FIRST_HOST = 10  # VM i (1-based) is at network[FIRST_HOST + i]
LABEL = "cpppo-fleet.vagrant"
VAGRANT_TIMEOUT = 3600.0


class VagrantError(Exception):
    """Vagrant could not do its part (absent, a missing image, ``vagrant up`` failed)."""


@dataclass(frozen=True)
class VagrantSettings:
    """The ``[vagrant]`` table, checked."""

    vms: int
    provider: str = "docker"
    network: ipaddress.IPv4Network = field(default_factory=lambda: ipaddress.IPv4Network(DEFAULT_NETWORK))
    image: str = DEFAULT_IMAGE
    box: str = DEFAULT_BOX
    key: str | None = None  # absolute
    vm_dir: str | None = None  # absolute
    driver: str = "auto"
    memory: int = 1024
    cpus: int = 2
    timeout: float = 20.0
    vars: dict[str, Any] = field(default_factory=dict)

    def address(self, index: int) -> str:
        """VM ``index``'s (0-based) address on the fleet's network."""
        return str(self.network[FIRST_HOST + 1 + index])

    def pools(self) -> list[str]:
        """Each VM's device addresses: the network's upper half in equal contiguous ranges."""
        upper = list(self.network.subnets(new_prefix=self.network.prefixlen + 1))[1]
        first, size = int(upper.network_address), (upper.num_addresses - 1) // self.vms  # no broadcast
        at = ipaddress.IPv4Address
        return [f"{at(first + i * size)}-{at(first + (i + 1) * size - 1)}" for i in range(self.vms)]


def read_vagrant(src: str, data: dict[str, Any], config: FleetConfig) -> VagrantSettings:
    """The ``[vagrant]`` table of ``src`` (a fleet with ``backend = "vagrant"``)."""
    table = data.get("vagrant", {})
    if not isinstance(table, dict):
        raise ConfigError(src, "vagrant", None, "must be a table ([vagrant])")
    for other in ("host", "hosts"):
        if other in data:
            raise ConfigError(src, other, None, 'backend = "vagrant" makes its own hosts (one per VM): '
                                                "use [vagrant] vms, not [hosts]/[[host]]")
    t = Table(src, "vagrant", table, VAGRANT_KEYS)
    home = Path(src).resolve().parent
    total = sum(g.count for g in config.groups)
    if "vms" in table and "devices_per_vm" in table:
        t.fail("devices_per_vm", "give vms or devices_per_vm, not both")
    for key in ("vms", "devices_per_vm"):
        value = t.get(key, int, None, what="an integer")
        if value is not None and (isinstance(value, bool) or value < 1):
            t.fail(key, f"must be at least 1, got {value!r}")
    per = t.get("devices_per_vm", int, None)
    vms = t.get("vms", int, None) or (math.ceil(total / per) if per else 1)
    if vms > total:
        t.fail("vms", f"{vms} VMs for {total} devices: every VM needs at least one")
    provider = t.choice("provider", PROVIDERS, "docker")
    text = t.get("network", str, DEFAULT_NETWORK, what="a private IPv4 network (CIDR)")
    network = t.checked("network", lambda: ipaddress.IPv4Network(text, strict=True))
    if not network.is_private or network.prefixlen > 28:
        t.fail("network", f"needs a private IPv4 network of /28 or more addresses, got {text!r}")
    settings = VagrantSettings(vms=vms, provider=provider, network=network)
    if FIRST_HOST + 1 + vms >= network.num_addresses // 2:
        t.fail("vms", f"{vms} VMs do not fit in the lower half of network {text!r}")
    size = (network.num_addresses // 2 - 1) // vms
    if size < 1:
        t.fail("network", f"{text!r} has no device addresses left for {vms} VMs")
    key = t.get("key", str, None, what="a path")
    vm_dir = t.get("vm_dir", str, None, what="a path")
    if provider == "libvirt" and key is None:
        t.fail("key", 'provider "libvirt" needs the key the box was built with (packer -var ssh_key)')
    memory = t.positive("memory", 1024)
    cpus = t.positive("cpus", 2)
    vars_ = t.get("vars", dict, {}, what="a table of strings")
    return dataclasses.replace(
        settings, image=t.get("image", str, DEFAULT_IMAGE, what="an image name"),
        box=t.get("box", str, DEFAULT_BOX, what="a box name"),
        key=None if key is None else str((home / key).resolve()),
        vm_dir=str((home / (vm_dir or ".cache/vm")).resolve()),
        driver=t.choice("driver", ("auto", "qemu", "kvm"), "auto"), memory=memory, cpus=cpus,
        timeout=float(t.positive("timeout", 20.0, (int, float))), vars=vars_)


def shard_vms(config: FleetConfig, data: dict[str, Any], src: str, shard_fleet: Callable):
    """The fleet's shards, a VM each: the multi-host fleet (``shard_fleet``: fleet.hosts's,
    passed in, as fleet.hosts calls this) of the ``[[host]]`` entries that :func:`host_tables`
    makes of the VMs, each running the process backend."""
    settings = read_vagrant(src, data, config)
    project = project_dir(Path(src), config.fleet.name)
    synthetic = {**{k: v for k, v in data.items() if k != "vagrant"},
                 "fleet": {**data["fleet"], "backend": "process"},
                 "hosts": {"timeout": settings.timeout, "vars": settings.vars},
                 "host": host_tables(settings, project)}
    process = dataclasses.replace(config, fleet=dataclasses.replace(config.fleet, backend="process"))
    try:
        lab = shard_fleet(process, synthetic, src)
    except ConfigError as exc:
        if not exc.table.startswith("host"):
            raise
        raise ConfigError(src, "vagrant", "network" if exc.key == "address_pool" else "vms",
                          exc.message) from None
    return dataclasses.replace(lab, vms=settings)


# --- the project: .fleet/<name>/vagrant/ ----------------------------------------------------------

def project_dir(fleet_file: Path, name: str) -> Path:
    return fleet_file.resolve().parent / ".fleet" / name / "vagrant"


def vm_names(settings: VagrantSettings) -> list[str]:
    return [f"vm{i + 1}" for i in range(settings.vms)]


def host_tables(settings: VagrantSettings, project: Path) -> list[dict[str, Any]]:
    """The ``[[host]]`` entries of the VMs: from ``vagrant ssh-config`` once the machines are up
    (where SSH reaches each), else their planned addresses on the fleet's network."""
    found = project / "ssh-config"
    reached = read_ssh_config(found.read_text()) if found.exists() else {}
    key = settings.key or str(project / "id_fleet")
    interface = LIBVIRT_INTERFACE if settings.provider == "libvirt" else INTERFACE
    out = []
    for index, (name, pool) in enumerate(zip(vm_names(settings), settings.pools(), strict=True)):
        seen = reached.get(name, {})
        out.append({"name": name, "address": seen.get("hostname", settings.address(index)),
                    "port": int(seen.get("port", 22)), "user": seen.get("user", "root"),
                    "key": seen.get("identityfile", key), "address_pool": pool, "interface": interface})
    return out


def read_ssh_config(text: str) -> dict[str, dict[str, str]]:
    """``vagrant ssh-config``'s output: machine -> {hostname, port, user, identityfile} (keys
    lower case; the first IdentityFile)."""
    machines: dict[str, dict[str, str]] = {}
    current = None
    for line in text.splitlines():
        parts = line.strip().split(None, 1)
        if len(parts) != 2:
            continue
        key, value = parts[0].lower(), parts[1].strip().strip('"')
        if key == "host":
            current = machines.setdefault(value, {})
        elif current is not None:
            current.setdefault(key, value)
    return machines


def _rb(value: str) -> str:
    """A Ruby single-quoted string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def vagrantfile(fleet: str, settings: VagrantSettings, project: Path, network_name: str) -> str:
    """The generated project's Vagrantfile: one machine per VM on ``network_name`` (libvirt: also
    the name of the fleet's storage pool, whose folder holds the box's kernel and initrd)."""
    from fleet.libvirt import POOL_ROOT, mac_address

    key = settings.key or str(project / "id_fleet")
    boot = POOL_ROOT / network_name
    lines = [f"# written by cpppo-fleet for fleet {fleet!r}: {settings.vms} machines ({settings.provider}); "
             "`cpppo-fleet down` destroys them",
             "# the multi-host `up` provisions them (ansible-playbook, the labhost role)",
             'Vagrant.configure("2") do |config|',
             '  config.vm.synced_folder ".", "/vagrant", disabled: true',
             "  config.vm.allow_fstab_modification = false",
             '  config.ssh.username = "root"',
             "  config.ssh.insert_key = false",
             '  config.ssh.sudo_command = "%c"',
             f"  config.ssh.private_key_path = {_rb(key)}"]
    for index, name in enumerate(vm_names(settings)):
        address = settings.address(index)
        lines += [f"  config.vm.define {_rb(name)} do |m|", f"    m.vm.hostname = {_rb(name)}"]
        if settings.provider == "docker":
            lines += [
                '    m.vm.provider "docker" do |d, override|',
                f"      d.image = {_rb(settings.image)}",
                "      d.pull = false",
                "      d.has_ssh = true",
                "      d.remains_running = true",
                # systemd as PID 1 without --privileged; NET_ADMIN for the devices' aliases
                '      d.create_args = ["--cap-add", "SYS_ADMIN", "--cap-add", "NET_ADMIN",',
                '                       "--tmpfs", "/run", "--tmpfs", "/run/lock",',
                '                       "-v", "/sys/fs/cgroup:/sys/fs/cgroup:ro",',
                f'                       "--label", {_rb(f"{LABEL}={fleet}")}]',
                f"      d.volumes = [{_rb(key + '.pub:/root/.ssh/authorized_keys:ro')}]",
                '      override.vm.network "forwarded_port", id: "ssh", guest: 22, host: 2222,',
                '                          disabled: true',
                f'      override.vm.network "private_network", name: {_rb(network_name)}, ip: {_rb(address)}',
                "    end"]
        else:
            lines += [
                f"    m.vm.box = {_rb(settings.box)}",
                "    m.vm.box_check_update = false",
                f"    m.vm.boot_timeout = {LIBVIRT_BOOT_TIMEOUT}",  # to an address and SSH: emulated VMs
                '    m.vm.provider "libvirt" do |lv|',
                f"      lv.driver = {_rb(settings.driver if settings.driver != 'auto' else 'qemu')}",
                f"      lv.memory = {settings.memory}",
                f"      lv.cpus = {settings.cpus}",
                '      lv.graphics_type = "none"',
                '      lv.video_type = "none"',
                f"      lv.default_prefix = {_rb(network_name + '-')}",
                f"      lv.storage_pool_name = {_rb(network_name)}",
                # the fleet's own isolated network (made before `vagrant up`) is the management
                # network: one NIC, its address fixed by the network's DHCP from this MAC
                f"      lv.management_network_name = {_rb(network_name)}",
                f"      lv.management_network_address = {_rb(str(settings.network))}",
                '      lv.management_network_mode = "none"',
                f"      lv.management_network_mac = {_rb(mac_address(network_name, index))}",
                # the box's disk has no boot loader: its kernel and initrd, from the fleet's pool
                f"      lv.kernel = {_rb(str(boot / 'vmlinuz'))}",
                f"      lv.initrd = {_rb(str(boot / 'initrd.img'))}",
                f"      lv.cmd_line = {_rb(LIBVIRT_CMDLINE)}",
                "    end"]
        lines.append("  end")
    lines.append("end")
    return "\n".join(lines) + "\n"


def network_name(fleet: str, project: Path) -> str:
    """The fleet's network: named after the fleet and its project folder (two folders' fleets of
    the same name do not meet); never ``vagrant_network*``, which Vagrant's docker provider
    removes on any destroy."""
    import hashlib

    return f"cpppo-{fleet}-{hashlib.sha1(str(project).encode()).hexdigest()[:8]}"


# --- running Vagrant ------------------------------------------------------------------------------

def vagrant_env(project: Path) -> dict[str, str]:
    return {**os.environ, "VAGRANT_CWD": str(project), "VAGRANT_DOTFILE_PATH": str(project / ".vagrant"),
            "VAGRANT_CHECKPOINT_DISABLE": "1", "VAGRANT_NO_COLOR": "1"}


def run_vagrant(project: Path, args: list[str], echo: Callable[[str], None] | None = None,
                timeout: float = VAGRANT_TIMEOUT) -> subprocess.CompletedProcess:
    """``vagrant ARGS`` in ``project``; with ``echo``, its output line by line as it comes."""
    if shutil.which("vagrant") is None:
        raise VagrantError('vagrant not found: backend = "vagrant" needs it (apt-get install vagrant)')
    env = vagrant_env(project)
    if echo is None:
        return subprocess.run(["vagrant", *args], cwd=project, env=env, capture_output=True, text=True,
                              timeout=timeout, check=False, stdin=subprocess.DEVNULL)
    lines = []
    begun = time.monotonic()
    with subprocess.Popen(["vagrant", *args], cwd=project, env=env, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        try:
            for line in proc.stdout:  # type: ignore[union-attr]
                lines.append(line)
                echo(line.rstrip())
                if time.monotonic() - begun > timeout:
                    proc.kill()
                    break
        finally:
            proc.wait(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, "".join(lines), "")


def _docker():
    import docker
    import docker.errors

    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except docker.errors.DockerException as exc:
        raise VagrantError(f'provider "docker": no Docker engine ({exc})') from None
    return client


def machine_ids(project: Path) -> dict[str, str]:
    """machine -> its provider's id (container id or libvirt domain uuid), from .vagrant/."""
    out = {}
    for id_file in sorted((project / ".vagrant" / "machines").glob("*/*/id")):
        text = id_file.read_text().strip()
        if text:
            out[id_file.parent.parent.name] = text
    return out


def create(fleet_file: Path, fleet: str, settings: VagrantSettings,
           echo: Callable[[str], None]) -> float:
    """Write the project, make the network (docker provider) and ``vagrant up``; write
    ``ssh-config``.  Returns the seconds ``vagrant up`` took."""
    project = project_dir(fleet_file, fleet)
    project.mkdir(parents=True, exist_ok=True)
    name = network_name(fleet, project)
    state_file = project / "state.json"
    state = json.loads(state_file.read_text()) if state_file.exists() else {}
    if settings.provider == "docker":
        client = _docker()
        _require_image(fleet_file, settings, client)
        if settings.key is None and not (project / "id_fleet").exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"cpppo-fleet-{fleet}",
                            "-f", str(project / "id_fleet")], check=True, timeout=60, capture_output=True)
        state["network"] = _docker_network(client, name, settings.network, fleet, state.get("network"))
        state_file.write_text(json.dumps(state))
    else:
        settings = _libvirt_objects(fleet_file, fleet, settings, name, state, state_file)
        echo(f"libvirt: network {name} on {settings.network} and storage pool {state['pool_path']} "
             f"(driver {settings.driver})")
    (project / "Vagrantfile").write_text(vagrantfile(fleet, settings, project, name))
    echo(f"vagrant up --provider={settings.provider}: {settings.vms} machines (project {project})")
    begun = time.monotonic()
    up = run_vagrant(project, ["up", f"--provider={settings.provider}", "--no-provision"],
                     lambda line: echo(f"  vagrant: {line}"))
    seconds = time.monotonic() - begun
    if settings.provider == "libvirt":
        state["domains"] = {**state.get("domains", {}), **machine_ids(project)}
        state_file.write_text(json.dumps(state))
    if up.returncode != 0:
        last = [line for line in up.stdout.strip().splitlines() if line.strip()][-1:]
        raise VagrantError(f"vagrant up failed (exit {up.returncode}): {' '.join(last)} "
                           f"(`cpppo-fleet down {fleet_file}` removes what it made)")
    config = run_vagrant(project, ["ssh-config"], timeout=300)
    if config.returncode != 0:
        raise VagrantError(f"vagrant ssh-config failed: {config.stderr.strip().splitlines()[-1:]}")
    (project / "ssh-config").write_text(config.stdout)
    return seconds


def _libvirt_objects(fleet_file: Path, fleet: str, settings: VagrantSettings, name: str,
                     state: dict[str, Any], state_file: Path) -> VagrantSettings:
    """provider "libvirt": the box's kernel and initrd, the box and the daemon checked; the fleet's network
    and storage pool made (or found by the uuids in ``state``, which records them as they are
    made); the settings with the driver decided."""
    from fleet import libvirt

    vm_dir = Path(settings.vm_dir or "")
    missing = [f for f in libvirt.BOOT_FILES if not (vm_dir / f).is_file()]
    if missing:
        raise VagrantError(f"[vagrant] vm_dir {str(vm_dir)!r}: no {' or '.join(missing)} (the box's "
                           f"kernel and initrd: `cpppo-fleet build {fleet_file}` makes them)")
    if settings.box not in installed_boxes(project_dir(fleet_file, fleet), "libvirt"):
        raise VagrantError(f"[vagrant] box {settings.box!r} not found among Vagrant's libvirt boxes "
                           f"(build and add it: `cpppo-fleet build {fleet_file}`)")
    try:
        libvirt.require_daemon()
        hosts = [(libvirt.mac_address(name, i), settings.address(i), vm)
                 for i, vm in enumerate(vm_names(settings))]
        state["network"] = libvirt.ensure_network(name, settings.network, hosts, state.get("network"))
        state_file.write_text(json.dumps(state))
        state["pool"], path = libvirt.ensure_pool(name, state.get("pool"))
        state["pool_path"] = str(path)
        state_file.write_text(json.dumps(state))
        libvirt.add_boot_files(vm_dir, state["pool"], path)
    except libvirt.LibvirtError as exc:
        raise VagrantError(str(exc)) from None
    if settings.driver == "auto":
        settings = dataclasses.replace(settings, driver="kvm" if libvirt.kvm_boots(vm_dir) else "qemu")
    return settings


def installed_boxes(where: Path, provider: str) -> set[str]:
    """The names of the boxes Vagrant has for ``provider``."""
    listed = run_vagrant(where, ["box", "list", "--machine-readable"], timeout=300)
    names, out = [], set()
    for line in listed.stdout.splitlines():
        parts = line.split(",")
        if len(parts) >= 4 and parts[2] == "box-name":
            names.append(parts[3])
        elif len(parts) >= 4 and parts[2] == "box-provider" and names and parts[3] == provider:
            out.add(names[-1])
    return out


def _require_image(fleet_file: Path, settings: VagrantSettings, client) -> None:
    """provider "docker": VagrantError (one line naming `cpppo-fleet build`) when the image is
    not here (provider "libvirt": :func:`_libvirt_objects` checks the box and its kernel)."""
    import docker.errors

    try:
        client.images.get(settings.image)
    except docker.errors.ImageNotFound:
        raise VagrantError(f'provider "docker": image {settings.image!r} not found here '
                           f"(`cpppo-fleet build {fleet_file}` makes it)") from None


def _docker_network(client, name: str, subnet: ipaddress.IPv4Network, fleet: str, known: str | None) -> str:
    """The fleet's bridge network (by the id recorded, else made now); its id."""
    import docker.errors
    from docker.types import IPAMConfig, IPAMPool

    if known:
        try:
            return client.networks.get(known).id
        except docker.errors.NotFound:
            pass
    lower = next(subnet.subnets(new_prefix=subnet.prefixlen + 1))
    ipam = IPAMConfig(pool_configs=[IPAMPool(subnet=str(subnet), gateway=str(subnet[1]), iprange=str(lower))])
    try:
        return client.networks.create(name, driver="bridge", ipam=ipam, labels={LABEL: fleet}).id
    except docker.errors.APIError as exc:
        raise VagrantError(f"cannot create network {name} on {subnet}: {exc.explanation or exc} "
                           "(choose another [vagrant] network)") from None


def destroy(fleet_file: Path, fleet: str, settings: VagrantSettings,
            echo: Callable[[str], None]) -> list[str]:
    """``vagrant destroy -f``, the network removed, the project removed; what is left (by id:
    machines and networks that still exist), empty when nothing is."""
    project = project_dir(fleet_file, fleet)
    if not project.exists():
        return []
    ids = machine_ids(project)
    state_file = project / "state.json"
    state = json.loads(state_file.read_text()) if state_file.exists() else {}
    made = bool(ids or state.get("network") or state.get("pool") or state.get("domains"))
    if settings.provider == "libvirt" and made:
        from fleet import libvirt

        try:
            libvirt.require_daemon()  # before vagrant, which cannot tell a machine gone from no daemon
        except libvirt.LibvirtError as exc:
            raise VagrantError(str(exc)) from None
    if (project / "Vagrantfile").exists() and (made or settings.provider == "docker"):
        echo(f"vagrant destroy -f: {len(ids)} machines")
        gone = run_vagrant(project, ["destroy", "-f"], lambda line: echo(f"  vagrant: {line}"))
        if gone.returncode != 0:
            echo(f"  vagrant destroy exited with {gone.returncode}")
    left = []
    if settings.provider == "docker":
        import docker.errors

        client = _docker()
        for machine, container in ids.items():
            try:
                client.containers.get(container).remove(force=True, v=True)  # destroy missed it
                echo(f"  removed container {container[:12]} ({machine}) that vagrant destroy left")
            except docker.errors.NotFound:
                pass
        if state.get("network"):
            try:
                client.networks.get(state["network"]).remove()
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as exc:
                left.append(f"network {state['network'][:12]}: {exc.explanation or exc}")
        for machine, container in ids.items():
            try:
                client.containers.get(container)
                left.append(f"container {container[:12]} ({machine})")
            except docker.errors.NotFound:
                pass
    elif made:
        left = _remove_libvirt_objects(state, ids, echo)
    if not left:
        shutil.rmtree(project)
    return left


def _remove_libvirt_objects(state: dict[str, Any], ids: dict[str, str],
                            echo: Callable[[str], None]) -> list[str]:
    """provider "libvirt": the domains that ``vagrant destroy`` left, the pool's volumes, the pool
    and the network removed by uuid; what is still there."""
    from fleet import libvirt

    try:
        libvirt.require_daemon()
        domains = {**state.get("domains", {}), **ids}
        for machine, uuid in domains.items():
            if libvirt.remove_domain(uuid):
                echo(f"  removed domain {uuid} ({machine}) that vagrant destroy left")
        path = Path(state["pool_path"]) if state.get("pool_path") else None
        if state.get("pool"):
            libvirt.remove_pool(state["pool"], path)
        if state.get("network"):
            libvirt.remove_network(state["network"])
        left = [f"domain {uuid} ({machine})" for machine, uuid in domains.items()
                if libvirt.domain_exists(uuid)]
        if state.get("pool") and libvirt.pool_exists(state["pool"]):
            left.append(f"storage pool {state['pool']}")
        if path is not None and path.exists():
            left.append(f"pool folder {path}")
        if state.get("network") and libvirt.network_exists(state["network"]):
            left.append(f"network {state['network']}")
    except libvirt.LibvirtError as exc:
        raise VagrantError(str(exc)) from None
    return left


def ssh_key_problem(settings: VagrantSettings) -> str | None:
    if settings.key and not Path(settings.key).is_file():
        return f"[vagrant] key {settings.key!r} not found"
    return None

