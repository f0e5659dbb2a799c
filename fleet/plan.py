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
    identity_values,
    pool_addresses,
)
from fleet.kinds import KINDS
from fleet.patterns import format_pattern


@dataclass(frozen=True)
class PlannedDevice:
    """One device, ready to serve and to poll."""

    name: str  # unique in the fleet
    kind: str  # a key of fleet.kinds.KINDS: "enip", "modbus"
    host: str  # its own IP address
    port: int  # TCP (and ENIP UDP) port
    worker: str  # the worker process hosting it
    group: int  # index of its [[device]] table
    n: int  # its number within the group's pattern
    identity: tuple[tuple[str, Any], ...]  # identity values for this device
    options: Any  # the kind's own settings (fleet.kinds: EnipOptions, ModbusOptions)
    delay: float | tuple[float, float] | None = None  # reply delay
    retain: bool = False  # client writes kept in the state folder across restarts
    home: str = ""  # the fleet file's directory (playback files are relative to it)

    @property
    def endpoint(self) -> str:
        """Where a client reaches it: ``IP:port``, or its kind's (a line's link and unit id)."""
        return KINDS[self.kind].endpoint(self)

    @property
    def identity_dict(self) -> dict[str, Any]:
        return dict(self.identity)

    @property
    def health(self) -> Any:
        """What the health poller reads (a fleet.kinds TagRead or RegisterRead)."""
        return KINDS[self.kind].health(self.options)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["identity"] = dict(self.identity)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PlannedDevice:
        data = dict(data)
        data["identity"] = tuple(sorted(data["identity"].items()))
        data["options"] = KINDS[data["kind"]].options_from_json(data["options"])
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
    faults: tuple[Any, ...] = ()  # [[fault]] schedule rows (fleet.faults.ScheduleRow)

    def fault_events(self, worker: str) -> list[dict[str, Any]]:
        """The scheduled fault events of ``worker``'s devices, for its spec."""
        if not self.faults:
            return []
        from fleet.faults import expand_schedule

        mine = {d.name for d in self.worker_devices(worker)}
        return [asdict(e) for e in expand_schedule(self.faults, [d.name for d in self.devices])
                if e.device in mine]

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
                "workers": [asdict(w) for w in self.workers], "faults": [r.to_json() for r in self.faults]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Plan:
        fleet = dict(data["fleet"])
        fleet["address_pool"] = tuple(fleet["address_pool"])
        from fleet.faults import ScheduleRow

        return cls(fleet=FleetSettings(**fleet),
                   devices=tuple(PlannedDevice.from_json(d) for d in data["devices"]),
                   workers=tuple(PlannedWorker(w["name"], tuple(w["devices"])) for w in data["workers"]),
                   faults=tuple(ScheduleRow.from_json(r) for r in data.get("faults", [])))

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
        addressed = KINDS[group.kind].addressed(group.options)
        if not addressed:  # reached otherwise (a unit on a serial line)
            hosts = [""] * group.count
        elif group.address is not None:
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
            port = group.port + i * group.port_step if addressed else 0
            if port > 65535:
                raise ConfigError(src, table, "port_step", f"port {port} of {name!r} is beyond 65535")
            if addressed and (host, port) in seen_endpoints:
                other = seen_endpoints[(host, port)]
                raise ConfigError(src, table, "port",
                                  f"port clash: {name!r} and {other!r} both at {host}:{port}")
            seen_endpoints[(host, port)] = name
            try:
                devices.append(_device(group, name, n, host, port, config.fleet.retain))
            except ValueError as exc:  # an identity pattern that fits the first device only
                raise ConfigError(src, table, "identity", f"device {name!r}: {exc}") from None

    for kind in KINDS.values():
        devices = kind.arrange(devices, config)
    workers = []
    planned = []
    for w, chunk in enumerate(_chunks(devices, config.fleet.devices_per_worker)):
        name = f"w{w:03d}"
        workers.append(PlannedWorker(name, tuple(d.name for d in chunk)))
        planned.extend(_with_worker(d, name) for d in chunk)
    names = [d.name for d in planned]
    for i, row in enumerate(config.faults):
        if not any(fnmatch.fnmatchcase(n, row.devices) for n in names):
            raise ConfigError(src, f"fault[{i}]", "devices",
                              f"{row.devices!r} matches no device of the fleet")
    return Plan(fleet=config.fleet, devices=tuple(planned), workers=tuple(workers),
                faults=tuple(config.faults))


def _chunks(devices: list[PlannedDevice], per: int) -> list[list[PlannedDevice]]:
    """The workers' devices, ``per`` to a worker, in plan order; but devices that must be hosted
    together (:meth:`fleet.kinds.Kind.together`: a serial line's units and its gateways) join
    the first of them, are never split, and start a new worker when they would not fit in
    the current one."""
    together: dict[str, list[PlannedDevice]] = {}
    for device in devices:
        key = KINDS[device.kind].together(device)
        if key is not None:
            together.setdefault(key, []).append(device)
    if not together:  # the common case: plain slices
        return [devices[w:w + per] for w in range(0, len(devices), per)]
    chunks: list[list[PlannedDevice]] = []
    placed: set[str] = set()
    for device in devices:
        key = KINDS[device.kind].together(device)
        if key in placed:
            continue
        batch = [device] if key is None else together[key]
        if key is not None:
            placed.add(key)
        if not chunks or (chunks[-1] and len(chunks[-1]) + len(batch) > per):
            chunks.append([])
        chunks[-1].extend(batch)
    return chunks


def _device(group: DeviceGroup, name: str, n: int, host: str, port: int,
            retain: bool = False) -> PlannedDevice:
    """Device ``n`` of ``group``; ValueError when its own identity values are refused."""
    kind = KINDS[group.kind]
    identity = identity_values(kind, group.identity, n)
    if group.identity and n != group.first:  # the first one was built by the config's dry run
        kind.check_identity(identity)
    return PlannedDevice(name=name, kind=group.kind, host=host, port=port, worker="", group=group.index, n=n,
                         identity=tuple(identity.items()), options=group.options, delay=group.delay,
                         retain=retain if group.retain is None else group.retain, home=group.home)


def _with_worker(device: PlannedDevice, worker: str) -> PlannedDevice:
    from dataclasses import replace

    return replace(device, worker=worker)
