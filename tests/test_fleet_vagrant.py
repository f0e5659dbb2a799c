"""``backend = "vagrant"`` without machines: the ``[vagrant]`` table and its one-line errors, the
VMs as lab hosts (addresses, pools, shards), the generated Vagrant project (``vagrant
validate`` where vagrant is installed), the hosts read back from ``vagrant ssh-config``, and
``up``'s refusal of a missing lab-host image.  tests/test_fleet_vagrant_live.py brings a fleet
up on machines for real."""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fleet.config import ConfigError
from fleet.hosts import is_multihost, load
from fleet.vagrant import network_name, project_dir, read_ssh_config, vagrantfile

CLI = Path(sys.executable).parent / "cpppo-fleet"

FLEET = """\
[fleet]
name = "vmplant"
backend = "vagrant"

[vagrant]
vms = 2
network = "10.77.0.0/24"

[[device]]
kind = "enip"
count = 3
name = "plc{n}"
tags = ["SCADA=INT[10]"]

[[device]]
kind = "modbus"
count = 3
name = "pump{n}"
registers = ["40001-40010=7"]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "plant.toml"
    path.write_text(text)
    return path


def validate(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(CLI), "validate", str(path)], capture_output=True, text=True, timeout=60,
                          check=False, stdin=subprocess.DEVNULL)


def test_each_vm_is_a_lab_host_with_its_own_addresses(tmp_path):
    path = write(tmp_path, FLEET)
    assert is_multihost(path)
    lab = load(path)
    assert [h.name for h in lab.hosts] == ["vm1", "vm2"]
    assert [h.address for h in lab.hosts] == ["10.77.0.11", "10.77.0.12"]  # planned, before `up`
    assert {h.interface for h in lab.hosts} == {"eth1"} and {h.user for h in lab.hosts} == {"root"}
    assert [h.key for h in lab.hosts] == [str(project_dir(path, "vmplant") / "id_fleet")] * 2
    assert [[d.name for d in s.plan.devices] for s in lab.shards] == [["plc1", "plc2", "plc3"],
                                                                      ["pump1", "pump2", "pump3"]]
    upper = ipaddress.ip_network("10.77.0.128/25")
    ranges = []
    for shard in lab.shards:
        assert shard.plan.fleet.backend == "process" and 'backend = "process"' in shard.toml
        assert "[vagrant]" not in shard.toml
        low, high = (ipaddress.ip_address(a) for a in shard.host.address_pool[0].split("-"))
        ranges.append((low, high))
        for device in shard.plan.devices:
            address = ipaddress.ip_address(device.host)
            assert low <= address <= high and address in upper
    assert ranges[0][1] < ranges[1][0]  # the VMs' device addresses do not overlap
    assert validate(path).returncode == 0
    plan = subprocess.run([str(CLI), "plan", str(path)], capture_output=True, text=True, timeout=60,
                          check=False)
    assert plan.returncode == 0 and plan.stdout.splitlines()[4].split()[:2] == ["pump1", "vm2"], plan.stdout


def test_devices_per_vm_makes_as_many_vms_as_needed(tmp_path):
    lab = load(write(tmp_path, FLEET.replace("vms = 2", "devices_per_vm = 4")))
    assert [len(s.plan.devices) for s in lab.shards] == [3, 3] and lab.vms.vms == 2
    lab = load(write(tmp_path, FLEET.replace("vms = 2", "devices_per_vm = 1")))
    assert [h.name for h in lab.hosts] == [f"vm{i}" for i in range(1, 7)]
    lab = load(write(tmp_path, FLEET.replace("vms = 2\n", "")))
    assert [h.name for h in lab.hosts] == ["vm1"] and lab.vms.provider == "docker"


@pytest.mark.parametrize("old, new, where", [
    ("vms = 2", "vms = 0", "vagrant: key 'vms': must be at least 1, got 0"),
    ("vms = 2", "vms = 7", "vagrant: key 'vms': 7 VMs for 6 devices"),
    ("vms = 2", "devices_per_vm = -3", "vagrant: key 'devices_per_vm': must be at least 1"),
    ("vms = 2", "vms = 2\ndevices_per_vm = 3", "vagrant: key 'devices_per_vm': give vms or devices_per_vm"),
    ("vms = 2", 'vms = 2\nprovider = "virtualbox"', "vagrant: key 'provider'"),
    ("vms = 2", "vms = 2\nboxes = 1", "vagrant: key 'boxes': unknown key"),
    ('network = "10.77.0.0/24"', 'network = "8.8.8.0/24"', "vagrant: key 'network': needs a private"),
    ('network = "10.77.0.0/24"', 'network = "10.77.0.1/24"', "vagrant: key 'network'"),
    ('network = "10.77.0.0/24"', 'network = "10.77.0.0/28"', "vagrant: key 'vms': 2 VMs do not fit"),
    ("count = 3\nname = \"plc", "count = 200\nname = \"plc",
     "vagrant: key 'network': address pool exhausted"),
    ("vms = 2", 'vms = 2\nprovider = "libvirt"', "vagrant: key 'key': provider \"libvirt\" needs the key"),
    ('backend = "vagrant"', 'backend = "vagrnat"', "fleet: key 'backend'"),
    ('backend = "vagrant"\n', "", "vagrant: [vagrant] is for backend = \"vagrant\", not 'process'"),
    ("[vagrant]", '[[host]]\nname = "x"\naddress = "192.0.2.1"\naddress_pool = "10.9.0.0/28"\n\n[vagrant]',
     "host: backend = \"vagrant\" makes its own hosts"),
])
def test_bad_vagrant_keys_are_one_line_errors(tmp_path, old, new, where):
    text = FLEET.replace(old, new, 1)
    assert text != FLEET
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert where in str(caught.value) and str(path) in str(caught.value), str(caught.value)
    proc = validate(path)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and where in proc.stderr, proc.stderr


def test_the_generated_project_has_a_machine_per_vm(tmp_path):
    path = write(tmp_path, FLEET)
    lab = load(path)
    project = project_dir(path, "vmplant")
    text = vagrantfile("vmplant", lab.vms, project, "cpppo-vmplant-net")
    assert [line.strip() for line in text.splitlines() if "config.vm.define" in line] == [
        "config.vm.define 'vm1' do |m|", "config.vm.define 'vm2' do |m|"]
    assert "name: 'cpppo-vmplant-net', ip: '10.77.0.11'" in text and "ip: '10.77.0.12'" in text
    assert "d.image = 'cpppo-fleet/labhost-built:latest'" in text and "d.pull = false" in text
    assert f"'{project / 'id_fleet'}.pub:/root/.ssh/authorized_keys:ro'" in text
    assert "provision" not in text.replace("provisions them", "") and "http" not in text
    libvirt = load(write(tmp_path, FLEET.replace("vms = 2", 'vms = 2\nprovider = "libvirt"\nkey = "k"')))
    text = vagrantfile("vmplant", libvirt.vms, project, "cpppo-vmplant-net")
    assert "m.vm.box = 'cpppo-fleet/labhost'" in text and text.count("libvirt__forward_mode: \"none\"") == 2
    assert "lv.management_network_mode = \"none\"" in text
    assert "lv.management_network_address = '10.77.1.0/24'" in text
    assert f"config.ssh.private_key_path = '{tmp_path / 'k'}'" in text


@pytest.mark.skipif(shutil.which("vagrant") is None, reason="vagrant not installed (apt-get install vagrant)")
@pytest.mark.parametrize("provider", ["docker", "libvirt"])
def test_vagrant_validates_the_generated_project(tmp_path, provider, monkeypatch):
    from fleet.vagrant import run_vagrant

    key = tmp_path / "k"
    key.write_text("not a key\n")
    lab = load(write(tmp_path, FLEET.replace("vms = 2", f'vms = 2\nprovider = "{provider}"\nkey = "k"')))
    project = project_dir(tmp_path / "plant.toml", "vmplant")
    project.mkdir(parents=True)
    (project / "Vagrantfile").write_text(vagrantfile("vmplant", lab.vms, project, "cpppo-vmplant-net"))
    monkeypatch.setenv("VAGRANT_HOME", str(tmp_path / "home"))
    proc = run_vagrant(project, ["validate"], timeout=180)
    assert proc.returncode == 0 and "validated successfully" in proc.stdout, proc.stdout + proc.stderr


SSH_CONFIG = """\
Host vm1
  HostName 172.17.0.5
  User root
  Port 22
  UserKnownHostsFile /dev/null
  IdentityFile /k/id_fleet
  IdentityFile /k/other

Host vm2
  HostName 172.17.0.6
  User root
  Port 2200
  IdentityFile "/k/id fleet"
"""


def test_the_hosts_come_from_vagrant_ssh_config_once_up(tmp_path):
    assert read_ssh_config(SSH_CONFIG)["vm2"] == {"hostname": "172.17.0.6", "user": "root", "port": "2200",
                                                  "identityfile": "/k/id fleet"}
    path = write(tmp_path, FLEET)
    project = project_dir(path, "vmplant")
    project.mkdir(parents=True)
    (project / "ssh-config").write_text(SSH_CONFIG)
    lab = load(path)
    assert [(h.address, h.port, h.key) for h in lab.hosts] == [("172.17.0.5", 22, "/k/id_fleet"),
                                                               ("172.17.0.6", 2200, "/k/id fleet")]
    # the devices stay at their addresses on the fleet's network
    assert lab.shard("vm1").plan.devices[0].host == "10.77.0.128"


@pytest.mark.docker
def test_up_refuses_a_missing_lab_host_image_in_one_line(docker_client, tmp_path):
    path = write(tmp_path, FLEET.replace("vms = 2", 'vms = 2\nimage = "cpppo-fleet/no-such-labhost:none"'))
    proc = subprocess.run([str(CLI), "up", str(path)], capture_output=True, text=True, timeout=120,
                          check=False, stdin=subprocess.DEVNULL)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "image 'cpppo-fleet/no-such-labhost:none' not found here" in lines[0], \
        proc.stderr
    assert f"`cpppo-fleet build {path}` makes it" in lines[0], lines[0]
    made = network_name("vmplant", project_dir(path, "vmplant"))
    assert not [n for n in docker_client.networks.list(names=[made]) if n.name == made]  # refused first
    down = subprocess.run([str(CLI), "down", str(path)], capture_output=True, text=True, timeout=120,
                          check=False, stdin=subprocess.DEVNULL)
    assert down.returncode == 0, down.stderr
    assert not project_dir(path, "vmplant").exists()


def test_the_readme_example_validates(tmp_path):
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split('### Fleets on machines the fleet makes: `backend = "vagrant"`', 1)[1]
    example = section.split("```toml\n", 1)[1].split("```", 1)[0]
    devices = FLEET.split("[[device]]", 1)[1]
    lab = load(write(tmp_path, example + "\n[[device]]" + devices))
    assert [(h.name, h.address) for h in lab.hosts] == [("vm1", "10.77.0.11"), ("vm2", "10.77.0.12")]
    assert lab.vms.provider == "docker"
