"""``fleet.toml`` -> validated, frozen specs.

The file has one ``[fleet]`` table and any number of ``[[device]]`` tables, each describing a
*group* of ``count`` devices of one kind (``enip`` or ``modbus``) whose names, identities and
addresses are patterned on ``n`` (``name = "line{n:03}"``).  Everything is checked here, before
anything starts; a problem raises :class:`ConfigError`, whose message is one line naming the
file, the table (``device[2]``, counted from 0 as in the file's array), the key and what is
wrong.  Expansion into concrete devices (names, IPs, ports, workers) is ``fleet.plan``.

Example (the repository's ``fleet.toml`` is a bigger one)::

    [fleet]
    name = "plant"
    address_pool = "127.60.0.0/16"

    [[device]]
    kind = "enip"
    count = 100
    name = "line{n:03}"
    tags = ["SCADA=INT[1000]", "Motor_Speed=REAL"]
    identity = { product_name = "1756-L61/B LOGIX5561", serial_number = "0x5100{n:04}" }
"""

from __future__ import annotations

import ipaddress
import itertools
import math
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from fleet.patterns import format_pattern
from fleet.registers import RegisterRange, parse_register_spec
from fleet.rtu_lines import KEYS as RTU_KEYS
from fleet.tags import TagSpec, parse_tag_spec

T = TypeVar("T")

KINDS = ("enip", "modbus", "modbus-rtu")
BACKENDS = ("process", "docker")
ADDRESSINGS = ("loopback", "alias")
DEFAULT_PORT = {"enip": 44818, "modbus": 502, "modbus-rtu": 502}
MAX_DEVICES = 100_000  # devices in one fleet (a /16 pool holds 65,534)

# Identity keys each kind accepts, and whether the value is an integer (patterns are
# formatted with ``n`` and then parsed with ``int(text, 0)``) or text.
ENIP_IDENTITY = {
    "vendor_id": int, "product_type": int, "product_code": int, "serial_number": int,
    "status": int, "state": int, "revision": str, "product_name": str,
}
MODBUS_IDENTITY = {
    "vendor_name": str, "product_code": str, "major_minor_revision": str, "vendor_url": str,
    "product_name": str, "model_name": str, "user_application_name": str,
}
IDENTITY_KEYS = {"enip": ENIP_IDENTITY, "modbus": MODBUS_IDENTITY, "modbus-rtu": MODBUS_IDENTITY}


class ConfigError(ValueError):
    """A problem in fleet.toml; ``str()`` is one line: ``file: table: key 'k': what``."""

    def __init__(self, source: str, table: str, key: str | None, message: str) -> None:
        self.source, self.table, self.key, self.message = source, table, key, message
        where = f"{source}: {table}" + (f": key {key!r}" if key is not None else "")
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class FleetSettings:
    """The ``[fleet]`` table."""

    name: str  # the fleet's name: names the state folder (.fleet/<name>/)
    backend: str = "process"  # "process" (supervisord) or "docker"
    address_pool: tuple[str, ...] = ("127.60.0.0/16",)  # CIDRs or "first-last" ranges, in order
    addressing: str = "loopback"  # "loopback" (127/8 needs nothing) or "alias" (root: add to interface)
    interface: str = "lo"  # the interface alias-mode adds device addresses to
    prefix_length: int = 32  # prefix of the addresses alias mode adds
    health_interval: float = 5.0  # seconds between health sweeps
    health_timeout: float = 2.0  # seconds a device has to answer one poll
    health_concurrency: int = 200  # polls in flight at once
    health_retention: int = 100  # health results kept per device in the state database
    devices_per_worker: int = 100  # devices hosted by one worker process (1: one process each)
    # -- docker backend (issue 8): read when backend = "docker" --------------------------------
    devices_per_container: int = 1  # devices per container, each at its own IP (docker: = devices_per_worker)
    docker_network: str = "bridge"  # "bridge" (user-defined bridges on this host) or "macvlan" (a LAN)
    docker_subnet: str | None = None  # IPAM subnet holding every device; default: address_pool's CIDR(s)
    docker_gateway: str | None = None  # macvlan: the LAN's router; default: a free address of the subnet
    docker_parent: str | None = None  # macvlan: the host interface on the LAN (eth0, eth0.10, a veth)
    docker_memory: str = "64m"  # memory limit of each device container
    docker_image: str | None = None  # device image; default: the project's own, built as needed


@dataclass(frozen=True)
class DeviceGroup:
    """One ``[[device]]`` table: ``count`` devices of one kind."""

    index: int  # position in the file's device array (for messages)
    kind: str  # "enip" or "modbus"
    count: int  # how many devices
    name: str  # name pattern, formatted with n: "line{n:03}"
    first: int = 1  # n of the first device
    port: int = 0  # TCP (and, for ENIP, UDP) port; 0 means the kind's standard port
    port_step: int = 0  # port increment from one device to the next (with a fixed address)
    address: str | None = None  # a fixed IP for every device of the group, instead of the pool
    address_pool: tuple[str, ...] = ()  # the group's own pool, instead of the fleet's
    identity: tuple[tuple[str, Any], ...] = ()  # identity values; strings patterned on n
    delay: float | tuple[float, float] | None = None  # reply delay, seconds or (lo, hi)
    # ENIP only
    tags: tuple[TagSpec, ...] = ()  # enip_server tag specs: "SCADA=INT[1000]"
    route_path: str | bool | None = None  # "1/0", false (none accepted) or unset (any)
    simple: bool = False  # a simple (non-routing) CIP device
    health_tag: str | None = None  # tag read by the health poller; default: first tag
    # Modbus only
    registers: tuple[RegisterRange, ...] = ()  # modbus_sim ranges: "40001-40100=99"
    unit_ids: tuple[int, ...] = (1,)  # unit ids answered
    health_register: int | None = None  # register read by the health poller; default: first
    rtu: tuple[tuple[str, Any], ...] = ()  # modbus-rtu keys (fleet.rtu_lines.parse_group)


@dataclass(frozen=True)
class FleetConfig:
    """A whole validated fleet.toml."""

    source: Path  # the file read
    fleet: FleetSettings
    groups: tuple[DeviceGroup, ...] = field(default_factory=tuple)


_FLEET_KEYS = set(FleetSettings.__dataclass_fields__)
_COMMON_KEYS = {"kind", "count", "name", "first", "port", "port_step", "address", "address_pool",
                "identity", "delay"}
_KIND_KEYS = {
    "enip": _COMMON_KEYS | {"tags", "route_path", "simple", "health_tag"},
    "modbus": _COMMON_KEYS | {"registers", "unit_ids", "health_register"},
    "modbus-rtu": _COMMON_KEYS | RTU_KEYS,
}
_ROUTE = re.compile(r"^[0-9]+/([0-9]+|[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+)$")
NAME_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def load(path: str | Path) -> FleetConfig:
    """Read and validate ``path``; raise ConfigError (one line) on any problem."""
    path = Path(path)
    try:
        text = path.read_bytes().decode()
    except OSError as exc:
        raise ConfigError(str(path), "file", None, f"cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(str(path), "file", None, "not UTF-8 text") from None
    return parse(text, source=path)


def parse(text: str, source: str | Path = "fleet.toml") -> FleetConfig:
    """Validate the TOML ``text`` (named ``source`` in messages)."""
    src = str(source)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(src, "file", None, f"not valid TOML: {exc}") from None
    unknown = set(data) - {"fleet", "device"}
    if unknown:
        raise ConfigError(src, "top level", sorted(unknown)[0],
                          "unknown table (expected [fleet], [[device]])")
    fleet_table = data.get("fleet")
    if not isinstance(fleet_table, dict):
        raise ConfigError(src, "fleet", None, "missing [fleet] table")
    fleet = _fleet(src, fleet_table)
    devices = data.get("device", [])
    if not isinstance(devices, list) or not all(isinstance(d, dict) for d in devices):
        raise ConfigError(src, "device", None, "must be an array of tables ([[device]])")
    if not devices:
        raise ConfigError(src, "device", None, "no [[device]] tables: the fleet is empty")
    groups = tuple(_group(src, i, table) for i, table in enumerate(devices))
    total = list(itertools.accumulate(g.count for g in groups))
    over = next((i for i, t in enumerate(total) if t > MAX_DEVICES), None)
    if over is not None:
        raise ConfigError(src, f"device[{over}]", "count",
                          f"the fleet would have {total[-1]} devices; at most {MAX_DEVICES} are supported")
    return FleetConfig(source=Path(source), fleet=fleet, groups=groups)


class _Table:
    """Typed access to one TOML table, raising ConfigError that names the key."""

    def __init__(self, src: str, name: str, data: dict[str, Any], allowed: set[str]) -> None:
        self.src, self.name, self.data = src, name, data
        for key in data:
            if key not in allowed:
                self.fail(key, f"unknown key (allowed: {', '.join(sorted(allowed))})")

    def fail(self, key: str | None, message: str) -> None:
        raise ConfigError(self.src, self.name, key, message)

    def get(self, key: str, kinds: type | tuple[type, ...], default: Any = None, what: str = "") -> Any:
        if key not in self.data:
            return default
        value = self.data[key]
        kinds = kinds if isinstance(kinds, tuple) else (kinds,)
        if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
            self.fail(key, f"must be {what or ' or '.join(k.__name__ for k in kinds)}, got {value!r}")
        return value

    def positive(self, key: str, default: Any, kinds: tuple[type, ...] = (int,), zero: bool = False) -> Any:
        value = self.get(key, kinds, default, what="a number" if float in kinds else "an integer")
        if isinstance(value, float) and not math.isfinite(value):
            self.fail(key, f"must be a finite number, got {value!r}")
        if value < 0 or (value == 0 and not zero):
            self.fail(key, f"must be {'>= 0' if zero else '> 0'}, got {value!r}")
        return value

    def choice(self, key: str, choices: tuple[str, ...], default: str) -> str:
        value = self.get(key, str, default, what="a string")
        if value not in choices:
            self.fail(key, f"must be one of {', '.join(choices)}, got {value!r}")
        return value

    def strings(self, key: str) -> tuple[str, ...] | None:
        value = self.get(key, (list, str), None, what="a string or a list of strings")
        if value is None:
            return None
        value = [value] if isinstance(value, str) else value
        if not all(isinstance(v, str) for v in value):
            self.fail(key, "must be a list of strings")
        return tuple(value)

    def specs(self, key: str, parse: Callable[[str], T], needed: str) -> list[T]:
        """A non-empty list of spec strings (``needed`` says what when empty), each parsed by
        ``parse``; the first ValueError names the key."""
        texts = self.strings(key)
        if not texts:
            self.fail(key, needed)
        parsed = []
        for text in texts:
            try:
                parsed.append(parse(text))
            except ValueError as exc:
                self.fail(key, str(exc))
        return parsed

    def pool(self, key: str) -> tuple[str, ...] | None:
        pool = self.strings(key)
        for item in pool or ():
            try:
                pool_addresses(item)
            except ValueError as exc:
                self.fail(key, str(exc))
        return pool


def pool_addresses(item: str) -> range:
    """The addresses of one pool item as a range of ints: a CIDR (its usable hosts) or a
    ``first-last`` range (inclusive).

    >>> r = pool_addresses("10.9.8.0/30"); str(ipaddress.IPv4Address(r[0])), len(r)
    ('10.9.8.1', 2)
    """
    try:
        if "-" in item:
            lo, hi = (int(ipaddress.IPv4Address(part.strip())) for part in item.split("-", 1))
            if hi < lo:
                raise ValueError(f"pool {item!r}: last address before the first")
            return range(lo, hi + 1)
        net = ipaddress.IPv4Network(item, strict=False)
    except ipaddress.AddressValueError as exc:
        raise ValueError(f"pool {item!r}: {exc}") from None
    except ValueError as exc:
        raise ValueError(f"pool {item!r}: {exc}") from None
    if net.prefixlen >= 31:
        return range(int(net.network_address), int(net.broadcast_address) + 1)
    # skip the network and broadcast addresses: never bind (or poll) a broadcast address
    return range(int(net.network_address) + 1, int(net.broadcast_address))


def _fleet(src: str, data: dict[str, Any]) -> FleetSettings:
    t = _Table(src, "fleet", data, _FLEET_KEYS)
    name = t.get("name", str, None, what="a string")
    if name is None:
        t.fail("name", "missing (the fleet's name)")
    if not NAME_OK.fullmatch(name):
        t.fail("name", f"must be letters, digits, '.', '_' or '-', got {name!r}")
    d = FleetSettings(name=name)
    settings = FleetSettings(
        name=name,
        backend=t.choice("backend", BACKENDS, d.backend),
        address_pool=t.pool("address_pool") or d.address_pool,
        addressing=t.choice("addressing", ADDRESSINGS, d.addressing),
        interface=t.get("interface", str, d.interface, what="a string"),
        prefix_length=t.get("prefix_length", int, d.prefix_length, what="an integer"),
        health_interval=float(t.positive("health_interval", d.health_interval, (int, float))),
        health_timeout=float(t.positive("health_timeout", d.health_timeout, (int, float))),
        health_concurrency=t.positive("health_concurrency", d.health_concurrency),
        health_retention=t.positive("health_retention", d.health_retention),
        devices_per_worker=t.positive("devices_per_worker", d.devices_per_worker),
    )
    if not 8 <= settings.prefix_length <= 32:
        t.fail("prefix_length", f"must be 8..32, got {settings.prefix_length}")
    _check_pools_disjoint(t, "address_pool", settings.address_pool)
    return _docker(t, settings)


# -- docker backend (issue 8) -----------------------------------------------------------------
DOCKER_NETWORKS = ("bridge", "macvlan")
DOCKER_BRIDGE_BLOCK = 22  # a Linux bridge holds ~1,000 ports: one bridge per /22 (1,022 addresses)
_MEMORY = re.compile(r"^[0-9]+[kmg]?$")


def _docker(t: _Table, settings: FleetSettings) -> FleetSettings:
    """The docker keys; with backend = "docker" every worker is one container of
    ``devices_per_container`` devices."""
    from dataclasses import replace

    d = settings
    per = t.positive("devices_per_container", d.devices_per_container)
    network = t.choice("docker_network", DOCKER_NETWORKS, d.docker_network)
    subnet = t.get("docker_subnet", str, None, what="a CIDR such as '172.30.0.0/16'")
    if subnet is not None:
        try:
            ipaddress.IPv4Network(subnet, strict=False)
        except ValueError:
            t.fail("docker_subnet", f"not an IPv4 CIDR: {subnet!r}")
    gateway = t.get("docker_gateway", str, None, what="an IPv4 address")
    if gateway is not None:
        try:
            ipaddress.IPv4Address(gateway)
        except ValueError:
            t.fail("docker_gateway", f"not an IPv4 address: {gateway!r}")
    parent = t.get("docker_parent", str, None, what="an interface name")
    if network == "macvlan" and parent is None:
        t.fail("docker_parent", "docker_network = \"macvlan\" needs the host interface on the LAN")
    memory = t.get("docker_memory", str, d.docker_memory, what="a size such as '64m'").lower()
    if not _MEMORY.match(memory):
        t.fail("docker_memory", f"must be a size such as '64m' or '1g', got {memory!r}")
    image = t.get("docker_image", str, None, what="an image name")
    settings = replace(settings, devices_per_container=per, docker_network=network, docker_subnet=subnet,
                       docker_gateway=gateway, docker_parent=parent, docker_memory=memory,
                       docker_image=image)
    if settings.backend != "docker":
        return settings
    if any(_is_loopback(item) for item in settings.address_pool):
        t.fail("address_pool", "the docker backend needs a private subnet (eg. '172.30.0.0/16'), "
               "not loopback addresses: containers cannot own 127.x addresses")
    pool = bridge_pool(settings.address_pool) if network == "bridge" else settings.address_pool
    return replace(settings, devices_per_worker=per, address_pool=pool)


def _is_loopback(item: str) -> bool:
    """Whether an address-pool item (a CIDR, ``a-b`` range or single address) starts in 127/8."""
    first = item.split("-", 1)[0].split("/", 1)[0].strip()
    try:
        return ipaddress.IPv4Address(first).is_loopback
    except ValueError:
        return False


def load_for_backend(path: str | Path, backend: str) -> FleetConfig:
    """:func:`load` with ``[fleet] backend`` replaced (the CLI's ``--backend``), re-validated."""
    config = load(path)
    if config.fleet.backend == backend:
        return config
    table = {**tomllib.loads(Path(path).read_text())["fleet"], "backend": backend}
    return FleetConfig(source=config.source, fleet=_fleet(str(path), table), groups=config.groups)


def bridge_pool(items: tuple[str, ...]) -> tuple[str, ...]:
    """The address pool for docker bridges: a CIDR wider than one bridge's /22 becomes a range
    per /22 block, leaving out each block's network and broadcast addresses and its two top
    addresses (the bridge's gateway and the health poller's), so a big fleet spreads over
    several bridges.

    >>> bridge_pool(("172.30.0.0/21", "10.1.0.0/24"))
    ('172.30.0.1-172.30.3.252', '172.30.4.1-172.30.7.252', '10.1.0.0/24')
    """
    out: list[str] = []
    for item in items:
        net = None if "-" in item else ipaddress.IPv4Network(item, strict=False)
        if net is None or net.prefixlen >= DOCKER_BRIDGE_BLOCK:
            out.append(item)
            continue
        for block in net.subnets(new_prefix=DOCKER_BRIDGE_BLOCK):
            out.append(f"{block.network_address + 1}-{block.broadcast_address - 3}")
    return tuple(out)


def _check_pools_disjoint(t: _Table, key: str, pools: tuple[str, ...]) -> None:
    spans = sorted(((r.start, r.stop, p) for r, p in ((pool_addresses(p), p) for p in pools)))
    for (_, stop, a), (start, _, b) in itertools.pairwise(spans):
        if start < stop:
            t.fail(key, f"pools {a!r} and {b!r} overlap")


def _group(src: str, index: int, data: dict[str, Any]) -> DeviceGroup:
    table = f"device[{index}]"
    kind = data.get("kind")
    if kind not in KINDS:
        raise ConfigError(src, table, "kind", f"must be one of {', '.join(KINDS)}, got {kind!r}")
    t = _Table(src, table, data, _KIND_KEYS[kind])
    count = t.positive("count", 1)
    if count > MAX_DEVICES:
        t.fail("count", f"must be at most {MAX_DEVICES}, got {count}")
    first = t.positive("first", 1, zero=True)
    name = t.get("name", str, None, what="a string")
    if name is None:
        t.fail("name", "missing (a pattern such as 'line{n:03}')")
    try:
        sample = format_pattern(name, first)
    except ValueError as exc:
        t.fail("name", f"bad pattern {name!r}: {exc}")
    if not NAME_OK.fullmatch(sample):
        t.fail("name", f"device names must be letters, digits, '.', '_' or '-', got {sample!r}")
    if count > 1 and sample == format_pattern(name, first + 1):
        t.fail("name", f"pattern {name!r} gives every device the same name; use {{n}}")
    port = t.positive("port", 0, zero=True)
    if port > 65535:
        t.fail("port", f"must be 0..65535, got {port}")
    port_step = t.positive("port_step", 0, zero=True)
    address = t.get("address", str, None, what="a string")
    if address is not None:
        try:
            ipaddress.IPv4Address(address)
        except ValueError:
            t.fail("address", f"not an IPv4 address: {address!r}")
    pool = t.pool("address_pool") or ()
    if address and pool:
        t.fail("address_pool", "give either address or address_pool, not both")
    _check_pools_disjoint(t, "address_pool", pool)
    group = DeviceGroup(
        index=index, kind=kind, count=count, name=name, first=first,
        port=port or DEFAULT_PORT[kind], port_step=port_step, address=address, address_pool=pool,
        identity=_identity(t, kind, first), delay=_delay(t),
    )
    if kind == "enip":
        return _enip(t, group)
    if kind == "modbus-rtu":
        from fleet.rtu_lines import parse_group

        return _replace(_modbus(t, group), rtu=parse_group(t, index))
    return _modbus(t, group)


def _identity(t: _Table, kind: str, first: int) -> tuple[tuple[str, Any], ...]:
    identity = t.get("identity", dict, {}, what="a table")
    allowed = IDENTITY_KEYS[kind]
    for key, value in identity.items():
        if key not in allowed:
            t.fail("identity", f"unknown identity key {key!r} (allowed: {', '.join(sorted(allowed))})")
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            t.fail("identity", f"{key} must be an integer or a string pattern, got {value!r}")
        try:
            identity_value(kind, key, value, first)
        except ValueError as exc:
            t.fail("identity", str(exc))
    return tuple(sorted(identity.items()))


def identity_value(kind: str, key: str, value: int | str, n: int) -> int | str:
    """One identity value for device ``n``: strings are patterns formatted with ``n``;
    integer fields are then parsed with ``int(text, 0)``.

    >>> identity_value("enip", "serial_number", "0x5100{n:04}", 7)
    1358954503
    """
    if isinstance(value, str):
        try:
            value = format_pattern(value, n)
        except ValueError as exc:
            raise ValueError(f"{key}: bad pattern {value!r}: {exc}") from None
    if IDENTITY_KEYS[kind][key] is int and isinstance(value, str):
        try:
            value = int(value, 0)
        except ValueError:
            raise ValueError(f"{key}: {value!r} is not an integer") from None
    limit = 32 if kind == "enip" else 240
    if isinstance(value, str) and len(value.encode()) > limit:
        raise ValueError(f"{key}: {value!r} is longer than {limit} bytes")
    if IDENTITY_KEYS[kind][key] is int and not 0 <= value < 2**32:
        raise ValueError(f"{key}: {value} is out of range 0..2**32-1")
    return value


def _delay(t: _Table) -> float | tuple[float, float] | None:
    value = t.get("delay", (int, float, list), None, what="seconds or [lo, hi]")
    if value is None:
        return None
    if isinstance(value, list):
        if len(value) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            t.fail("delay", f"must be seconds or [lo, hi], got {value!r}")
        lo, hi = float(value[0]), float(value[1])
        if not 0 <= lo <= hi < math.inf:
            t.fail("delay", f"needs 0 <= lo <= hi, got {value!r}")
        return (lo, hi)
    if not 0 <= value < math.inf:
        t.fail("delay", f"must be finite and >= 0, got {value!r}")
    return float(value)


def _enip(t: _Table, group: DeviceGroup) -> DeviceGroup:
    tags = t.specs("tags", parse_tag_spec, "an ENIP device needs at least one tag, such as 'SCADA=INT[100]'")
    names = [tag.name.lower() for tag in tags]
    for name in names:
        if names.count(name) > 1:
            t.fail("tags", f"tag {name!r} declared twice")
    route_path = t.get("route_path", (str, bool), None, what="a string such as '1/0' or false")
    if route_path is True or (isinstance(route_path, str) and not _ROUTE.fullmatch(route_path)):
        t.fail("route_path", f"must be a '<port>/<link>' string (such as '1/0') or false, got {route_path!r}")
    health_tag = t.get("health_tag", str, None, what="a string")
    if health_tag is not None and health_tag.split("[")[0].lower() not in names:
        t.fail("health_tag", f"{health_tag!r} is not one of the device's tags")
    return _replace(group, tags=tuple(tags), route_path=route_path,
                    simple=t.get("simple", bool, False, what="true or false"),
                    health_tag=health_tag or tags[0].health_read)


def _modbus(t: _Table, group: DeviceGroup) -> DeviceGroup:
    ranges = t.specs("registers", parse_register_spec,
                     "a Modbus device needs at least one range, such as '40001-40100=0'")
    units = t.get("unit_ids", list, [1], what="a list of integers")
    if not units or not all(isinstance(u, int) and not isinstance(u, bool) and 0 <= u <= 255 for u in units):
        t.fail("unit_ids", f"must be a non-empty list of integers 0..255, got {units!r}")
    reg = t.get("health_register", int, None, what="an integer")
    if reg is not None and not any(r.contains(reg) for r in ranges):
        t.fail("health_register", f"{reg} is not in any of the device's register ranges")
    return _replace(group, registers=tuple(ranges), unit_ids=tuple(units),
                    health_register=reg if reg is not None else ranges[0].first)


def _replace(group: DeviceGroup, **changes: Any) -> DeviceGroup:
    from dataclasses import replace

    return replace(group, **changes)
