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
import functools
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

from fleet.bulk import no_collections
from fleet.config import (
    NAME_OK,
    ConfigError,
    DeviceGroup,
    FleetConfig,
    FleetSettings,
    identity_value,
    identity_values,
    pool_addresses,
)
from fleet.kinds import KINDS
from fleet.patterns import format_pattern


class PlannedDevice(NamedTuple):
    """One device, ready to serve and to poll.  (A named tuple: ten times as quick to make as a
    frozen dataclass, and smaller, for the 100,000 of a plan read by every command and process.)"""

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
    files_root: str = ""  # where the host's files are seen: "" on the host, a docker container's mount

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

    def to_json(self, options: Any = None) -> dict[str, Any]:
        """The JSON form; ``options``: what to write for the options instead of their JSON (an
        index into a table of the options shared by many devices: :func:`devices_to_json`)."""
        data = {f: getattr(self, f) for f in _DEVICE_FIELDS}
        data["identity"] = dict(self.identity)
        data["options"] = asdict(self.options) if options is None else options
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any], options: Sequence[Any] = ()) -> PlannedDevice:
        """From :meth:`to_json`'s form; an integer ``options`` is an index into ``options``
        (already parsed: the devices of a group share one options object)."""
        data = dict(data)
        data["identity"] = tuple(sorted(data["identity"].items()))
        if isinstance(data["options"], int):
            data["options"] = options[data["options"]]
        else:
            data["options"] = KINDS[data["kind"]].options_from_json(data["options"])
        if isinstance(data.get("delay"), list):
            data["delay"] = tuple(data["delay"])
        return cls(**data)


_DEVICE_FIELDS = tuple(f for f in PlannedDevice._fields if f not in ("identity", "options"))


def devices_to_json(devices: Iterable[PlannedDevice]) -> dict[str, Any]:
    """``{"options": [...], "columns": [...], "rows": [[...], ...]}``: each distinct options
    object written once and named by its index (a fleet of 100,000 devices has a handful), a
    device as a row of values in ``columns`` order, so plan.json stays small and quick to read."""
    table: dict[int, int] = {}
    shared: list[dict[str, Any]] = []
    rows = []
    for d in devices:
        index = table.get(id(d.options))
        if index is None:
            index = table[id(d.options)] = len(shared)
            shared.append({"kind": d.kind, "options": asdict(d.options)})
        rows.append([d.name, d.kind, d.host, d.port, d.worker, d.group, d.n, dict(d.identity), index,
                     d.delay, d.retain, d.home, d.files_root])
    return {"options": shared, "columns": list(_COLUMNS), "rows": rows}


_COLUMNS = ("name", "kind", "host", "port", "worker", "group", "n", "identity", "options", "delay", "retain",
            "home", "files_root")


def devices_from_json(data: Mapping[str, Any]) -> list[PlannedDevice]:
    """The devices of :func:`devices_to_json`'s form (or the older one: a dict per device)."""
    with no_collections():
        return _devices_from_json(data)


def _devices_from_json(data: Mapping[str, Any]) -> list[PlannedDevice]:
    shared = [KINDS[o["kind"]].options_from_json(o["options"]) for o in data.get("options", ())]
    if "rows" not in data:
        return [PlannedDevice.from_json(d, shared) for d in data["devices"]]
    if tuple(data["columns"]) != _COLUMNS:
        return [PlannedDevice.from_json(dict(zip(data["columns"], row, strict=True)), shared)
                for row in data["rows"]]
    out = []
    for name, kind, host, port, worker, group, n, identity, options, delay, retain, home, root in data[
            "rows"]:
        out.append(PlannedDevice(name, kind, host, port, worker, group, n, tuple(sorted(identity.items())),
                                 shared[options], tuple(delay) if isinstance(delay, list) else delay,
                                 retain, home, root))
    return out


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
    digest: str = ""  # the fleet.toml it is the whole expansion of (fleet.config); "": a selection

    def fault_events(self, worker: str) -> list[dict[str, Any]]:
        """The scheduled fault events of ``worker``'s devices, for its spec."""
        if not self.faults:
            return []
        from fleet.faults import expand_schedule

        mine = {d.name for d in self.worker_devices(worker)}
        return [asdict(e) for e in expand_schedule(self.faults, [d.name for d in self.devices])
                if e.device in mine]

    @functools.cached_property
    def _by_name(self) -> dict[str, PlannedDevice]:
        return {d.name: d for d in self.devices}

    @functools.cached_property
    def _by_worker(self) -> dict[str, tuple[PlannedDevice, ...]]:
        out: dict[str, list[PlannedDevice]] = {}
        for device in self.devices:
            out.setdefault(device.worker, []).append(device)
        return {w: tuple(ds) for w, ds in out.items()}

    def device(self, name: str) -> PlannedDevice:
        return self._by_name[name]

    def select(self, patterns: Iterable[str] | None) -> tuple[PlannedDevice, ...]:
        """Devices whose name (or worker name) matches any glob pattern; all for None."""
        patterns = list(patterns or [])
        if not patterns:
            return self.devices
        return tuple(d for d in self.devices
                     if any(fnmatch.fnmatchcase(d.name, p) or d.worker == p for p in patterns))

    def worker_devices(self, worker: str) -> tuple[PlannedDevice, ...]:
        return self._by_worker.get(worker, ())

    def to_json(self) -> dict[str, Any]:
        return {"fleet": asdict(self.fleet), **devices_to_json(self.devices),
                "workers": [asdict(w) for w in self.workers], "faults": [r.to_json() for r in self.faults],
                "digest": self.digest}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Plan:
        fleet = dict(data["fleet"])
        fleet["address_pool"] = tuple(fleet["address_pool"])
        from fleet.faults import ScheduleRow

        return cls(fleet=FleetSettings(**fleet),
                   devices=tuple(devices_from_json(data)),
                   workers=tuple(PlannedWorker(w["name"], tuple(w["devices"])) for w in data["workers"]),
                   faults=tuple(ScheduleRow.from_json(r) for r in data.get("faults", [])),
                   digest=data.get("digest", ""))

    def dumps(self) -> str:
        """plan.json's text: one line per device (100,000 devices: about 15 MB)."""
        data = self.to_json()
        rows = data.pop("rows")
        head = json.dumps(data, sort_keys=True)[:-1]
        lines = ",\n".join(json.dumps(row, separators=(",", ":")) for row in rows)
        return f'{head}, "rows": [\n{lines}\n]}}\n'



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
        out: list[str] = []
        skip = self.used  # addresses handed out before: skip whole ranges, never enumerate them
        for r in self.ranges:
            if skip >= len(r):
                skip -= len(r)
                continue
            part = r[skip:skip + count - len(out)]
            skip = 0
            out.extend(f"{a >> 24}.{a >> 16 & 255}.{a >> 8 & 255}.{a & 255}" for a in part)
            if len(out) == count:
                break
        self.used += count
        return out

    def overlaps(self, other: _Pool) -> bool:
        return any(a.start < b.stop and b.start < a.stop for a in self.ranges for b in other.ranges)


def expand(config: FleetConfig) -> Plan:
    """The concrete plan; raise ConfigError for duplicate names, overlapping or exhausted pools
    and port clashes."""
    with no_collections():  # a device is a few new objects: 100,000 of them, see fleet.bulk
        return _expand(config)


def _expand(config: FleetConfig) -> Plan:
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
    per = config.fleet.devices_per_worker
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
        identities = _Identities(group)
        kind, index, options, delay, home = group.kind, group.index, group.options, group.delay, group.home
        retain = config.fleet.retain if group.retain is None else group.retain
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
                devices.append(PlannedDevice(name, kind, host, port, f"w{len(devices) // per:03d}", index, n,
                                             identities(n), options, delay, retain, home))
            except ValueError as exc:  # an identity pattern that fits the first device only
                raise ConfigError(src, table, "identity", f"device {name!r}: {exc}") from None

    for kind in KINDS.values():
        devices = kind.arrange(devices, config)
    workers = []
    planned = []
    for w, chunk in enumerate(_chunks(devices, config.fleet.devices_per_worker)):
        name = f"w{w:03d}"
        workers.append(PlannedWorker(name, tuple(d.name for d in chunk)))
        planned.extend(d if d.worker == name else _with_worker(d, name) for d in chunk)
    if config.fleet.backend == "process":
        _check_fits(src, planned, workers)
    names = [d.name for d in planned]
    for i, row in enumerate(config.faults):
        if not any(fnmatch.fnmatchcase(n, row.devices) for n in names):
            raise ConfigError(src, f"fault[{i}]", "devices",
                              f"{row.devices!r} matches no device of the fleet")
    return Plan(fleet=config.fleet, devices=tuple(planned), workers=tuple(workers),
                faults=tuple(config.faults), digest=config.digest)


def _check_fits(src: str, devices: Sequence[PlannedDevice], workers: Sequence[PlannedWorker]) -> None:
    """ConfigError (one line, naming the limit) when a worker's devices need more file
    descriptors than one process may hold (``fleet.limits``)."""
    from fleet.limits import MARGIN, limit_name, nofile_limit, worker_fds

    limit = nofile_limit()
    start = 0
    for worker in workers:
        chunk = devices[start:start + len(worker.devices)]
        start += len(worker.devices)
        need = worker_fds(KINDS[d.kind].sockets for d in chunk)
        if need > limit:
            most = max({d.kind for d in chunk}, key=lambda k: KINDS[k].sockets)
            fit = max(1, (limit - MARGIN) // (KINDS[most].sockets + 1))
            raise ConfigError(src, "fleet", "devices_per_worker",
                              f"worker {chunk[0].worker}'s {len(chunk)} devices need {need} open files "
                              f"(listening sockets, a health connection each, {MARGIN} more), over "
                              f"{limit_name(limit)}: at most {fit} {most} devices per worker")


@functools.lru_cache(maxsize=64)
def _patterned(identity: tuple[tuple[str, Any], ...]) -> tuple[str, ...]:
    """The identity keys whose values depend on ``n`` (patterns with a field)."""
    return tuple(k for k, v in identity if isinstance(v, str) and "{" in v)


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


class _Identities:
    """A group's identity values device by device: the values that do not depend on ``n`` are
    computed once (the config's dry run checked them on the first device), the patterned ones
    formatted for each device and checked against their fields (a plan of 100,000 devices)."""

    __slots__ = ("constant", "first", "fixed", "items", "kind", "patterns")

    def __init__(self, group: DeviceGroup) -> None:
        self.kind = KINDS[group.kind]
        self.first = group.first
        self.items = group.identity
        patterned = _patterned(group.identity)
        self.patterns = tuple((k, v) for k, v in group.identity if k in patterned)
        self.fixed = identity_values(self.kind, tuple((k, v) for k, v in group.identity
                                                      if k not in patterned), group.first)
        self.constant = tuple(self.fixed.items())  # every device's, when none is patterned

    def __call__(self, n: int) -> tuple[tuple[str, Any], ...]:
        """Device ``n``'s identity, in the group's key order; ValueError when a patterned value
        of a device past the first is refused."""
        if not self.patterns:
            return self.constant
        kind = self.kind
        own = {k: identity_value(kind, k, v, n) for k, v in self.patterns}
        if n != self.first:
            kind.check_identity(own)
        fixed = self.fixed
        return tuple([(k, own[k] if k in own else fixed[k]) for k, _ in self.items])


def _with_worker(device: PlannedDevice, worker: str) -> PlannedDevice:

    return device._replace(worker=worker)
