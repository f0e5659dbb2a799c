"""fleet.toml's lab hosts ([hosts], [[host]]): the shards (by count and by group), their fleet
files, the one-line errors, an Ansible inventory as the source of the hosts, and the commands'
answers for a host that cannot be reached (bounded, the host's devices ``unknown``)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fleet.config import ConfigError, parse
from fleet.hosts import is_multihost, load

CLI = Path(sys.executable).parent / "cpppo-fleet"

HOSTS = """\
[fleet]
name = "multi"

[hosts]
key = "lab-key"
interface = "eth1"

[[host]]
name = "lab1"
address = "192.0.2.11"
address_pool = "10.9.0.128/28"

[[host]]
name = "lab2"
address = "192.0.2.12"
user = "debian"
address_pool = "10.9.0.144/28"

[[host]]
name = "lab3"
address = "192.0.2.13"
address_pool = "10.9.0.160/28"
interface = "ens4"
groups = [1]
"""

DEVICES = """
[[device]]
kind = "enip"
count = 5
name = "plc{n}"
tags = ["SCADA=INT[10]"]
identity = { serial_number = "0x5100{n:04}" }

[[device]]
kind = "modbus"
count = 3
name = "pump{n}"
registers = ["40001-40010=7"]

[[fault]]
devices = "plc5"
kind = "latency"
arg = "100ms"
at = "10s"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "fleet.toml"
    path.write_text(text)
    return path


def test_shards_by_count_and_by_group(tmp_path):
    lab = load(write(tmp_path, HOSTS + DEVICES))
    where = {d.name: (s.host.name, d.host) for s in lab.shards for d in s.plan.devices}
    assert where == {"plc1": ("lab1", "10.9.0.129"), "plc2": ("lab1", "10.9.0.130"),
                     "plc3": ("lab1", "10.9.0.131"), "plc4": ("lab2", "10.9.0.145"),
                     "plc5": ("lab2", "10.9.0.146"), "pump1": ("lab3", "10.9.0.161"),
                     "pump2": ("lab3", "10.9.0.162"), "pump3": ("lab3", "10.9.0.163")}
    lab2 = lab.shard("lab2")
    # the split group keeps its devices' n: names and identities patterned on n are unchanged
    assert dict(lab2.plan.device("plc4").identity)["serial_number"] == 0x51000004
    assert lab2.plan.fleet.addressing == "alias" and lab2.plan.fleet.interface == "eth1"
    assert lab.shard("lab3").plan.fleet.interface == "ens4"
    assert [r.devices for r in lab2.plan.faults] == ["plc5"] and not lab.shard("lab1").plan.faults
    assert lab.shard("lab1").host.key == str((tmp_path / "lab-key").resolve())
    assert lab.shard("lab2").host.user == "debian"
    # a shard's fleet file is an ordinary fleet file whose plan is the shard's
    again = parse(lab2.toml, source=tmp_path / "shard.toml")
    assert not again.multihost and [g.count for g in again.groups] == [2]


def test_the_same_file_gives_the_same_shards(tmp_path):
    path = write(tmp_path, HOSTS + DEVICES)
    assert [s.toml for s in load(path).shards] == [s.toml for s in load(path).shards]


@pytest.mark.parametrize("change, where", [
    (("[[host]]\nname = \"lab1\"", "[[host]]\nname = \"lab 1\""), "host[0]: key 'name'"),
    (("address = \"192.0.2.12\"\n", ""), "host[1]: key 'address': missing"),
    (("address_pool = \"10.9.0.144/28\"", "address_pool = \"10.9.0.128/29\""), "overlap"),
    (("address_pool = \"10.9.0.144/28\"", "address_pool = \"10.9.0.144/32\""),
     "host[1]: key 'address_pool': address pool exhausted"),
    (("groups = [1]", "groups = [7]"), "host[2]: key 'groups': 7 is not a [[device]] index"),
    (("groups = [1]", "groups = [1]\nport = 70000"), "host[2]: key 'port'"),
    (("groups = [1]", "group = [1]"), "host[2]: key 'group': unknown key"),
    (("interface = \"eth1\"", "interface = \"eth1\"\nplaybook = \"x\""), "hosts: key 'playbook'"),
    (("[fleet]\nname = \"multi\"", "[fleet]\nname = \"multi\"\nbackend = \"docker\"\n"
      "address_pool = \"172.30.0.0/24\""), "fleet: key 'backend': a multi-host fleet runs the process"),
])
def test_bad_hosts_are_one_line_errors(tmp_path, change, where):
    old, new = change
    text = (HOSTS + DEVICES).replace(old, new, 1)
    assert text != HOSTS + DEVICES
    with pytest.raises(ConfigError) as caught:
        load(write(tmp_path, text))
    message = str(caught.value)
    assert where in message and "\n" not in message, message
    proc = subprocess.run([str(CLI), "validate", str(tmp_path / "fleet.toml")], capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and where in proc.stderr, proc.stderr


def test_a_group_no_host_runs_and_a_host_with_no_devices_are_refused(tmp_path):
    two = ('[fleet]\nname = "two"\n\n'
           '[[host]]\nname = "a"\naddress = "192.0.2.1"\naddress_pool = "10.9.0.0/28"\ngroups = [0]\n\n'
           '[[host]]\nname = "b"\naddress = "192.0.2.2"\naddress_pool = "10.9.0.16/28"\ngroups = [1]\n')
    with pytest.raises(ConfigError, match=r"host: key 'groups': device\[2\] runs on no host"):
        load(write(tmp_path, two + DEVICES + '\n[[device]]\nkind = "modbus"\nname = "meter{n}"\n'
                                            'registers = ["40001=1"]\n'))
    few = (HOSTS + DEVICES).replace("count = 5", "count = 1")
    with pytest.raises(ConfigError, match="host 'lab2' gets no devices"):
        load(write(tmp_path, few))


def test_an_inventory_names_the_hosts(tmp_path):
    beside = Path(sys.executable).parent / "ansible-inventory"
    if shutil.which("ansible-inventory") is None and not beside.exists():
        pytest.skip("ansible-inventory not found (ansible-core is a test extra)")
    (tmp_path / "lab.ini").write_text(
        "[labhosts]\n"
        "lab1 ansible_host=192.0.2.11 ansible_user=debian cpppo_fleet_address_pool=10.9.1.0/28\n"
        "lab2 ansible_host=192.0.2.12 ansible_port=2222\n"
        "[other]\nfar ansible_host=192.0.2.99\n")
    text = ("[fleet]\nname = \"inv\"\n\n[hosts]\ninventory = \"lab.ini\"\n\n"
            "[[host]]\nname = \"lab2\"\naddress_pool = \"10.9.1.16/28\"\n" + DEVICES)
    lab = load(write(tmp_path, text))
    assert [(h.name, h.address, h.user, h.port, h.address_pool) for h in lab.hosts] == [
        ("lab2", "192.0.2.12", "root", 2222, ("10.9.1.16/28",)),
        ("lab1", "192.0.2.11", "debian", 22, ("10.9.1.0/28",))]
    with pytest.raises(ConfigError, match="hosts: key 'inventory': no inventory file"):
        load(write(tmp_path, text.replace("lab.ini", "missing.ini")))


def test_plan_and_status_of_unreachable_hosts(tmp_path):
    """Hosts that do not answer (here, on loopback: a port that refuses, and one that accepts and
    never speaks SSH): status still answers within its bounds, each host ``unreachable`` and
    every device ``unknown``."""
    refusing = socket.socket()
    refusing.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    silent = socket.create_server(("127.0.0.1", 0))  # accepts (the backlog), never answers
    try:
        ports = [refusing.getsockname()[1], silent.getsockname()[1], refusing.getsockname()[1]]
        text = HOSTS.replace("[hosts]", "[hosts]\ntimeout = 4") + DEVICES
        for i, port in enumerate(ports, start=11):
            text = text.replace(f'address = "192.0.2.{i}"', f'address = "127.0.0.1"\nport = {port}')
        path = write(tmp_path, text)
        assert is_multihost(path)
        plan = subprocess.run([str(CLI), "plan", str(path)], capture_output=True, text=True, timeout=60,
                              check=False)
        assert plan.returncode == 0, plan.stderr
        assert plan.stdout.splitlines()[0].split() == ["device", "host", "kind", "address", "worker"]
        assert plan.stdout.splitlines()[4].split()[:2] == ["plc4", "lab2"]
        begun = time.monotonic()
        proc = subprocess.run([str(CLI), "status", str(path), "--json"], capture_output=True, text=True,
                              timeout=120, check=False)
        took = time.monotonic() - begun
    finally:
        refusing.close()
        silent.close()
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    assert {h["state"] for h in report["hosts"].values()} == {"unreachable"}, report["hosts"]
    assert {d["state"] for d in report["devices"]} == {"unknown"} and report["total"] == 8
    assert "lab1, lab2, lab3 unreachable" in report["summary"]
    assert "no answer within 4s" in report["hosts"]["lab2"]["error"], report["hosts"]["lab2"]
    print(f"status of 3 unreachable hosts: {took:.1f}s")


def test_the_readme_example_shards(tmp_path):
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("## Lab hosts and multi-host fleets", 1)[1].split("\n## ", 1)[0]
    example = section.split("```toml\n", 1)[1].split("```", 1)[0]
    third = '\n[[device]]\nkind = "enip"\ncount = 2\nname = "line{n:03}"\ntags = ["SCADA=INT[10]"]\n'
    lab = load(write(tmp_path, '[fleet]\nname = "plant"\n\n' + example + DEVICES + third))
    assert {d.name: s.host.name for s in lab.shards for d in s.plan.devices} == {
        **{f"plc{n}": "lab1" for n in range(1, 6)}, **{f"pump{n}": "lab1" for n in range(1, 4)},
        "line001": "lab2", "line002": "lab2"}
    assert lab.shard("lab2").plan.device("line002").host == "10.42.0.194"
