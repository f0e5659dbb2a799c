"""Lab hosts for the tests: systemd containers with sshd on a private network the test makes,
reached by Ansible over SSH like real lab hosts, and the runs of ``ansible-playbook`` on them.

Everything made here carries the label ``cpppo-fleet.test-lab=<pid>`` and is removed by id.
"""

from __future__ import annotations

import ipaddress
import os
import random
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ANSIBLE = ROOT / "ansible"
VAGRANT_DIR = ROOT / "vagrant"
BASE_IMAGE = "cpppo-fleet/base:bookworm"
LABHOST_IMAGE = "cpppo-fleet/labhost:bookworm"
LABEL = "cpppo-fleet.test-lab"
HOME = "/opt/cpppo-fleet"  # the labhost role's cpppo_fleet_home
SSH_OPTIONS = ("-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
               "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10")
# systemd as PID 1 without --privileged (cgroups v1 here); NET_ADMIN for the fleet's aliases
SYSTEMD_RUN = dict(cap_add=["SYS_ADMIN", "NET_ADMIN"], tmpfs={"/run": "", "/run/lock": ""},
                   volumes={"/sys/fs/cgroup": {"bind": "/sys/fs/cgroup", "mode": "ro"}})


SOURCE_PARTS = ("pyproject.toml", "README.md", "fleet.toml", "cpppo", "fleet", "images")


def copy_sources(dest: Path) -> Path:
    """A copy of the parts of the source tree the labhost role builds its wheelhouse from, in
    ``dest``: the role then reads a tree that stays as it is for the whole test (commits made to
    the checkout meanwhile change no wheel), and may be shown to write nothing into it."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in SOURCE_PARTS:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(ROOT / name, dest / name)
    return dest


def ansible_playbook_command() -> list[str]:
    """``ansible-playbook`` of the interpreter running the tests (ansible-core is a test extra)."""
    beside = Path(sys.executable).parent / "ansible-playbook"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("ansible-playbook")
    return [found] if found else []


def vagrant(args: list[str], work: Path, env: dict[str, str] | None = None,
            timeout: float = 900.0) -> subprocess.CompletedProcess:
    """``vagrant`` on vagrant/Vagrantfile with its state (.vagrant/, boxes) under ``work``; the
    Ansible of the tests on its PATH."""
    tools = [str(Path(sys.executable).parent)]
    if ansible_playbook_command():
        tools.append(str(Path(ansible_playbook_command()[0]).parent))
    full = {**os.environ, "VAGRANT_CWD": str(VAGRANT_DIR), "VAGRANT_DOTFILE_PATH": str(work / "dot"),
            "VAGRANT_HOME": str(work / "home"), "VAGRANT_CHECKPOINT_DISABLE": "1",
            "VAGRANT_NO_COLOR": "1", "PATH": ":".join([*tools, os.environ["PATH"]]), **(env or {})}
    return subprocess.run(["vagrant", *args], cwd=work, env=full, capture_output=True, text=True,
                          timeout=timeout, check=False, stdin=subprocess.DEVNULL)


def build_labhost_image(client) -> str:
    """The plain lab-host image (images/labhost) from the local base image (docker's layer cache
    makes a rebuild quick), as ``cpppo-fleet build`` makes it."""
    from fleet.labimage import PLAIN_IMAGE, plain_image

    plain_image(client, ROOT, lambda line: None)
    return PLAIN_IMAGE


def ssh_keypair(directory: Path) -> Path:
    """A fresh ed25519 key pair in ``directory``; returns the private key's path."""
    key = directory / "id_lab"
    if not key.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "cpppo-fleet-lab",
                        "-f", str(key)], check=True, timeout=30)
    return key


@dataclass
class LabNetwork:
    """A private docker bridge: the host (the test) is its gateway, lab hosts are on it."""

    network: object
    subnet: ipaddress.IPv4Network

    @property
    def id(self) -> str:
        return self.network.id

    def pool(self, index: int, size: int = 16) -> ipaddress.IPv4Network:
        """The ``index``-th block of ``size`` addresses in the upper half (device addresses)."""
        return upper_block(self.subnet, index, size)


def upper_block(subnet: ipaddress.IPv4Network, index: int, size: int = 16) -> ipaddress.IPv4Network:
    """The ``index``-th block of ``size`` addresses in the upper half of ``subnet`` (the lower
    half is the lab hosts')."""
    half = list(subnet.subnets(new_prefix=subnet.prefixlen + 1))[1]
    return list(half.subnets(new_prefix=32 - (size - 1).bit_length()))[index]


def free_subnets(taken: list[ipaddress.IPv4Network], tries: int = 20,
                 prefix: int = 24) -> Iterator[ipaddress.IPv4Network]:
    """Up to ``tries`` random 10.x.y.0/``prefix`` (16..24) that overlap none of ``taken``."""
    rng = random.Random(os.getpid() ^ time.time_ns())
    for _ in range(tries):
        third = rng.randrange(0, 256) & ~((1 << (24 - prefix)) - 1)
        subnet = ipaddress.ip_network(f"10.{rng.randrange(100, 250)}.{third}.0/{prefix}")
        if not any(subnet.overlaps(t) for t in taken):
            yield subnet


@contextmanager
def lab_network(client, tries: int = 20, prefix: int = 24) -> Iterator[LabNetwork]:
    """A private bridge network on a free 10.x.y.0/``prefix`` (24: 256 addresses, 20: 4,096),
    removed (by id) afterwards."""
    import docker.errors
    from docker.types import IPAMConfig, IPAMPool

    taken = [ipaddress.ip_network(c["Subnet"]) for n in client.networks.list()
             for c in ((n.attrs.get("IPAM") or {}).get("Config") or []) if "Subnet" in c
             and ":" not in c["Subnet"]]
    network = None
    for subnet in free_subnets(taken, tries, prefix):
        ipam = IPAMConfig(pool_configs=[IPAMPool(subnet=str(subnet), gateway=str(subnet[1]), iprange=str(
            next(subnet.subnets(new_prefix=subnet.prefixlen + 1))))])
        try:
            network = client.networks.create(f"cpppo-lab-{os.getpid()}-{subnet.network_address}",
                                             driver="bridge", ipam=ipam, labels={LABEL: str(os.getpid())})
            break
        except docker.errors.APIError as exc:
            if "overlap" not in str(exc).lower():
                raise
    if network is None:
        raise RuntimeError("no free 10.x.y.0/24 for a lab network")
    try:
        yield LabNetwork(network, subnet)
    finally:
        network.reload()
        for container in network.containers:
            with _ignored():
                network.disconnect(container, force=True)
        with _ignored():
            network.remove()


@dataclass
class LabHost:
    """A systemd container with sshd that Ansible provisions over SSH."""

    name: str
    container: object
    address: str

    @property
    def id(self) -> str:
        return self.container.id


def start_labhosts(client, network: LabNetwork, count: int, public_key: Path,
                   image: str = LABHOST_IMAGE, prefix: str = "lab") -> list[LabHost]:
    """``count`` lab hosts on ``network`` answering SSH as root with ``public_key``."""
    hosts = []
    try:
        for index in range(count):
            name = f"{prefix}{index + 1}"
            container = client.containers.run(
                image, detach=True, name=f"cpppo-{prefix}-{os.getpid()}-{index + 1}", hostname=name,
                network=network.network.name, labels={LABEL: str(os.getpid())}, **SYSTEMD_RUN)
            container.reload()
            address = container.attrs["NetworkSettings"]["Networks"][network.network.name]["IPAddress"]
            hosts.append(LabHost(name, container, address))
        for host in hosts:
            authorize(host.container, public_key)
        for host in hosts:
            wait_for_ssh(host.address)
    except BaseException:
        remove_labhosts(hosts)
        raise
    return hosts


def provisioned_image(client, network: LabNetwork, key: Path, extra_vars: dict[str, str],
                      work: Path) -> tuple[str, PlaybookRun]:
    """An image of a lab host the labhost role provisioned (project installed, no fleet service):
    the role applied over SSH to one fresh container, which is then committed.  Hosts started
    from it are what a provisioned lab host is, so applying the role to them only deploys a
    fleet (the role is idempotent).  Returns (image id, the playbook run); remove it by id."""
    [host] = start_labhosts(client, network, 1, key.with_suffix(".pub"), prefix="provision")
    try:
        inventory = write_inventory(work / "provision.ini", [host], key, {})
        run = run_playbook(inventory, {**extra_vars, "cpppo_fleet_service": "false"})
        if run.returncode != 0:
            raise RuntimeError(f"provisioning {host.name} failed:\n{run.output[-4000:]}")
        host.container.exec_run(["rm", "-f", "/root/.ssh/authorized_keys", f"{HOME}/fleet.toml"])
        image = host.container.commit(repository="cpppo-fleet/labhost-provisioned",
                                      tag=f"test-{os.getpid()}-{time.monotonic_ns()}",
                                      conf={"Labels": {LABEL: str(os.getpid())}})
        return image.id, run
    finally:
        remove_labhosts([host])


def authorize(container, public_key: Path) -> None:
    """Put ``public_key`` into root's authorized_keys in ``container``."""
    key = public_key.read_text().strip().replace("'", "")
    result = container.exec_run(["sh", "-c", f"mkdir -p -m 700 /root/.ssh && echo '{key}' "
                                 ">/root/.ssh/authorized_keys && chmod 600 /root/.ssh/authorized_keys"])
    if result.exit_code != 0:
        raise RuntimeError(f"authorizing the key in {container.name}: {result.output.decode()}")


def wait_for_ssh(address: str, port: int = 22, timeout: float = 60.0) -> None:
    """Until ``address:port`` sends an SSH banner."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((address, port), timeout=2) as conn:
                conn.settimeout(5)
                if conn.recv(64).startswith(b"SSH-"):
                    return
        except OSError as exc:
            last = str(exc)
        time.sleep(0.3)
    raise RuntimeError(f"no SSH at {address}:{port} after {timeout:.0f}s ({last})")


def remove_labhosts(hosts: list[LabHost]) -> None:
    """Remove the containers (by id)."""
    for host in hosts:
        with _ignored():
            host.container.remove(force=True, v=True)


@contextmanager
def _ignored() -> Iterator[None]:
    import docker.errors

    try:
        yield
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError:
        pass


def write_inventory(path: Path, hosts: list[LabHost], key: Path, hostvars: dict[str, dict[str, str]],
                    user: str = "root") -> Path:
    """An INI inventory of ``hosts`` in group ``labhosts``."""
    lines = ["[labhosts]"]
    for host in hosts:
        extra = " ".join(f"{k}={v}" for k, v in hostvars.get(host.name, {}).items())
        lines.append(f"{host.name} ansible_host={host.address} ansible_user={user} {extra}".rstrip())
    lines += ["", "[labhosts:vars]", f"ansible_ssh_private_key_file={key}",
              f"ansible_ssh_common_args='{' '.join(SSH_OPTIONS)}'", ""]
    path.write_text("\n".join(lines))
    return path


@dataclass
class PlaybookRun:
    returncode: int
    output: str
    seconds: float

    def recap(self) -> dict[str, dict[str, int]]:
        """The PLAY RECAP: host -> {ok, changed, unreachable, failed, ...}."""
        from fleet.lab import playbook_recap

        return playbook_recap(self.output)

    def changed_tasks(self) -> list[str]:
        """The names of the tasks that reported a change (for messages)."""
        names, current = [], ""
        for line in self.output.splitlines():
            if line.startswith(("TASK [", "RUNNING HANDLER [")):
                current = line.split("[", 1)[1].split("]")[0]
            elif line.startswith("changed:"):
                names.append(f"{current}: {line}")
        return names


def run_playbook(inventory: Path, extra_vars: dict[str, str], timeout: float = 1200.0,
                 playbook: Path = ANSIBLE / "playbook.yml") -> PlaybookRun:
    """``ansible-playbook`` on ``inventory`` with the project's ansible.cfg."""
    args = [*ansible_playbook_command(), "-i", str(inventory), str(playbook)]
    for key, value in {"cpppo_fleet_controller_python": sys.executable, **extra_vars}.items():
        args += ["-e", f"{key}={value}"]
    env = {**os.environ, "ANSIBLE_CONFIG": str(ANSIBLE / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_LOCAL_TEMP": str(inventory.parent / "ansible-tmp")}
    begun = time.monotonic()
    proc = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
                          env=env, check=False)
    return PlaybookRun(proc.returncode, proc.stdout + proc.stderr, time.monotonic() - begun)


def lab_fleet_toml(name: str, pool: ipaddress.IPv4Network, interface: str = "eth0",
                   enip: int = 2, modbus: int = 2) -> str:
    """A small fleet in alias mode: its devices at their own addresses of ``pool`` on ``interface``,
    reachable from the other hosts on the network."""
    return f"""\
[fleet]
name = "{name}"
address_pool = "{pool}"
addressing = "alias"
interface = "{interface}"
health_interval = 2.0
devices_per_worker = 10

[[device]]
kind = "enip"
count = {enip}
name = "{name}-plc{{n}}"
tags = ["SCADA=INT[100]", "Speed=REAL"]

[[device]]
kind = "modbus"
count = {modbus}
name = "{name}-pump{{n}}"
registers = ["40001-40010=7"]
"""


@contextmanager
def ssh_tunnel(address: str, key: Path, host: str, port: int, timeout: float = 60.0) -> Iterator[int]:
    """A local port on 127.0.0.1 forwarded over SSH through the lab host at ``address`` to
    ``host:port`` as the lab host sees it (a device on a docker bridge inside a VM, say); the
    ``ssh`` process is stopped by its pid afterwards."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        local = probe.getsockname()[1]
    proc = subprocess.Popen(["ssh", *SSH_OPTIONS, "-i", str(key), "-N", "-o", "ExitOnForwardFailure=yes",
                             "-L", f"127.0.0.1:{local}:{host}:{port}", f"root@{address}"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"ssh -L to {host}:{port} via {address}: {proc.stderr.read().decode()}")
            try:
                socket.create_connection(("127.0.0.1", local), timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"ssh -L to {host}:{port} via {address}: no local port") from None
                time.sleep(0.3)
        yield local
    finally:
        stop_process(proc)


def stop_process(proc: subprocess.Popen, grace: float = 30.0) -> None:
    """SIGTERM to ``proc`` (by its pid), SIGKILL after ``grace`` seconds."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)
