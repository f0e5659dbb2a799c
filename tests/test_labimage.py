"""``cpppo-fleet build FLEET_TOML`` without a full build (fleet.labimage): the packer command lines
(checked against the template by Debian's packer itself), the digest of the build's inputs, a
build skipped when the image carries the digest of what it would be built from, the streaming of
a tool's output, and the one-line errors (another backend, packer missing, the libvirt key
missing, the box ``up`` needs missing).  tests/test_fleet_vagrant_live.py builds for real."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fleet.hosts import load
from fleet.labimage import (
    BUILD_LABEL,
    PLAIN_IMAGE,
    STAMP_LABEL,
    build_network,
    docker_build_args,
    plain_image,
    qemu_build_args,
    role_vars,
    run_packer,
    run_streamed,
    split_image,
    stamp,
)
from fleet.vagrant import DEFAULT_IMAGE
from tests.lab_targets import ROOT, copy_sources

CLI = Path(sys.executable).parent / "cpppo-fleet"
needs_packer = pytest.mark.skipif(shutil.which("packer") is None,
                                  reason="packer not installed (apt-get install packer: Debian's 1.6.6)")

FLEET = """\
[fleet]
name = "vmplant"
backend = "vagrant"

[vagrant]
vms = 2
network = "10.77.0.0/24"
{extra}

[[device]]
kind = "enip"
count = 2
name = "plc{{n}}"
tags = ["SCADA=INT[10]"]
"""


def write(tmp_path: Path, extra: str = "", name: str = "plant.toml") -> Path:
    path = tmp_path / name
    path.write_text(FLEET.format(extra=extra))
    return path


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(CLI), *args], capture_output=True, text=True, timeout=timeout, check=False,
                          stdin=subprocess.DEVNULL, env=env)


def error_lines(proc: subprocess.CompletedProcess) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.strip()]


def test_the_default_image_is_the_built_one(tmp_path):
    lab = load(write(tmp_path))
    assert lab.vms.image == DEFAULT_IMAGE == "cpppo-fleet/labhost-built:latest"
    assert split_image(lab.vms.image) == ("cpppo-fleet/labhost-built", "latest")
    assert split_image("cpppo-fleet/lab") == ("cpppo-fleet/lab", "latest")
    assert split_image("localhost:5000/lab") == ("localhost:5000/lab", "latest")
    assert split_image("localhost:5000/lab:v2") == ("localhost:5000/lab", "v2")


def test_the_image_gets_the_fleets_vars_and_no_service(tmp_path):
    lab = load(write(tmp_path, 'vars = { cpppo_fleet_build_dir = "/b", cpppo_fleet_service = true }'))
    assert role_vars(lab.vms) == {"cpppo_fleet_build_dir": "/b", "cpppo_fleet_service": False,
                                  "cpppo_fleet_start": False}


@needs_packer
def test_every_variable_given_is_one_the_template_declares(tmp_path):
    """packer validate refuses a -var the template does not declare: the command lines built
    here, with every variable, are validated against the template by packer itself."""
    key = tmp_path / "id_build"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True, timeout=30)
    docker = docker_build_args(network="lab", address="10.42.0.10", key=key,
                               ansible_playbook="ansible-playbook", repository="cpppo-fleet/labhost-built",
                               tag="t1", fleet_file=tmp_path / "f.toml", interface="eth0",
                               build_dir=tmp_path / "b", docker_image="cpppo-fleet/labhost:x",
                               role_vars={"cpppo_fleet_service": False}, stamp="abc", root=ROOT)
    qemu = qemu_build_args(vm_dir=tmp_path / "vm", key=key, output=tmp_path / "out",
                           ansible_playbook="ansible-playbook",
                           accelerator="tcg", fleet_file=tmp_path / "f.toml", docker=True, up_timeout=900,
                           build_dir=tmp_path / "b", role_vars={"x": 1}, root=ROOT)
    assert docker[:2] == ["build", "-only=docker.labhost"] and qemu[:2] == ["build", "-only=qemu.labhost"]
    assert "role_vars={\"cpppo_fleet_service\": false}" in docker and "docker=true" in qemu
    for args in (docker, qemu):
        proc = run_packer(["validate", *args[2:]], tmp_path, timeout=120)
        assert proc.returncode == 0, (args, proc.stdout + proc.stderr)
    wrong = run_packer(["validate", *docker[2:-1], "-var", "no_such_variable=1", docker[-1]], tmp_path,
                       timeout=120)
    assert wrong.returncode != 0 and "no_such_variable" in wrong.stdout + wrong.stderr


def test_the_stamp_follows_every_input(tmp_path):
    tree = copy_sources(tmp_path / "src")
    for part in ("ansible", "packer"):
        shutil.copytree(ROOT / part, tree / part)
    lab = load(write(tmp_path))
    first = stamp(tree, lab.vms, ["plain-id"])
    assert first == stamp(tree, lab.vms, ["plain-id"])  # nothing changed: the same
    changed = {
        "plain image": stamp(tree, lab.vms, ["other-id"]),
        "vars": stamp(tree, dataclasses.replace(lab.vms, vars={"cpppo_fleet_up_timeout": 300}), ["plain-id"]),
        "provider": stamp(tree, dataclasses.replace(lab.vms, provider="libvirt"), ["plain-id"]),
    }
    role = tree / "ansible" / "roles" / "labhost" / "tasks" / "main.yml"
    role.write_text(role.read_text() + "\n# changed\n")
    changed["role"] = stamp(tree, lab.vms, ["plain-id"])
    source = tree / "fleet" / "labimage.py"
    source.write_text(source.read_text() + "\n# changed\n")
    changed["sources"] = stamp(tree, lab.vms, ["plain-id"])
    hcl = tree / "packer" / "cpppo-fleet.pkr.hcl"
    hcl.write_text(hcl.read_text() + "\n# changed\n")
    changed["template"] = stamp(tree, lab.vms, ["plain-id"])
    values = [first, *changed.values()]
    assert len(set(values)) == len(values), changed


def test_run_streamed_passes_lines_on_as_they_come_and_bounds_the_run(tmp_path):
    seen = []
    proc = run_streamed(["sh", "-c", "echo one; echo two >&2; sleep 60; echo never"], tmp_path, None, 2.0,
                        seen.append)
    assert seen[:2] == ["one", "two"] and "never" not in proc.stdout
    assert proc.returncode < 0 and "killed after 2s" in proc.stdout
    quiet = run_streamed(["sh", "-c", "echo out; echo err >&2; exit 3"], tmp_path, None, 30.0)
    assert quiet.returncode == 3 and quiet.stdout == "out\nerr\n" and quiet.stderr == ""


def test_build_refuses_another_backend_in_one_line(tmp_path):
    path = tmp_path / "local.toml"
    text = FLEET.format(extra="").replace('backend = "vagrant"', 'backend = "process"')
    path.write_text(text.split("[vagrant]")[0] + "[[device]]" + text.split("[[device]]")[1])
    proc = cli("build", str(path))
    lines = error_lines(proc)
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert "backend is 'process'" in lines[0] and 'backend = "vagrant"' in lines[0] and str(path) in lines[0]
    upstream = cli("build", "--upstream", str(write(tmp_path)))
    assert upstream.returncode == 2 and len(error_lines(upstream)) == 1, upstream.stderr


@pytest.mark.docker
def test_build_without_packer_says_so_in_one_line(docker_client, tmp_path):
    path = write(tmp_path)
    bare = tmp_path / "bin"
    bare.mkdir()
    for tool in ("ssh-keygen", "vagrant"):
        if shutil.which(tool):
            (bare / tool).symlink_to(shutil.which(tool))
    proc = cli("build", "--quiet", str(path), env={**os.environ, "PATH": str(bare)})
    lines = error_lines(proc)
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr
    assert 'provider "docker"' in lines[0] and "needs: packer" in lines[0], lines[0]


def test_libvirt_build_needs_the_key_pair(tmp_path):
    path = write(tmp_path, 'provider = "libvirt"\nkey = "no-such-key"\nvm_dir = "vm"')
    proc = cli("build", str(path))
    lines = error_lines(proc)
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr
    assert str(tmp_path / "no-such-key") in lines[0] and "KEY.pub" in lines[0], lines[0]
    assert not (tmp_path / "vm").exists()  # refused before anything was made


def test_up_names_the_build_when_the_box_is_missing(tmp_path):
    if shutil.which("vagrant") is None:
        pytest.skip("vagrant not installed")
    key = tmp_path / "lab-key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True, timeout=30)
    path = write(tmp_path, 'provider = "libvirt"\nkey = "lab-key"\nbox = "cpppo-fleet/no-such-box"')
    proc = cli("up", str(path))
    lines = error_lines(proc)
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr
    # the box (or, where up checks them first, its kernel and initrd in vm_dir) is missing
    assert "not found" in lines[0] or "no vmlinuz" in lines[0], lines[0]
    assert f"`cpppo-fleet build {path}`" in lines[0], lines[0]
    down = cli("down", str(path))
    assert down.returncode == 0, down.stderr
    assert not (tmp_path / ".fleet" / "vmplant" / "vagrant").exists()


@pytest.mark.docker
def test_a_build_with_nothing_changed_is_skipped(docker_client, tmp_path):
    """An image that carries the stamp of what the build would make is up to date: no packer run
    (packer is not even on PATH), the image left as it is; one whose stamp differs is not."""
    import docker.errors

    image = f"cpppo-fleet/labhost-test:{os.getpid()}"
    path = write(tmp_path, f'image = "{image}"\nvars = {{ cpppo_fleet_up_timeout = 77 }}')
    settings = load(path).vms
    plain = plain_image(docker_client, ROOT, lambda line: None)
    expected = stamp(ROOT, settings, [plain])
    bare = tmp_path / "bin"  # no packer here: a skipped build must not need it
    bare.mkdir()
    made = []
    try:
        for label in ("stale", expected):
            context = tmp_path / label
            context.mkdir()
            (context / "Dockerfile").write_text(f"FROM {PLAIN_IMAGE}\nLABEL {STAMP_LABEL}={label}\n")
            made.append(docker_client.images.build(path=str(context), tag=image, pull=False, rm=True)[0].id)
            if label == "stale":
                stale = cli("build", str(path), env={**os.environ, "PATH": str(bare)})
                assert stale.returncode == 1 and "needs: packer" in stale.stderr, stale.stdout + stale.stderr
                continue
            proc = cli("build", str(path), env={**os.environ, "PATH": str(bare)})
            assert proc.returncode == 0, proc.stdout + proc.stderr
            assert f"image {image} is up to date (stamp {expected}" in proc.stdout, proc.stdout
            assert "packer:" not in proc.stderr, proc.stderr
            assert docker_client.images.get(image).id == made[-1]
    finally:
        for image_id in reversed(made):
            try:
                docker_client.images.remove(image_id, force=True)
            except docker.errors.NotFound:
                pass


@pytest.mark.docker
def test_the_build_network_goes_by_id(docker_client):
    with build_network(docker_client) as (network_id, subnet):
        network = docker_client.networks.get(network_id)
        assert network.attrs["Labels"] == {BUILD_LABEL: "build"}
        assert network.attrs["IPAM"]["Config"][0]["Subnet"] == str(subnet) and subnet.is_private
    import docker.errors

    with pytest.raises(docker.errors.NotFound):
        docker_client.networks.get(network_id)


def test_the_role_vars_reach_packer_as_json(tmp_path):
    lab = load(write(tmp_path, 'vars = { cpppo_fleet_up_timeout = 300, cpppo_fleet_build_dir = "/b" }'))
    args = docker_build_args(network="n", address="10.0.0.10", key=tmp_path / "k", ansible_playbook="ap",
                             repository="r", tag="t", role_vars=role_vars(lab.vms), root=ROOT)
    given = dict(a.split("=", 1) for a in args if "=" in a and not a.startswith("-only"))
    assert json.loads(given["role_vars"]) == {"cpppo_fleet_up_timeout": 300, "cpppo_fleet_build_dir": "/b",
                                             "cpppo_fleet_service": False, "cpppo_fleet_start": False}
    assert given["controller_python"] == sys.executable
    assert args[-1] == str(ROOT / "packer" / "cpppo-fleet.pkr.hcl")
