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
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from fleet.config import ConfigError
from fleet.hosts import is_multihost, load
from fleet.libvirt import POOL_ROOT, mac_address, network_xml
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
    ("vms = 2", 'vms = 2\nprovider = "libvirt"\nkey = "k"\ndriver = "xen"', "vagrant: key 'driver'"),
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
    assert [h.interface for h in libvirt.hosts] == ["eth0", "eth0"]  # the fleet's network is the only NIC
    text = vagrantfile("vmplant", libvirt.vms, project, "cpppo-vmplant-net")
    assert text.count("m.vm.box = 'cpppo-fleet/labhost'") == 2
    assert text.count("m.vm.box_check_update = false") == 2
    # the fleet's network is the management network (no other network, no NAT): one NIC per VM,
    # its address fixed by the network's DHCP from the MAC given here
    assert "private_network" not in text and "forward" not in text
    assert text.count("lv.management_network_name = 'cpppo-vmplant-net'") == 2
    assert text.count("lv.management_network_address = '10.77.0.0/24'") == 2
    assert text.count("lv.management_network_mode = \"none\"") == 2
    macs = [line.split("'")[1] for line in text.splitlines() if "management_network_mac" in line]
    assert macs == [mac_address("cpppo-vmplant-net", 0), mac_address("cpppo-vmplant-net", 1)]
    assert len(set(macs)) == 2 and all(m.startswith("52:54:00:") for m in macs)
    assert text.count("lv.storage_pool_name = 'cpppo-vmplant-net'") == 2
    assert text.count(f"lv.kernel = '{POOL_ROOT / 'cpppo-vmplant-net' / 'vmlinuz'}'") == 2
    assert text.count(f"lv.initrd = '{POOL_ROOT / 'cpppo-vmplant-net' / 'initrd.img'}'") == 2
    assert text.count("lv.driver = 'qemu'") == 2  # "auto" is decided at `up`; qemu until then
    assert f"config.ssh.private_key_path = '{tmp_path / 'k'}'" in text
    kvm = load(write(tmp_path, FLEET.replace("vms = 2", 'vms = 2\nprovider = "libvirt"\nkey = "k"\n'
                                                        'driver = "kvm"')))
    assert vagrantfile("vmplant", kvm.vms, project, "n").count("lv.driver = 'kvm'") == 2


def test_the_libvirt_network_gives_each_vm_its_address_by_its_mac():
    subnet = ipaddress.ip_network("10.77.0.0/24")
    hosts = [(mac_address("net", i), str(subnet[11 + i]), f"vm{i + 1}") for i in range(2)]
    root = ET.fromstring(network_xml("net", subnet, hosts))
    assert root.find("forward") is None  # isolated: no NAT, no routing out
    ip = root.find("ip")
    assert (ip.get("address"), ip.get("netmask")) == ("10.77.0.1", "255.255.255.0")
    assert ip.find("dhcp/range") is None  # only the VMs' MACs get an address
    assert [(h.get("mac"), h.get("ip"), h.get("name")) for h in ip.findall("dhcp/host")] == hosts
    assert mac_address("net", 0) == mac_address("net", 0) != mac_address("other", 0)


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


def _libvirt_fleet(tmp_path: Path, extra: str) -> Path:
    (tmp_path / "k").write_text("not a key\n")
    return write(tmp_path, FLEET.replace("vms = 2", f'vms = 2\nprovider = "libvirt"\nkey = "k"\n{extra}'))


def _up_fails_in_one_line(path: Path, where: str) -> None:
    proc = subprocess.run([str(CLI), "up", str(path)], capture_output=True, text=True, timeout=300,
                          check=False, stdin=subprocess.DEVNULL)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 1 and len(lines) == 1 and where in lines[0], proc.stdout + proc.stderr
    down = subprocess.run([str(CLI), "down", str(path)], capture_output=True, text=True, timeout=300,
                          check=False, stdin=subprocess.DEVNULL)
    assert down.returncode == 0, down.stderr
    assert not project_dir(path, "vmplant").exists()


def test_up_refuses_a_libvirt_fleet_without_the_box_kernel_in_one_line(tmp_path):
    path = _libvirt_fleet(tmp_path, 'vm_dir = "no-kernel-here"')
    _up_fails_in_one_line(path, f"[vagrant] vm_dir '{tmp_path / 'no-kernel-here'}': no vmlinuz or initrd.img")


@pytest.mark.skipif(shutil.which("vagrant") is None, reason="vagrant not installed (apt-get install vagrant)")
def test_up_refuses_a_missing_box_in_one_line_naming_the_build(tmp_path):
    boot = tmp_path / "boot"
    boot.mkdir()
    for name in ("vmlinuz", "initrd.img"):
        (boot / name).write_bytes(b"\0")
    path = _libvirt_fleet(tmp_path, 'vm_dir = "boot"\nbox = "cpppo-fleet/no-such-box"')
    _up_fails_in_one_line(path, f"[vagrant] box 'cpppo-fleet/no-such-box' not found among Vagrant's libvirt "
                                f"boxes (build and add it: `cpppo-fleet build {path}`)")


@pytest.mark.skipif(shutil.which("virsh") is None,
                    reason="virsh not installed (apt-get install libvirt-clients)")
def test_no_libvirtd_is_one_line(monkeypatch, tmp_path):
    from fleet import libvirt

    monkeypatch.setattr(libvirt, "URI", f"qemu+unix:///system?socket={tmp_path}/no-such-socket")
    with pytest.raises(libvirt.LibvirtError) as caught:
        libvirt.require_daemon()
    assert str(caught.value).startswith('provider "libvirt": no libvirtd answers on qemu+unix:///system')
    assert "\n" not in str(caught.value)


@pytest.mark.root
@pytest.mark.skipif(shutil.which("virsh") is None or not Path("/usr/sbin/libvirtd").exists(),
                    reason="needs libvirt (apt-get install libvirt-daemon-system libvirt-clients "
                           "dnsmasq-base)")
def test_the_libvirt_network_and_pool_are_made_and_removed_by_uuid(need_root, tmp_path):
    from fleet import libvirt
    from tests.lab_libvirt import _taken, libvirtd
    from tests.lab_targets import free_subnets

    boot = tmp_path / "boot"
    boot.mkdir()
    for name in libvirt.BOOT_FILES:
        (boot / name).write_bytes(name.encode())
    with libvirtd(tmp_path):
        subnet = next(free_subnets(_taken()))
        name = f"cpppo-unit-{tmp_path.name[-12:]}"
        hosts = [(mac_address(name, 0), str(subnet[11]), "vm1")]
        network = libvirt.ensure_network(name, subnet, hosts, None)
        pool = path = None
        try:
            assert libvirt.ensure_network(name, subnet, hosts, network) == network  # found by its uuid
            info = libvirt.virsh("net-info", network).stdout
            assert "Active:         yes" in info and name in info
            dumped = ET.fromstring(libvirt.virsh("net-dumpxml", network).stdout)
            assert dumped.find("forward") is None
            assert [(h.get("mac"), h.get("ip")) for h in dumped.findall("ip/dhcp/host")] == [hosts[0][:2]]
            with pytest.raises(libvirt.LibvirtError, match="exists that this fleet did not record"):
                libvirt.ensure_network(name, subnet, hosts, None)
            pool, path = libvirt.ensure_pool(name, None)
            assert path == libvirt.POOL_ROOT / name and libvirt.ensure_pool(name, pool) == (pool, path)
            libvirt.add_boot_files(boot, pool, path)
            volumes = libvirt.virsh("vol-list", pool).stdout
            assert all(str(path / f) in volumes for f in libvirt.BOOT_FILES), volumes
        finally:
            if pool:
                libvirt.remove_pool(pool, path)
            libvirt.remove_network(network)
        assert not libvirt.network_exists(network) and not libvirt.pool_exists(pool) and not path.exists()
