"""The docker backend's macvlan mode: devices as hosts on a LAN.

The "LAN" is a veth pair the test creates (a unique name, removed in teardown): one end is the
macvlan parent; the other end holds the host's own address on the private subnet, standing in
for another machine on that LAN (a real lab needs the shim interface documented in
images/README.md for the host itself to reach its macvlan devices).
"""

from __future__ import annotations

import ipaddress
import subprocess
import time
import uuid

import pytest

from fleet.store import Store
from tests.test_fleet_docker import device_image, docker_fleet, fleet_plan, free_subnet, wait_all_healthy

__all__ = ["device_image"]  # the session fixture, shared

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.root]


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


@pytest.fixture
def lan(need_root, docker_client):
    """(parent interface, subnet, the host's address on it): a veth pair on a free private /24."""
    suffix = uuid.uuid4().hex[:8]
    parent, peer = f"cfm{suffix}", f"cfp{suffix}"
    subnet = ipaddress.IPv4Network(free_subnet(docker_client, "10.213.0.0/16"))
    host_address = str(subnet.broadcast_address - 1)
    ip("link", "add", parent, "type", "veth", "peer", "name", peer)
    try:
        ip("link", "set", parent, "up")
        ip("link", "set", peer, "up")
        ip("addr", "add", f"{host_address}/{subnet.prefixlen}", "dev", peer)
        yield parent, str(subnet), host_address
    finally:
        subprocess.run(["ip", "link", "del", parent], check=False, capture_output=True, timeout=30)


def test_macvlan_devices_are_hosts_on_the_lan(docker_client, device_image, lan, tmp_path) -> None:
    parent, subnet, host_address = lan
    name = f"t{uuid.uuid4().hex[:8]}"
    first_device = ipaddress.IPv4Network(subnet).network_address + 1
    plan = fleet_plan(name, f"{first_device}-{first_device + 3}", device_image,
                      f'docker_network = "macvlan"\ndocker_parent = "{parent}"\n'
                      f'docker_subnet = "{subnet}"\ndocker_gateway = "{host_address}"', enip=2, modbus=2)
    with docker_fleet(docker_client, tmp_path / name, plan) as backend:
        applied = backend.up()
        (net,) = backend.api.networks(filters=backend._filters())
        net = backend.api.inspect_network(net["Id"])
        assert net["Driver"] == "macvlan" and net["Options"]["parent"] == parent
        assert net["IPAM"]["Config"][0]["Subnet"] == subnet
        # the host reaches each device at its address across the "LAN"
        assert [r.error for r in wait_all_healthy(applied.devices) if not r.ok] == []
        # and so does the health poller, from its own container on the macvlan network
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with Store(backend.state.database) as store:
                history = store.history([d.name for d in applied.devices])
            if all(h.last is not None and h.last.ok for h in history.values()):
                break
            time.sleep(0.5)
        assert all(h.last is not None and h.last.ok for h in history.values()), history
        backend.down()
        assert backend.api.networks(filters=backend._filters()) == []
