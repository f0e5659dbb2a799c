"""The docker backend's layout (networks, addresses, containers) and config keys: pure, no engine."""

from __future__ import annotations

import ipaddress

import pytest

from fleet.backends.base import BackendError
from fleet.backends.docker.layout import containers, networks
from fleet.config import ConfigError, parse
from fleet.plan import expand


def plan_of(fleet: str, count: int = 4, extra_group: str = ""):
    return expand(parse(f"""
[fleet]
name = "lab"
backend = "docker"
{fleet}
[[device]]
kind = "modbus"
count = {count}
name = "pump{{n}}"
registers = ["40001-40010=7"]
{extra_group}
"""))


def test_one_container_per_device_by_default() -> None:
    plan = plan_of('address_pool = "172.30.5.0/24"')
    assert plan.fleet.devices_per_worker == 1
    specs = containers(plan)
    assert [(c.name, c.endpoints) for c in specs] == [
        (f"lab-pump{i}", (("lab-net0", f"172.30.5.{i}"),)) for i in range(1, 5)]
    assert not any(c.extra_addresses for c in specs)


@pytest.mark.parametrize(("prefix", "count", "first", "per"), [
    ("docker_bridge_prefix = 22", 2500, ["172.30.0.0/22", "172.30.4.0/22", "172.30.8.0/22"], 1020),
    ("", 300, ["172.30.0.0/27", "172.30.0.32/27", "172.30.0.64/27"], 28),  # the default: /27
    ("docker_bridge_prefix = 28", 30, ["172.30.0.0/28", "172.30.0.16/28", "172.30.0.32/28"], 12),
])
def test_a_large_fleet_spreads_over_bridges_of_the_prefix(prefix: str, count: int, first: list[str],
                                                          per: int) -> None:
    plan = plan_of(f'address_pool = "172.30.0.0/16"\n{prefix}', count=count)
    nets = networks(plan)
    assert [n.subnet for n in nets][:3] == first
    assert len(nets) == -(-count // per)  # every block full but the last
    device_hosts = {d.host for d in plan.devices}
    for net in nets:
        subnet = ipaddress.IPv4Network(net.subnet)
        assert ipaddress.IPv4Address(net.gateway) in subnet and ipaddress.IPv4Address(net.poller) in subnet
        assert {net.gateway, net.poller}.isdisjoint(device_hosts)
    per_net: dict[str, int] = {}
    for c in containers(plan, nets):
        (network, _), = c.endpoints
        per_net[network] = per_net.get(network, 0) + 1
    assert max(per_net.values()) == per and sum(per_net.values()) == count


def test_bridge_prefix_is_checked_and_ranges_must_fit_one_bridge() -> None:
    for bad in (21, 29, "27", True):
        with pytest.raises(ConfigError, match="docker_bridge_prefix") as info:
            plan_of(f'address_pool = "172.30.0.0/16"\ndocker_bridge_prefix = {bad!r}'.replace("'", '"')
                    .replace("True", "true"))
        assert info.value.key == "docker_bridge_prefix"
    with pytest.raises(BackendError, match="wider than one /27 bridge"):
        networks(plan_of('address_pool = "172.30.0.1-172.30.0.40"'))
    (net,) = networks(plan_of('address_pool = "172.30.0.1-172.30.0.40"\ndocker_bridge_prefix = 24'))
    assert net.subnet == "172.30.0.0/24"


def test_grouped_containers_add_their_other_addresses_and_span_blocks() -> None:
    plan = plan_of('address_pool = ["172.30.3.250-172.30.3.252", "172.30.4.1-172.30.4.9"]\n'
                   'docker_subnet = "172.30.0.0/16"\ndevices_per_container = 8', count=8)
    (spec,) = containers(plan)
    assert spec.name == "lab-w000" and spec.hostname == "w000"
    assert spec.endpoints == (("lab-net0", "172.30.3.250"), ("lab-net1", "172.30.4.1"))
    assert spec.extra_addresses


@pytest.mark.parametrize(("fleet", "message"), [
    ('address_pool = "172.30.0.0/24"\ndocker_subnet = "127.61.0.0/24"', "is loopback"),
    ('address_pool = "172.30.1.0/24"\ndocker_subnet = "172.31.0.0/24"', "outside the docker subnet"),
    ('address_pool = "172.30.3.1-172.30.4.9"', "is a range wider than one /27 bridge; give docker_subnet"),
    ('address_pool = "172.30.1.0/30"', "no free address left"),
])
def test_addressing_problems_are_one_line_errors(fleet: str, message: str) -> None:
    with pytest.raises(BackendError, match=message) as info:
        networks(plan_of(fleet, count=2))
    assert "\n" not in str(info.value)


def test_a_loopback_address_pool_is_refused_when_the_config_loads() -> None:
    from fleet.config import ConfigError

    with pytest.raises(ConfigError, match=r"key 'address_pool': the docker backend needs a private subnet") \
            as info:
        plan_of('address_pool = "127.61.0.0/24"', count=2)
    assert "\n" not in str(info.value)


def test_devices_sharing_an_address_need_one_container() -> None:
    group = '[[device]]\nkind = "enip"\ncount = 2\nname = "plc{n}"\naddress = "172.30.9.9"\n' \
            'port_step = 1\ntags = ["A=INT"]'
    with pytest.raises(BackendError, match=r"shares address 172\.30\.9\.9"):
        containers(plan_of('address_pool = "172.30.9.0/24"', count=1, extra_group=group))
    grouped = plan_of('address_pool = "172.30.9.0/24"\ndevices_per_container = 3', count=1, extra_group=group)
    assert [len(c.devices) for c in containers(grouped)] == [3]


@pytest.mark.parametrize(("fleet", "key"), [
    ('docker_network = "macvlan"', "docker_parent"),
    ('docker_network = "ipvlan"', "docker_network"),
    ('docker_subnet = "172.30.0.0/33"', "docker_subnet"),
    ('docker_memory = "lots"', "docker_memory"),
    ('devices_per_container = 0', "devices_per_container"),
])
def test_docker_keys_are_checked(fleet: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        plan_of(f'address_pool = "172.30.1.0/24"\n{fleet}')
    assert info.value.key == key


def test_the_process_backend_keeps_its_workers() -> None:
    plan = expand(parse('[fleet]\nname = "p"\ndevices_per_container = 5\n[[device]]\nkind = "modbus"\n'
                        'count = 3\nname = "m{n}"\nregisters = ["40001=1"]'))
    assert plan.fleet.devices_per_worker == 100 and len(plan.workers) == 1
