"""Expansion of a validated fleet config into concrete devices: names, IP addresses, ports and
worker processes.  Pure: no sockets, no files, no processes.

>>> from fleet.config import parse
>>> cfg = parse('''
... [fleet]
... name = "t"
... address_pool = "127.77.1.0/24"
... devices_per_worker = 2
... [[device]]
... kind = "modbus"
... count = 3
... name = "pump{n}"
... registers = ["40001-40010=7"]
... ''')
>>> [(d.name, d.host, d.port, d.worker) for d in expand(cfg).devices]
... # doctest: +NORMALIZE_WHITESPACE
[('pump1', '127.77.1.1', 502, 'w000'), ('pump2', '127.77.1.2', 502, 'w000'),
 ('pump3', '127.77.1.3', 502, 'w001')]
"""

from __future__ import annotations

import fnmatch
import ipaddress
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from fleet.config import (
    NAME_OK,
    ConfigError,
    DeviceGroup,
    FleetConfig,
    FleetSettings,
    identity_value,
    pool_addresses,
)
from fleet.patterns import format_pattern
from fleet.registers import register_block


@dataclass(frozen=True)
class PlannedDevice:
    """One device, ready to serve and to poll."""

    name: str  # unique in the fleet
    kind: str  # "enip" or "modbus"
    host: str  # its own IP address
    port: int  # TCP (and ENIP UDP) port
    worker: str  # the worker process hosting it
    group: int  # index of its [[device]] table
    n: int  # its number within the group's pattern
    specs: tuple[str, ...]  # tag specs (ENIP) or register ranges (Modbus), as written
    identity: tuple[tuple[str, Any], ...]  # identity values for this device
    delay: float | tuple[float, float] | None = None  # reply delay
    route_path: str | bool | None = None  # ENIP route path ("1/0", false, unset)
    simple: bool = False  # ENIP simple device
    unit_ids: tuple[int, ...] = (1,)  # Modbus unit ids
    health_read: str = ""  # ENIP: tag to read; Modbus: "<table>:<zero-based address>"
    rtu: Any = None  # modbus-rtu: fleet.rtu_lines.RtuOptions

    @property
    def endpoint(self) -> str:
        if self.rtu is not None:
            from fleet.rtu_lines import endpoint

            return endpoint(self)
        return f"{self.host}:{self.port}"

    @property
    def identity_dict(self) -> dict[str, Any]:
        return dict(self.identity)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["identity"] = dict(self.identity)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PlannedDevice:
        data = dict(data)
        data["specs"] = tuple(data["specs"])
        data["identity"] = tuple(sorted(data["identity"].items()))
        data["unit_ids"] = tuple(data["unit_ids"])
        if data.get("rtu") is not None:
            from fleet.rtu_lines import RtuOptions

            data["rtu"] = RtuOptions.from_json(data["rtu"])
        if isinstance(data.get("delay"), list):
            data["delay"] = tuple(data["delay"])
        return cls(**data)


@dataclass(frozen=True)
class PlannedWorker:
    """One worker process and the devices it hosts."""

    name: str  # "w000"
    devices: tuple[str, ...]  # device names, in plan order


@dataclass(frozen=True)
class Plan:
    """The expanded fleet."""

    fleet: FleetSettings
    devices: tuple[PlannedDevice, ...]
    workers: tuple[PlannedWorker, ...] = field(default_factory=tuple)

    def device(self, name: str) -> PlannedDevice:
        for device in self.devices:
            if device.name == name:
                return device
        raise KeyError(name)

    def select(self, patterns: Iterable[str] | None) -> tuple[PlannedDevice, ...]:
        """Devices whose name (or worker name) matches any glob pattern; all for None."""
        patterns = list(patterns or [])
        if not patterns:
            return self.devices
        return tuple(d for d in self.devices
                     if any(fnmatch.fnmatchcase(d.name, p) or d.worker == p for p in patterns))

    def worker_devices(self, worker: str) -> tuple[PlannedDevice, ...]:
        return tuple(d for d in self.devices if d.worker == worker)

    def to_json(self) -> dict[str, Any]:
        return {"fleet": asdict(self.fleet), "devices": [d.to_json() for d in self.devices],
                "workers": [asdict(w) for w in self.workers]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Plan:
        fleet = dict(data["fleet"])
        fleet["address_pool"] = tuple(fleet["address_pool"])
        return cls(fleet=FleetSettings(**fleet),
                   devices=tuple(PlannedDevice.from_json(d) for d in data["devices"]),
                   workers=tuple(PlannedWorker(w["name"], tuple(w["devices"])) for w in data["workers"]))

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=1, sort_keys=True)


class _Pool:
    """Hands out addresses, in order, from a list of pool items."""

    def __init__(self, items: tuple[str, ...], label: str) -> None:
        self.ranges = [pool_addresses(item) for item in items]
        self.label = label
        self.items = items
        self.used = 0

    @property
    def size(self) -> int:
        return sum(len(r) for r in self.ranges)

    def take(self, count: int, src: str, table: str, key: str) -> list[str]:
        if self.used + count > self.size:
            raise ConfigError(src, table, key, f"address pool exhausted: {self.label} {list(self.items)} has "
                                               f"{self.size - self.used} addresses left, {count} needed")
        out = []
        for i in range(self.used, self.used + count):
            for r in self.ranges:
                if i < len(r):
                    out.append(str(ipaddress.IPv4Address(r[i])))
                    break
                i -= len(r)
        self.used += count
        return out

    def overlaps(self, other: _Pool) -> bool:
        return any(a.start < b.stop and b.start < a.stop for a in self.ranges for b in other.ranges)


def expand(config: FleetConfig) -> Plan:
    """The concrete plan; raise ConfigError for duplicate names, overlapping or exhausted pools
    and port clashes."""
    src = str(config.source)
    fleet_pool = _Pool(config.fleet.address_pool, "fleet address_pool")
    group_pools: dict[int, _Pool] = {}
    for group in config.groups:
        if group.address_pool:
            pool = _Pool(group.address_pool, f"device[{group.index}] address_pool")
            for other_index, other in [(-1, fleet_pool), *group_pools.items()]:
                if pool.overlaps(other):
                    what = "the fleet's address_pool" if other_index < 0 else f"device[{other_index}]'s"
                    raise ConfigError(src, f"device[{group.index}]", "address_pool", f"overlaps {what}")
            group_pools[group.index] = pool

    devices: list[PlannedDevice] = []
    seen_names: dict[str, int] = {}
    seen_endpoints: dict[tuple[str, int], str] = {}
    for group in config.groups:
        table = f"device[{group.index}]"
        if group.address is not None:
            hosts = [group.address] * group.count
        else:
            pool = group_pools.get(group.index, fleet_pool)
            key = "address_pool" if group.index in group_pools else "count"
            hosts = pool.take(group.count, src, table, key)
        for i, host in enumerate(hosts):
            n = group.first + i
            name = format_pattern(group.name, n)  # checked by config for the first n
            if not NAME_OK.fullmatch(name):
                raise ConfigError(src, table, "name", f"pattern {group.name!r} gives device {n} the name "
                                                      f"{name!r}: use letters, digits, '.', '_' or '-'")
            if name in seen_names:
                raise ConfigError(src, table, "name", f"duplicate device name {name!r} "
                                                      f"(also in device[{seen_names[name]}])")
            seen_names[name] = group.index
            port = group.port + i * group.port_step
            if port > 65535:
                raise ConfigError(src, table, "port_step", f"port {port} of {name!r} is beyond 65535")
            if (host, port) in seen_endpoints:
                other = seen_endpoints[(host, port)]
                raise ConfigError(src, table, "port",
                                  f"port clash: {name!r} and {other!r} both at {host}:{port}")
            seen_endpoints[(host, port)] = name
            try:
                devices.append(_device(group, name, n, host, port))
            except ValueError as exc:  # an identity pattern that fits the first device only
                raise ConfigError(src, table, "identity", f"device {name!r}: {exc}") from None

    from fleet.rtu_lines import arrange, chunks

    devices = arrange(devices, config)
    per = config.fleet.devices_per_worker
    workers = []
    planned = []
    for w, chunk in enumerate(chunks(devices, per)):
        name = f"w{w:03d}"
        workers.append(PlannedWorker(name, tuple(d.name for d in chunk)))
        planned.extend(_with_worker(d, name) for d in chunk)
    return Plan(fleet=config.fleet, devices=tuple(planned), workers=tuple(workers))


def _device(group: DeviceGroup, name: str, n: int, host: str, port: int) -> PlannedDevice:
    identity = tuple((k, identity_value(group.kind, k, v, n)) for k, v in group.identity)
    if group.kind == "enip":
        specs = tuple(tag.spec for tag in group.tags)
        health = group.health_tag or ""
    else:
        specs = tuple(r.spec for r in group.registers)
        table, offset = register_block(group.health_register or group.registers[0].first)
        health = f"{table}:{offset}"
    return PlannedDevice(
        name=name, kind=group.kind, host=host, port=port, worker="", group=group.index, n=n,
        specs=specs, identity=identity, delay=group.delay, route_path=group.route_path,
        simple=group.simple, unit_ids=group.unit_ids, health_read=health,
    )


def _with_worker(device: PlannedDevice, worker: str) -> PlannedDevice:
    from dataclasses import replace

    return replace(device, worker=worker)
