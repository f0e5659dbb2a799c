"""The labhost Ansible role applied for real, over SSH, to Debian bookworm lab hosts (systemd
containers with sshd on a private network this module makes), then checked with testinfra on
each host and with third-party clients (pycomm3, pymodbus) from outside the hosts.

The role runs from a copy of the sources (which it must not write into), with a fleet file of
each host's own (alias addressing on eth0, so the devices are reachable from this machine).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from fleet.config import load
from fleet.plan import Plan, expand
from tests.lab_targets import (
    ROOT,
    SSH_OPTIONS,
    LabHost,
    PlaybookRun,
    ansible_playbook_command,
    build_labhost_image,
    copy_sources,
    lab_fleet_toml,
    lab_network,
    remove_labhosts,
    run_playbook,
    ssh_keypair,
    start_labhosts,
    write_inventory,
)

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(1800)]

HOME = "/opt/cpppo-fleet"
VENV = f"{HOME}/venv"
START = "ExecMainStartTimestampMonotonic"


@dataclass
class Lab:
    hosts: list[LabHost]
    inventory: Path
    source: Path
    fleet_files: dict[str, Path]
    plans: dict[str, Plan]
    key: Path
    extra: dict[str, str]
    first: PlaybookRun

    def apply(self) -> PlaybookRun:
        return run_playbook(self.inventory, self.extra)

    def testinfra(self, host: LabHost):
        import testinfra

        return testinfra.get_host(f"ssh://root@{host.address}", ssh_identity_file=str(self.key),
                                  ssh_extra_args=" ".join(SSH_OPTIONS))


def _snapshot(tree: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(tree)): (p.stat().st_mtime_ns, p.stat().st_size) for p in tree.rglob("*")}


@pytest.fixture(scope="module")
def lab(docker_client, tmp_path_factory):
    if not ansible_playbook_command():
        pytest.skip("ansible-playbook not found (ansible-core is a test extra: pip install -e '.[test]')")
    if shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
        pytest.skip("needs OpenSSH's client (apt-get install openssh-client)")
    work = tmp_path_factory.mktemp("lab")
    source = copy_sources(work / "source")
    key = ssh_keypair(work)
    build_labhost_image(docker_client)
    with lab_network(docker_client) as network:
        hosts = start_labhosts(docker_client, network, 2, key.with_suffix(".pub"))
        try:
            fleet_files, plans, hostvars = {}, {}, {}
            for index, host in enumerate(hosts):
                path = work / f"{host.name}.toml"
                path.write_text(lab_fleet_toml(host.name, network.pool(index)))
                fleet_files[host.name] = path
                plans[host.name] = expand(load(path))
                hostvars[host.name] = {"cpppo_fleet_fleet_file": str(path), "cpppo_fleet_interface": "eth0"}
            inventory = write_inventory(work / "inventory.ini", hosts, key, hostvars)
            extra = {"cpppo_fleet_source": str(source),
                     "cpppo_fleet_build_dir": str(ROOT / ".cache" / "labhost")}
            before = _snapshot(source)
            first = run_playbook(inventory, extra)
            assert _snapshot(source) == before, "the role wrote into its source folder"
            yield Lab(hosts, inventory, source, fleet_files, plans, key, extra, first)
        finally:
            remove_labhosts(hosts)


def test_role_applies_to_fresh_hosts(lab):
    assert lab.first.returncode == 0, lab.first.output[-6000:]
    recap = lab.first.recap()
    assert set(recap) == {h.name for h in lab.hosts}, lab.first.output[-3000:]
    for name, counts in recap.items():
        assert counts["failed"] == 0 and counts["unreachable"] == 0 and counts["changed"] > 0, (name, counts)
    print(f"role applied to {len(lab.hosts)} fresh hosts in {lab.first.seconds:.0f}s")


def test_testinfra_sees_the_installed_running_fleet(lab):
    for host in lab.hosts:
        target = lab.testinfra(host)
        assert target.file(f"{VENV}/bin/cpppo-fleet").is_file
        assert target.run(f"{VENV}/bin/python -c 'import cpppo, fleet'").rc == 0
        assert target.pip("cpppo-fleet", pip_path=f"{VENV}/bin/pip").is_installed
        assert not target.exists("gcc")  # nothing is compiled on a lab host
        unit = target.service("cpppo-fleet")
        assert unit.is_enabled and unit.is_running
        assert target.file(f"{HOME}/fleet.toml").content_string == lab.fleet_files[host.name].read_text()
        status = target.run(f"{VENV}/bin/cpppo-fleet status {HOME}/fleet.toml --state-dir {HOME}/state "
                            "--json")
        assert status.rc == 0, status.stdout + status.stderr
        report = json.loads(status.stdout)
        assert report["healthy"] == report["total"] == 4
        addresses = set(target.interface("eth0").addresses)
        assert {d.host for d in lab.plans[host.name].devices} <= addresses
        for device in report["devices"]:
            assert target.socket(f"tcp://{device['endpoint']}").is_listening, device


def test_devices_answer_third_party_clients_from_outside_the_host(lab):
    from pycomm3 import LogixDriver
    from pymodbus.client import ModbusTcpClient

    for host in lab.hosts:
        devices = lab.plans[host.name].devices
        plc = next(d for d in devices if d.kind == "enip")
        pump = next(d for d in devices if d.kind == "modbus")
        with LogixDriver(f"{plc.host}:{plc.port}") as driver:
            assert driver.write("SCADA[3]", 33).error is None
            assert driver.read("SCADA[3]").value == 33
        client = ModbusTcpClient(pump.host, port=pump.port, timeout=5)
        assert client.connect(), f"no Modbus/TCP at {pump.host}:{pump.port} on {host.name}"
        try:
            reply = client.read_holding_registers(0, count=3)
            assert not reply.isError() and reply.registers == [7, 7, 7]
        finally:
            client.close()


def test_second_apply_changes_nothing(lab):
    again = lab.apply()
    assert again.returncode == 0, again.output[-4000:]
    for name, counts in again.recap().items():
        assert counts["changed"] == 0, (name, again.changed_tasks())
    print(f"second application: {again.seconds:.0f}s (first {lab.first.seconds:.0f}s)")


def test_changed_sources_and_fleet_file_are_reinstalled_and_restarted(lab):
    host = lab.hosts[0]
    target = lab.testinfra(host)
    started = target.run(f"systemctl show -p {START} --value cpppo-fleet").stdout
    marker = "# changed by test_lab_ansible\n"
    init = lab.source / "fleet" / "__init__.py"
    init.write_text(init.read_text() + marker)
    fleet_file = lab.fleet_files[host.name]
    fleet_file.write_text(fleet_file.read_text().replace("40001-40010=7", "40001-40010=9"))
    run = lab.apply()
    assert run.returncode == 0, run.output[-4000:]
    recap = run.recap()
    assert recap[host.name]["changed"] > 0 and recap[lab.hosts[1].name]["changed"] > 0
    assert any("Restart cpppo-fleet" in line for line in run.changed_tasks()), run.changed_tasks()
    installed = target.run(f"{VENV}/bin/python -c 'import fleet; print(open(fleet.__file__).read())'")
    assert installed.stdout.rstrip("\n").endswith(marker.rstrip("\n"))
    assert target.run(f"systemctl show -p {START} --value cpppo-fleet").stdout != started
    assert target.service("cpppo-fleet").is_running

    from pymodbus.client import ModbusTcpClient

    pump = next(d for d in lab.plans[host.name].devices if d.kind == "modbus")
    client = ModbusTcpClient(pump.host, port=pump.port, timeout=5)
    assert client.connect()
    try:
        assert client.read_holding_registers(0, count=1).registers == [9]
    finally:
        client.close()
    settled = lab.apply()
    assert all(c["changed"] == 0 for c in settled.recap().values()), settled.changed_tasks()
