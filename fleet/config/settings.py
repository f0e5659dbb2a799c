"""The ``[fleet]`` table of fleet.toml: :class:`FleetSettings` and its reader.

Each key is one line of :class:`FleetSettings`: ``name: type = key(default, reader)`` (see
:mod:`fleet.table` for the readers); adding a key to [fleet] is that line.  Checks that
involve several keys (macvlan needs a parent, docker needs a private pool) follow in
:func:`read_fleet`.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace
from typing import Any

from fleet.config.pools import bridge_pool, is_loopback, pool_key
from fleet.table import Table, checked, choice, integer, key, keys_of, number, read_keys, text

NAME_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # fleet and device names
NAMED = "letters, digits, '.', '_' or '-'"
_MEMORY = re.compile(r"^[0-9]+[kmg]?$")


def _ip(kind: type, noun: str, what: str) -> Any:
    def check(value: str) -> None:
        try:
            kind(value, strict=False) if kind is ipaddress.IPv4Network else kind(value)
        except ValueError:
            raise ValueError(f"not {noun}: {value!r}") from None
    return checked(str, what, check)


@dataclass(frozen=True)
class FleetSettings:
    """The ``[fleet]`` table."""

    name: str = key("", text(pattern=NAME_OK, shape=NAMED, required="the fleet's name"))  # .fleet/<name>/
    backend: str = key("process", choice("process", "docker"))  # "process" (supervisord) or "docker"
    address_pool: tuple[str, ...] = key(("127.60.0.0/16",), pool_key)  # CIDRs or "first-last" ranges
    addressing: str = key("loopback", choice("loopback", "alias"))  # "alias" (root): add to interface
    interface: str = key("lo", text())  # the interface alias-mode adds device addresses to
    prefix_length: int = key(32, integer(8, 32))  # prefix of the addresses alias mode adds
    health_interval: float = key(5.0, number((int, float)))  # seconds between health sweeps
    health_timeout: float = key(2.0, number((int, float)))  # seconds a device has to answer one poll
    health_concurrency: int = key(200, number())  # polls in flight at once
    health_retention: int = key(100, number())  # health results kept per device in the state database
    devices_per_worker: int = key(100, number())  # devices hosted by one worker process (1: one each)
    # -- docker backend (issue 8): read when backend = "docker" --------------------------------
    devices_per_container: int = key(1, number())  # devices per container, each at its own IP
    docker_network: str = key("bridge", choice("bridge", "macvlan"))  # bridges on this host, or a LAN
    docker_subnet: str | None = key(None, _ip(ipaddress.IPv4Network, "an IPv4 CIDR",
                                              "a CIDR such as '172.30.0.0/16'"))  # default: the pool's
    docker_gateway: str | None = key(None, _ip(ipaddress.IPv4Address, "an IPv4 address",
                                               "an IPv4 address"))  # macvlan: the LAN's router
    docker_parent: str | None = key(None, text("an interface name"))  # macvlan: the host's LAN interface
    docker_memory: str = key("64m", text("a size such as '64m'", _MEMORY, "a size such as '64m' or '1g'",
                                         lower=True))  # memory limit of each device container
    docker_image: str | None = key(None, text("an image name"))  # default: the project's own, built


FLEET_KEYS = keys_of(FleetSettings)


def read_fleet(src: str, data: dict[str, Any]) -> FleetSettings:
    """The ``[fleet]`` table ``data`` of file ``src``, checked."""
    t = Table(src, "fleet", data, FLEET_KEYS)
    settings = read_keys(t, FleetSettings)
    if settings.docker_network == "macvlan" and settings.docker_parent is None:
        t.fail("docker_parent", "docker_network = \"macvlan\" needs the host interface on the LAN")
    if settings.backend != "docker":
        return settings
    # with backend = "docker" every worker is one container of devices_per_container devices
    if any(is_loopback(item) for item in settings.address_pool):
        t.fail("address_pool", "the docker backend needs a private subnet (eg. '172.30.0.0/16'), "
               "not loopback addresses: containers cannot own 127.x addresses")
    pool = settings.address_pool
    pool = bridge_pool(pool) if settings.docker_network == "bridge" else pool
    return replace(settings, devices_per_worker=settings.devices_per_container, address_pool=pool)
