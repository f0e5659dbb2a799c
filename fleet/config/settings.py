"""The ``[fleet]`` table of fleet.toml: :class:`FleetSettings` and its reader.

Adding a key to [fleet] is one field in :class:`FleetSettings` (its default and a comment)
and one line in :func:`read_fleet` (or :func:`_docker` for the docker backend's keys) that
reads and checks it; the allowed keys are the dataclass's fields.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, fields, replace
from typing import Any

from fleet.config.pools import (
    DOCKER_BRIDGE_BLOCK,
    DOCKER_BRIDGE_NARROWEST,
    DOCKER_BRIDGE_PREFIX,
    bridge_pool,
    is_loopback,
    read_pool,
)
from fleet.table import Table

BACKENDS = ("process", "docker", "vagrant")  # vagrant: fleet.vagrant, VMs as lab hosts
ADDRESSINGS = ("loopback", "alias")
DOCKER_NETWORKS = ("bridge", "macvlan")
NAME_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # fleet and device names
_MEMORY = re.compile(r"^[0-9]+[kmg]?$")


@dataclass(frozen=True)
class FleetSettings:
    """The ``[fleet]`` table."""

    name: str  # the fleet's name: names the state folder (.fleet/<name>/)
    backend: str = "process"  # "process" (supervisord) or "docker"
    address_pool: tuple[str, ...] = ("127.60.0.0/16",)  # CIDRs or "first-last" ranges, in order
    addressing: str = "loopback"  # "loopback" (127/8 needs nothing) or "alias" (root: add to interface)
    interface: str = "lo"  # the interface alias-mode adds device addresses to
    prefix_length: int = 32  # prefix of the addresses alias mode adds
    health_interval: float = 5.0  # seconds between health sweeps (unset: default_interval(devices))
    health_timeout: float = 2.0  # seconds a device has to answer one poll
    health_concurrency: int = 200  # polls in flight at once
    health_retention: int = 100  # health results kept per device in the state database
    devices_per_worker: int = 100  # devices hosted by one worker process (1: one process each)
    web: str = "127.0.0.1:0"  # the fleet page and /metrics: <interface>:<port> (0: a free port)
    worker_max_connections: int = 0  # connections a worker accepts over all its devices (0: as fds allow)
    retain: bool = False  # keep client writes across restarts (a [[device]] may override it)
    # -- docker backend (issue 8): read when backend = "docker" --------------------------------
    devices_per_container: int = 1  # devices per container, each at its own IP (docker: = devices_per_worker)
    docker_network: str = "bridge"  # "bridge" (user-defined bridges on this host) or "macvlan" (a LAN)
    docker_bridge_prefix: int = DOCKER_BRIDGE_PREFIX  # bridge: one network per /N block of the pool (22..28)
    docker_subnet: str | None = None  # IPAM subnet holding every device; default: address_pool's CIDR(s)
    docker_gateway: str | None = None  # macvlan: the LAN's router; default: a free address of the subnet
    docker_parent: str | None = None  # macvlan: the host interface on the LAN (eth0, eth0.10, a veth)
    docker_memory: str = "64m"  # memory limit of each device container
    docker_image: str | None = None  # device image; default: the project's own, built as needed


FLEET_KEYS = frozenset(f.name for f in fields(FleetSettings))

# Polls one health poller process completes per second, measured with benchmarks/fleet_scale.py
# --large (an ENIP poll is a List Identity and a tag read, a Modbus poll one register read, on
# kept connections) on this 2-core machine shared with other work; benchmarks/README.md.
SWEEP_RATE = 1000


def default_interval(devices: int) -> float:
    """``health_interval`` when fleet.toml gives none: 5 s, or longer for a fleet the pollers
    cannot sweep in 5 s (a sweep of ``devices`` at SWEEP_RATE, with room to spare: twice that).

    >>> default_interval(250), default_interval(10_000), default_interval(100_000)
    (5.0, 20.0, 200.0)
    """
    return max(5.0, 2.0 * devices / SWEEP_RATE)


def read_fleet(src: str, data: dict[str, Any]) -> FleetSettings:
    """The ``[fleet]`` table ``data`` of file ``src``, checked."""
    t = Table(src, "fleet", data, FLEET_KEYS)
    name = t.get("name", str, None, what="a string")
    if name is None:
        t.fail("name", "missing (the fleet's name)")
    if not NAME_OK.fullmatch(name):
        t.fail("name", f"must be letters, digits, '.', '_' or '-', got {name!r}")
    d = FleetSettings(name=name)
    settings = FleetSettings(
        name=name,
        backend=t.choice("backend", BACKENDS, d.backend),
        address_pool=read_pool(t, "address_pool") or d.address_pool,
        addressing=t.choice("addressing", ADDRESSINGS, d.addressing),
        interface=t.get("interface", str, d.interface, what="a string"),
        prefix_length=t.get("prefix_length", int, d.prefix_length, what="an integer"),
        health_interval=float(t.positive("health_interval", d.health_interval, (int, float))),
        health_timeout=float(t.positive("health_timeout", d.health_timeout, (int, float))),
        health_concurrency=t.positive("health_concurrency", d.health_concurrency),
        health_retention=t.positive("health_retention", d.health_retention),
        devices_per_worker=t.positive("devices_per_worker", d.devices_per_worker),
        web=t.get("web", str, d.web, what="a string"),
        worker_max_connections=t.positive("worker_max_connections", d.worker_max_connections, zero=True),
        retain=t.get("retain", bool, d.retain, what="true or false"),
    )
    _host, sep, port = settings.web.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        t.fail("web", f"expected <interface>:<port> (port 0-65535, 0: a free one), got {settings.web!r}")
    if not 8 <= settings.prefix_length <= 32:
        t.fail("prefix_length", f"must be 8..32, got {settings.prefix_length}")
    return _docker(t, settings)


def _address(t: Table, key: str, kind: type, what: str) -> str | None:
    """An optional IPv4 address or network (``kind``) key."""
    value = t.get(key, str, None, what=what)
    if value is not None:
        t.checked(key, lambda: _parse_ip(kind, value))
    return value


def _parse_ip(kind: type, value: str) -> None:
    try:
        kind(value, strict=False) if kind is ipaddress.IPv4Network else kind(value)
    except ValueError:
        noun = "an IPv4 CIDR" if kind is ipaddress.IPv4Network else "an IPv4 address"
        raise ValueError(f"not {noun}: {value!r}") from None


def _docker(t: Table, settings: FleetSettings) -> FleetSettings:
    """The docker keys; with backend = "docker" every worker is one container of
    ``devices_per_container`` devices."""
    d = settings
    per = t.positive("devices_per_container", d.devices_per_container)
    network = t.choice("docker_network", DOCKER_NETWORKS, d.docker_network)
    bridge = t.get("docker_bridge_prefix", int, d.docker_bridge_prefix, what="an integer")
    if not DOCKER_BRIDGE_BLOCK <= bridge <= DOCKER_BRIDGE_NARROWEST:
        t.fail("docker_bridge_prefix", f"must be {DOCKER_BRIDGE_BLOCK}..{DOCKER_BRIDGE_NARROWEST} (a Linux "
               f"bridge holds about 1,000 ports; a /{DOCKER_BRIDGE_NARROWEST} 12 devices), got {bridge}")
    subnet = _address(t, "docker_subnet", ipaddress.IPv4Network, "a CIDR such as '172.30.0.0/16'")
    gateway = _address(t, "docker_gateway", ipaddress.IPv4Address, "an IPv4 address")
    parent = t.get("docker_parent", str, None, what="an interface name")
    if network == "macvlan" and parent is None:
        t.fail("docker_parent", "docker_network = \"macvlan\" needs the host interface on the LAN")
    memory = t.get("docker_memory", str, d.docker_memory, what="a size such as '64m'").lower()
    if not _MEMORY.match(memory):
        t.fail("docker_memory", f"must be a size such as '64m' or '1g', got {memory!r}")
    image = t.get("docker_image", str, None, what="an image name")
    settings = replace(settings, devices_per_container=per, docker_network=network,
                       docker_bridge_prefix=bridge, docker_subnet=subnet, docker_gateway=gateway,
                       docker_parent=parent, docker_memory=memory,
                       docker_image=image)
    if settings.backend != "docker":
        return settings
    if any(is_loopback(item) for item in settings.address_pool):
        t.fail("address_pool", "the docker backend needs a private subnet (eg. '172.30.0.0/16'), "
               "not loopback addresses: containers cannot own 127.x addresses")
    pool = bridge_pool(settings.address_pool, bridge) if network == "bridge" else settings.address_pool
    return replace(settings, devices_per_worker=per, address_pool=pool)
