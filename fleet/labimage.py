"""The lab-host image of ``backend = "vagrant"``, built with Packer: ``cpppo-fleet build
FLEET_TOML``.  This module owns the command lines of ``packer`` (the template
``packer/cpppo-fleet.pkr.hcl``) for the CLI and the tests alike.

- provider ``docker``: the plain lab-host image (``images/labhost``: systemd and sshd, from the
  local base image), then ``packer build -only=docker.labhost``: the labhost role applied over
  SSH to a container of it on a docker network made for the build (and removed, by id), the
  result tagged ``[vagrant] image`` (``cpppo-fleet/labhost-built:latest``).
- provider ``libvirt``: the offline VM disk (``images/build-vm-disk.sh``) into ``[vagrant]
  vm_dir``, ``packer build -only=qemu.labhost`` into ``vm_dir/labhost/``, then ``vagrant box add
  --force`` of its box as ``[vagrant] box``.

The role is applied with the fleet's ``[vagrant] vars`` and without the fleet's service
(``cpppo_fleet_service=false``): the image holds the project, installed, and no fleet; ``up``
applies the role again with each VM's shard, which then only installs the fleet file and the
service.  A digest of the build's inputs (the sources, the role, the template, the plain image or
the disk script and key, the vars) is kept with the result (the image's label
``cpppo-fleet.stamp``; ``vm_dir/labhost/stamp``): a build with nothing changed is skipped.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fleet.vagrant import VagrantSettings

TEMPLATE = Path("packer") / "cpppo-fleet.pkr.hcl"  # in the source tree
PLAIN_IMAGE = "cpppo-fleet/labhost:bookworm"  # images/labhost, the docker build's starting point
STAMP_LABEL = "cpppo-fleet.stamp"
BUILD_LABEL = "cpppo-fleet.labimage"  # on the build's docker network
BOX_FILE = "cpppo-fleet-labhost-libvirt.box"  # the template's vagrant post-processor names it so
PACKER_TIMEOUT = 3600.0
DISK_TIMEOUT = 1800.0
# the role in the image: the project installed, no fleet (`up` brings each VM's shard)
IMAGE_ROLE_VARS = {"cpppo_fleet_service": False, "cpppo_fleet_start": False}

Echo = Callable[[str], None]


class LabImageError(Exception):
    """The image could not be built (a tool missing, a build that failed); one line."""


@dataclass(frozen=True)
class Built:
    """What ``build`` made (or found up to date)."""

    what: str  # "image cpppo-fleet/labhost-built:latest", "box cpppo-fleet/labhost"
    stamp: str
    seconds: float
    skipped: bool


# --- the command lines ---------------------------------------------------------------------------

def source_root() -> Path:
    """The source tree (the template, the role and the images are not in the wheel)."""
    from fleet.backends.base import BackendError
    from fleet.backends.docker.image import source_root as root

    try:
        return root()
    except BackendError as exc:
        raise LabImageError(str(exc)) from None


def template(root: Path | None = None) -> Path:
    return (root or source_root()) / TEMPLATE


def packer_env(cwd: Path) -> dict[str, str]:
    """Packer's environment: its cache under ``cwd``, no update check, no colour, and this
    Python's folder first on PATH (its ansible-playbook)."""
    return {**os.environ, "PACKER_CACHE_DIR": str(cwd / "packer_cache"), "CHECKPOINT_DISABLE": "1",
            "PACKER_NO_COLOR": "1", "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}


def _vars(values: dict[str, Any]) -> list[str]:
    out = []
    for key, value in values.items():
        if value is not None:
            out += ["-var", f"{key}={str(value).lower() if isinstance(value, bool) else value}"]
    return out


def docker_build_args(*, network: str, address: str, key: Path, ansible_playbook: str,
                      repository: str, tag: str, fleet_file: Path | None = None,
                      interface: str | None = None, build_dir: Path | None = None,
                      docker_image: str | None = None, role_vars: dict[str, Any] | None = None,
                      stamp: str | None = None, root: Path | None = None) -> list[str]:
    """``packer build -only=docker.labhost ...``'s arguments (after ``packer``)."""
    values = {"network": network, "address": address, "ssh_key": key, "fleet_file": fleet_file,
              "interface": interface, "controller_python": sys.executable,
              "ansible_playbook": ansible_playbook, "build_dir": build_dir, "docker_image": docker_image,
              "repository": repository, "tag": tag,
              "role_vars": None if role_vars is None else json.dumps(role_vars, sort_keys=True),
              "stamp": stamp}
    return ["build", "-only=docker.labhost", *_vars(values), str(template(root))]


def qemu_build_args(*, vm_dir: Path, key: Path, output: Path, ansible_playbook: str, accelerator: str,
                    fleet_file: Path | None = None, docker: bool | None = None,
                    up_timeout: int | None = None, build_dir: Path | None = None,
                    role_vars: dict[str, Any] | None = None, root: Path | None = None) -> list[str]:
    """``packer build -only=qemu.labhost ...``'s arguments (after ``packer``)."""
    values = {"vm_dir": vm_dir, "ssh_key": key, "fleet_file": fleet_file, "docker": docker,
              "up_timeout": up_timeout, "controller_python": sys.executable,
              "ansible_playbook": ansible_playbook, "build_dir": build_dir, "output_directory": output,
              "accelerator": accelerator,
              "role_vars": None if role_vars is None else json.dumps(role_vars, sort_keys=True)}
    return ["build", "-only=qemu.labhost", *_vars(values), str(template(root))]


def validate_args(key: Path, root: Path | None = None) -> list[str]:
    return ["validate", *_vars({"ssh_key": key}), str(template(root))]


def run_packer(args: list[str], cwd: Path, timeout: float = PACKER_TIMEOUT,
               echo: Echo | None = None) -> subprocess.CompletedProcess:
    """``packer ARGS`` in ``cwd``; with ``echo``, its output line by line as it comes."""
    if shutil.which("packer") is None:
        raise LabImageError("packer not found: building the lab-host image needs it "
                            "(apt-get install packer: Debian's 1.6.6)")
    return run_streamed(["packer", *args], cwd, packer_env(cwd), timeout, echo)


def run_streamed(argv: list[str], cwd: Path, env: dict[str, str] | None, timeout: float,
                 echo: Echo | None = None) -> subprocess.CompletedProcess:
    """``argv`` with stdout and stderr merged: captured, and with ``echo`` passed on line by line;
    killed after ``timeout`` seconds, with every process it started (then the return code is
    negative)."""
    lines = []
    with subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, start_new_session=True) as proc:

        def kill() -> None:  # its own process group: packer's ansible and ssh go with it
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            for line in proc.stdout:  # type: ignore[union-attr]
                lines.append(line)
                if echo is not None:
                    echo(line.rstrip())
        except BaseException:  # an interrupt: nothing is left running
            kill()
            raise
        finally:
            timer.cancel()
            proc.wait(timeout=120)
    if proc.returncode < 0:
        lines.append(f"(killed after {timeout:.0f}s)\n")
    return subprocess.CompletedProcess(argv, proc.returncode, "".join(lines), "")


def split_image(image: str) -> tuple[str, str]:
    """``repo[:tag]`` -> (repo, tag); the tag defaults to ``latest`` (a registry's port is not one)."""
    repo, sep, tag = image.rpartition(":")
    if not sep or "/" in tag:
        return image, "latest"
    return repo, tag


# --- the inputs' digest --------------------------------------------------------------------------

def _tree(root: Path, top: str) -> list[Path]:
    return [p for p in sorted((root / top).rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo")]


def stamp(root: Path, settings: VagrantSettings, extra: list[str], files: list[Path] = ()) -> str:
    """A digest of what the image is made of: the sources the wheel is built from, the role and
    the template, the fleet file the role is given by default (the tree's fleet.toml), the role's
    variables, this Python's version (the wheels' ABI), ``files`` and ``extra``."""
    from fleet.backends.docker.image import _source_files, digest_files

    paths = [*_source_files(root), *_tree(root, "ansible"), template(root), root / "fleet.toml"]
    h = hashlib.sha256(digest_files(root, [p for p in paths if p.exists()]).encode())
    for path in files:
        h.update(b"\0" + path.read_bytes())
    for item in [settings.provider, json.dumps(role_vars(settings), sort_keys=True),
                 f"{sys.version_info.major}.{sys.version_info.minor}", *extra]:
        h.update(b"\0" + item.encode())
    return h.hexdigest()[:16]


def role_vars(settings: VagrantSettings) -> dict[str, Any]:
    return {**settings.vars, **IMAGE_ROLE_VARS}


# --- building ------------------------------------------------------------------------------------

def missing_tools(provider: str) -> list[str]:
    """The Debian packages (or pip extras) the build of ``provider`` needs that are not here."""
    from fleet.hosts import _ansible_tool

    tools = {"packer": "packer", "ssh-keygen": "openssh-client"}
    if provider == "libvirt":
        tools |= {"qemu-system-x86_64": "qemu-system-x86", "qemu-img": "qemu-utils",
                  "mmdebstrap": "mmdebstrap", "mkfs.ext4": "e2fsprogs", "vagrant": "vagrant"}
    missing = [package for tool, package in tools.items() if shutil.which(tool) is None]
    if _ansible_tool("ansible-playbook") is None:
        missing.append("ansible-core (pip install ansible-core)")
    return missing


def build(fleet_file: Path, settings: VagrantSettings, echo: Echo, force: bool = False) -> Built:
    """The lab-host image (provider docker) or box (libvirt) of the fleet ``fleet_file``; the
    tools a build needs are looked for once it is known to be needed."""
    begun = time.monotonic()
    if settings.provider == "docker":
        what, digest, skipped = _build_docker(settings, echo, force)
    else:
        what, digest, skipped = _build_libvirt(settings, echo, force)
    return Built(what, digest, time.monotonic() - begun, skipped)


def _require_tools(provider: str) -> None:
    missing = missing_tools(provider)
    if missing:
        raise LabImageError(f'building the lab-host image (provider "{provider}") needs: '
                            f"{', '.join(missing)}")


def _client():
    import docker
    import docker.errors

    try:
        client = docker.from_env(timeout=300)
        client.ping()
    except docker.errors.DockerException as exc:
        raise LabImageError(f'provider "docker": no Docker engine answers '
                            f"({str(exc).splitlines()[0]})") from None
    return client


def _image(client, name: str):
    import docker.errors

    try:
        return client.images.get(name)
    except docker.errors.ImageNotFound:
        return None


def image_stamp(client, name: str) -> str | None:
    """The stamp label of image ``name`` (None: no such image, or not one ``build`` made)."""
    found = _image(client, name)
    return None if found is None else (found.labels or {}).get(STAMP_LABEL)


def plain_image(client, root: Path, echo: Echo) -> str:
    """images/labhost built from the local base image (docker's layer cache makes it quick once
    built); its id."""
    from fleet.backends.docker.image import BASE_IMAGE

    if _image(client, BASE_IMAGE) is None:
        raise LabImageError(f"base image {BASE_IMAGE} not found: build it with images/build-base.sh "
                            "(nothing is pulled)")
    stream = client.api.build(path=str(root / "images" / "labhost"), tag=PLAIN_IMAGE, rm=True, forcerm=True,
                              pull=False, decode=True, buildargs={"BASE": BASE_IMAGE})
    for chunk in stream:
        if "error" in chunk:
            raise LabImageError(f"docker build of {PLAIN_IMAGE}: {chunk['error'].strip().splitlines()[-1]}")
        for line in chunk.get("stream", "").rstrip().splitlines():
            if line.strip() and not line.startswith((" ---> ", "Step ")):
                echo(f"  docker: {line}")
    return client.images.get(PLAIN_IMAGE).id


@contextlib.contextmanager
def build_network(client, tries: int = 20) -> Iterator[tuple[str, ipaddress.IPv4Network]]:
    """A bridge network of the build's own on a free private /28 (removed afterwards by id, with
    any container left on it): (its id, its subnet)."""
    import docker.errors
    from docker.types import IPAMConfig, IPAMPool

    taken = [ipaddress.ip_network(c["Subnet"]) for n in client.networks.list()
             for c in ((n.attrs.get("IPAM") or {}).get("Config") or []) if ":" not in c.get("Subnet", ":")]
    rng = random.Random(os.getpid() ^ time.time_ns())
    network, subnet = None, None
    for _ in range(tries):
        subnet = ipaddress.ip_network(f"10.{rng.randrange(100, 250)}.{rng.randrange(256)}."
                                      f"{rng.randrange(16) * 16}/28")
        if any(subnet.overlaps(t) for t in taken):
            continue
        ipam = IPAMConfig(pool_configs=[IPAMPool(subnet=str(subnet), gateway=str(subnet[1]))])
        try:
            network = client.networks.create(f"cpppo-labimage-{os.getpid()}-{time.monotonic_ns()}",
                                              driver="bridge", ipam=ipam, labels={BUILD_LABEL: "build"})
            break
        except docker.errors.APIError:
            continue  # taken meanwhile
    if network is None:
        raise LabImageError(f"no free private subnet for the build's network after {tries} tries")
    try:
        yield network.id, subnet
    finally:
        with contextlib.suppress(docker.errors.APIError):
            network.reload()
            for container in network.attrs.get("Containers") or {}:  # packer's, if it left one
                with contextlib.suppress(docker.errors.NotFound):
                    client.containers.get(container).remove(force=True, v=True)
            network.remove()


def _keypair(directory: Path) -> Path:
    key = directory / "id_build"
    proc = subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "cpppo-fleet-build",
                           "-f", str(key)], capture_output=True, text=True, timeout=60, check=False)
    if proc.returncode != 0:
        raise LabImageError(f"ssh-keygen failed: {proc.stderr.strip()}")
    return key


def _failed(what: str, proc: subprocess.CompletedProcess) -> LabImageError:
    lines = [line.strip() for line in proc.stdout.splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower() or "fatal:" in line]
    last = (errors or lines or ["no output"])[-1][:400]
    return LabImageError(f"{what} failed (exit {proc.returncode}): {last}")


def _build_docker(settings: VagrantSettings, echo: Echo, force: bool) -> tuple[str, str, bool]:
    from fleet.hosts import _ansible_tool

    root = source_root()
    repository, tag = split_image(settings.image)
    client = _client()
    try:
        plain = plain_image(client, root, echo)
        digest = stamp(root, settings, [plain])
        old = _image(client, settings.image)
        if not force and old is not None and (old.labels or {}).get(STAMP_LABEL) == digest:
            return f"image {settings.image}", digest, True
        _require_tools("docker")
        playbook = _ansible_tool("ansible-playbook")
        work = root / ".cache" / "labimage"
        work.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=work) as tmp, build_network(client) as (network, subnet):
            key = _keypair(Path(tmp))
            echo(f"packer build -only=docker.labhost: {settings.image} from {PLAIN_IMAGE}")
            args = docker_build_args(network=network, address=str(subnet[10]), key=key,
                                     ansible_playbook=playbook, repository=repository, tag=tag,
                                     docker_image=plain, role_vars=role_vars(settings), stamp=digest,
                                     root=root)
            proc = run_packer(args, Path(tmp), echo=lambda line: echo(f"  packer: {line}"))
            if proc.returncode != 0:
                raise _failed("packer build -only=docker.labhost", proc)
        if image_stamp(client, settings.image) != digest:
            raise LabImageError(f"packer built no image {settings.image} (see its output above)")
        if old is not None and old.id != client.images.get(settings.image).id:
            import docker.errors

            with contextlib.suppress(docker.errors.APIError):  # one a container still runs stays
                client.images.remove(old.id)
        return f"image {settings.image}", digest, False
    finally:
        client.close()


def box_listed(box: str) -> bool:
    """Whether Vagrant has box ``box`` for provider libvirt."""
    from fleet.vagrant import installed_boxes

    with tempfile.TemporaryDirectory() as tmp:
        return box in installed_boxes(Path(tmp), "libvirt")


def _build_libvirt(settings: VagrantSettings, echo: Echo, force: bool) -> tuple[str, str, bool]:
    from fleet.hosts import _ansible_tool
    from fleet.vagrant import run_vagrant

    root = source_root()
    key = Path(settings.key or "")
    public = Path(f"{key}.pub")
    if not key.is_file() or not public.is_file():
        raise LabImageError(f"[vagrant] key {str(key)!r}: the key pair (KEY and KEY.pub) is needed, "
                            "its public half goes into the disk (ssh-keygen -t ed25519 -f KEY)")
    vm_dir = Path(settings.vm_dir or root / ".cache" / "vm")
    output = vm_dir / "labhost"
    script = root / "images" / "build-vm-disk.sh"
    digest = stamp(root, settings, [settings.box], [script, public])
    stamp_file = output / "stamp"
    vm_dir.mkdir(parents=True, exist_ok=True)
    if (not force and stamp_file.is_file() and stamp_file.read_text().strip() == digest
            and shutil.which("vagrant") and box_listed(settings.box)):
        return f"box {settings.box}", digest, True
    _require_tools("libvirt")
    echo(f"images/build-vm-disk.sh {vm_dir}: the VM disk, offline (mmdebstrap)")
    disk = run_streamed(["bash", str(script), str(vm_dir), str(public)], vm_dir, None, DISK_TIMEOUT,
                        lambda line: echo(f"  disk: {line}"))
    if disk.returncode != 0:
        raise _failed("images/build-vm-disk.sh", disk)
    shutil.rmtree(output, ignore_errors=True)  # packer wants a fresh output folder
    from fleet.libvirt import kvm_boots  # "auto": KVM only where it boots the disk's kernel

    kvm = settings.driver == "kvm" or (settings.driver == "auto" and kvm_boots(vm_dir))
    accelerator = "kvm" if kvm else "tcg"
    echo(f"packer build -only=qemu.labhost ({accelerator}): {output}")
    playbook = _ansible_tool("ansible-playbook")
    args = qemu_build_args(vm_dir=vm_dir, key=key, output=output, ansible_playbook=playbook,
                           accelerator=accelerator, role_vars=role_vars(settings), root=root)
    proc = run_packer(args, vm_dir, echo=lambda line: echo(f"  packer: {line}"))
    if proc.returncode != 0:
        raise _failed("packer build -only=qemu.labhost", proc)
    box_file = output / BOX_FILE
    if not box_file.is_file():
        raise LabImageError(f"packer made no box {box_file}")
    echo(f"vagrant box add --force --name {settings.box} {box_file}")
    added = run_vagrant(vm_dir, ["box", "add", "--force", "--name", settings.box, str(box_file)],
                        lambda line: echo(f"  vagrant: {line}"), timeout=1800)
    if added.returncode != 0:
        raise _failed("vagrant box add", added)
    stamp_file.write_text(digest + "\n")
    return f"box {settings.box}", digest, False
