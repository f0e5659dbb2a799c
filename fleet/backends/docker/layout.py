"""Where the docker backend puts things: networks, addresses and containers for a plan.  Pure.

Every device keeps the address the plan gave it (``address_pool``), so ``status``, the health
poller and the process backend all agree on it.  The addresses must lie in ``docker_subnet``
(by default the pool's own CIDRs), which must not be loopback.

* ``bridge``: user-defined bridge networks on this host, one per ``/docker_bridge_prefix``
  block of the subnet that holds devices (a /27 of 28 devices by default; at widest a /22,
  as a Linux bridge holds at most 1,024 ports); the host routes to every block.  Small
  bridges make a fast start: dockerd 20.10 must join and leave one network's containers one
  at a time (see :meth:`~fleet.backends.docker.backend.DockerBackend.attaching`), so the
  backend starts as many containers at once as the fleet has bridges.
* ``macvlan``: one network per subnet on ``docker_parent``, so devices are hosts on that LAN.

On each network the gateway (given, or the highest address no device uses) and the health
poller's address (the next free one) are chosen so they never collide with a device.

A container hosts the devices of one plan worker (``devices_per_container``): docker gives it
the first device's address on each network it needs; the entry point adds the others.

>>> from fleet.config import parse
>>> from fleet.plan import expand
>>> plan = expand(parse('''
... [fleet]
... name = "lab"
... backend = "docker"
... address_pool = "172.30.0.0/21"
... devices_per_container = 2
... [[device]]
... kind = "modbus"
... count = 3
... name = "pump{n}"
... registers = ["40001-40010=7"]
... '''))
>>> net, = networks(plan)
>>> net.name, net.subnet, net.gateway, net.poller
('lab-net0', '172.30.0.0/27', '172.30.0.30', '172.30.0.29')
>>> [(c.name, c.worker, c.endpoints) for c in containers(plan)]
... # doctest: +NORMALIZE_WHITESPACE
[('lab-w000', 'w000', (('lab-net0', '172.30.0.1'),)), ('lab-pump3', 'w001', (('lab-net0', '172.30.0.3'),))]
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from fleet.backends.base import BackendError
from fleet.plan import Plan, PlannedDevice

LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")


@dataclass(frozen=True)
class NetworkSpec:
    """One docker network of the fleet."""

    name: str  # docker network name
    driver: str  # "bridge" or "macvlan"
    subnet: str  # IPAM subnet
    gateway: str  # IPAM gateway (the host's bridge address, or the LAN's router)
    poller: str  # the health poller's address on it
    parent: str | None = None  # macvlan parent interface

    @property
    def options(self) -> dict[str, str]:
        return {"parent": self.parent, "macvlan_mode": "bridge"} if self.driver == "macvlan" else {}


@dataclass(frozen=True)
class ContainerSpec:
    """One device container: a plan worker."""

    name: str  # container name
    worker: str  # plan worker name (the backend's program name)
    devices: tuple[PlannedDevice, ...]
    endpoints: tuple[tuple[str, str], ...]  # (network name, address docker assigns), primary first

    @property
    def hostname(self) -> str:
        return self.devices[0].name if len(self.devices) == 1 else self.worker

    @property
    def extra_addresses(self) -> bool:
        """Whether the entry point must add addresses (needs a short-lived NET_ADMIN)."""
        return len({d.host for d in self.devices}) > len(self.endpoints)


def subnets(plan: Plan) -> list[ipaddress.IPv4Network]:
    """The fleet's docker subnets: ``docker_subnet``, else the address pool's CIDRs."""
    fleet = plan.fleet
    items = [fleet.docker_subnet] if fleet.docker_subnet else list(fleet.address_pool)
    block = fleet.docker_bridge_prefix
    out: list[ipaddress.IPv4Network] = []
    for item in items:
        if "-" in item:  # a range: within one bridge block, that block is its subnet
            lo, hi = (int(ipaddress.IPv4Address(part.strip())) for part in item.split("-", 1))
            within = ipaddress.IPv4Network((lo >> (32 - block) << (32 - block), block))
            if fleet.docker_network != "bridge" or hi not in range(int(within[0]), int(within[-1]) + 1):
                wide = f" wider than one /{block} bridge" if fleet.docker_network == "bridge" else ""
                raise BackendError(f"backend docker: address_pool {item!r} is a range{wide}; give "
                                   "docker_subnet (the CIDR the devices' addresses lie in)"
                                   + (" or a wider docker_bridge_prefix" if wide else ""))
            item = str(within)
        net = ipaddress.IPv4Network(item, strict=False)
        if net in out:
            continue
        if net.overlaps(LOOPBACK):
            raise BackendError(f"backend docker: {item} is loopback; give the fleet a private "
                               "address_pool such as \"172.30.0.0/16\" (or docker_subnet)")
        if net.prefixlen > 30:
            raise BackendError(f"backend docker: subnet {item} is too small (at most /30)")
        out.append(net)
    return out


def _blocks(plan: Plan) -> dict[ipaddress.IPv4Network, list[str]]:
    """Each network's subnet and the device addresses in it, in plan order."""
    nets = subnets(plan)
    block = plan.fleet.docker_bridge_prefix
    blocks: dict[ipaddress.IPv4Network, list[str]] = {}
    for device in plan.devices:
        ip = ipaddress.IPv4Address(device.host)
        net = next((n for n in nets if ip in n), None)
        if net is None:
            raise BackendError(f"backend docker: {device.name}'s address {ip} is outside the docker "
                               f"subnet(s) {', '.join(map(str, nets))}")
        if plan.fleet.docker_network == "bridge" and net.prefixlen < block:
            net = ipaddress.IPv4Network((int(ip) >> (32 - block) << (32 - block), block))
        if ip in (net.network_address, net.broadcast_address):
            raise BackendError(f"backend docker: {device.name}'s address {ip} is the network or "
                               f"broadcast address of {net}")
        blocks.setdefault(net, []).append(device.host)
    return dict(sorted(blocks.items()))


def _free_from_top(net: ipaddress.IPv4Network, used: Iterable[str], count: int) -> list[str]:
    taken = set(used)
    out = []
    address = int(net.broadcast_address) - 1
    while len(out) < count and address > int(net.network_address):
        if str(ipaddress.IPv4Address(address)) not in taken:
            out.append(str(ipaddress.IPv4Address(address)))
        address -= 1
    if len(out) < count:
        raise BackendError(f"backend docker: subnet {net} has no free address left for the gateway "
                           "and the health poller; leave two addresses of it out of the address pool")
    return out


def networks(plan: Plan) -> list[NetworkSpec]:
    """The fleet's networks (those holding devices), for the whole plan."""
    fleet = plan.fleet
    out = []
    for index, (net, hosts) in enumerate(_blocks(plan).items()):
        gateway = fleet.docker_gateway
        if gateway is not None and ipaddress.IPv4Address(gateway) in net:
            if gateway in hosts:
                raise BackendError(f"backend docker: docker_gateway {gateway} is also a device's address")
            (poller,) = _free_from_top(net, [*hosts, gateway], 1)
        else:
            gateway, poller = _free_from_top(net, hosts, 2)
        out.append(NetworkSpec(name=f"{fleet.name}-net{index}", driver=fleet.docker_network, subnet=str(net),
                               gateway=gateway, poller=poller, parent=fleet.docker_parent))
    return out


def containers(plan: Plan, nets: list[NetworkSpec] | None = None) -> list[ContainerSpec]:
    """One container per plan worker; raise BackendError if two containers share an address."""
    nets = networks(plan) if nets is None else nets
    by_subnet = [(ipaddress.IPv4Network(n.subnet), n.name) for n in nets]
    owner: dict[str, str] = {}
    out = []
    for worker in plan.workers:
        devices = plan.worker_devices(worker.name)
        endpoints: dict[str, str] = {}
        for device in devices:
            other = owner.setdefault(device.host, worker.name)
            if other != worker.name:
                raise BackendError(f"backend docker: {device.name} shares address {device.host} with a "
                                   f"device of worker {other}; each container needs addresses of its own")
            ip = ipaddress.IPv4Address(device.host)
            network = next(name for subnet, name in by_subnet if ip in subnet)
            endpoints.setdefault(network, device.host)
        name = devices[0].name if len(devices) == 1 else worker.name
        out.append(ContainerSpec(name=f"{plan.fleet.name}-{name}", worker=worker.name, devices=devices,
                                 endpoints=tuple(endpoints.items())))
    return out
