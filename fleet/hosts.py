"""One fleet across several lab hosts: the ``[hosts]`` table and ``[[host]]`` entries of
fleet.toml, and each host's shard of the devices.

    [hosts]                       # defaults for every host (all optional)
    user = "root"                 # SSH user (not root: it must sudo without a password)
    key = "lab-key"               # SSH private key, relative to fleet.toml
    interface = "eth0"            # the interface each host adds its devices' addresses to
    inventory = "lab.ini"         # or take the hosts from an Ansible inventory (group labhosts)
    timeout = 20.0                # seconds one command may take on one host
    vars = { cpppo_fleet_build_dir = "/srv/wheels" }   # extra variables for the labhost role

    [[host]]
    name = "lab1"
    address = "192.0.2.10"        # where SSH reaches it
    address_pool = "192.0.2.128/26"   # its devices' addresses, on its own interface
    groups = [0]                  # optional: these [[device]] groups, whole, run here

Groups that no host claims are spread over the hosts without ``groups`` by count: their
devices, in file order, go in contiguous runs of (nearly) equal size to the hosts in the order
they are named (device names keep their ``n``: a group split over two hosts becomes two
groups with ``first`` and ``count``).  Each host's shard is an ordinary fleet file
(:meth:`Shard.toml`): the ``[fleet]`` table with the host's pool, ``addressing = "alias"``
and its interface, its part of the ``[[device]]`` groups, and the ``[[fault]]`` rows that
match its devices.  Every shard is validated like any fleet file, so what validates is what
each host serves.  Deploying and asking the hosts is :mod:`fleet.lab`.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import json
import shutil
import subprocess
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleet.config import NAME_OK, FleetConfig, parse
from fleet.config.pools import check_pools_disjoint, read_pool
from fleet.patterns import format_pattern
from fleet.plan import Plan, expand
from fleet.table import ConfigError, Table

HOSTS_KEYS = frozenset({"user", "key", "port", "interface", "inventory", "group", "timeout", "vars"})
HOST_KEYS = frozenset({"name", "address", "user", "key", "port", "interface", "address_pool", "groups"})
INVENTORY_GROUP = "labhosts"  # the group the labhost playbook provisions
# inventory host variables that stand for [[host]] keys
INVENTORY_VARS = {"address": "ansible_host", "user": "ansible_user", "port": "ansible_port",
                  "key": "ansible_ssh_private_key_file", "address_pool": "cpppo_fleet_address_pool",
                  "interface": "cpppo_fleet_interface"}


@dataclass(frozen=True)
class LabHost:
    """One lab host of the fleet, and how SSH reaches it."""

    name: str
    address: str
    address_pool: tuple[str, ...]
    user: str = "root"
    port: int = 22
    key: str | None = None  # absolute path of the SSH private key (None: ssh's own)
    interface: str = "eth0"
    groups: tuple[int, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "address": self.address, "user": self.user, "port": self.port,
                "key": self.key, "interface": self.interface, "address_pool": list(self.address_pool)}


@dataclass(frozen=True)
class Shard:
    """A host and the devices it runs: ``plan`` is its fleet file's plan."""

    host: LabHost
    toml: str  # the host's fleet file
    plan: Plan


@dataclass(frozen=True)
class MultiHost:
    """A fleet file that names lab hosts: the fleet and its shards."""

    config: FleetConfig
    shards: tuple[Shard, ...]
    timeout: float = 20.0
    extra_vars: dict[str, str] = field(default_factory=dict)
    vms: Any = None  # backend = "vagrant": its fleet.vagrant.VagrantSettings (the hosts are its VMs)

    @property
    def name(self) -> str:
        return self.config.fleet.name

    @property
    def hosts(self) -> tuple[LabHost, ...]:
        return tuple(s.host for s in self.shards)

    def shard(self, host: str) -> Shard:
        return next(s for s in self.shards if s.host.name == host)

    def host_of(self, device: str) -> Shard | None:
        return next((s for s in self.shards if any(d.name == device for d in s.plan.devices)), None)

    def matching(self, pattern: str) -> list[Shard]:
        """The shards with a device (or worker name) matching the glob ``pattern``."""
        return [s for s in self.shards if s.plan.select([pattern])]


def is_multihost(path: Path) -> bool:
    """Whether the fleet file ``path`` names lab hosts (unreadable or bad TOML: no, and the
    single-host commands report the problem)."""
    try:
        data = tomllib.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False
    from fleet.config import is_multihost_data

    return is_multihost_data(data)


def load(path: str | Path) -> MultiHost:
    """The fleet of ``path`` and its shards; ConfigError (one line) on any problem."""
    from fleet.config import load as load_config

    config = load_config(path)
    src = str(path)
    data = tomllib.loads(Path(path).read_text())
    if not config.multihost:
        raise ConfigError(src, "hosts", None, "the fleet names no lab hosts ([[host]] or [hosts] inventory)")
    if config.fleet.backend == "vagrant":
        from fleet.vagrant import shard_vms

        return shard_vms(config, data, src, shard_fleet)
    return shard_fleet(config, data, src)


def shard_fleet(config: FleetConfig, data: dict[str, Any], src: str) -> MultiHost:
    settings = data.get("hosts", {})
    if not isinstance(settings, dict):
        raise ConfigError(src, "hosts", None, "must be a table ([hosts])")
    t = Table(src, "hosts", settings, HOSTS_KEYS)
    home = Path(src).resolve().parent
    timeout = float(t.positive("timeout", 20.0, (int, float)))
    extra = t.get("vars", dict, {}, what="a table of strings")
    if not all(isinstance(v, str | int | float | bool) for v in extra.values()):
        t.fail("vars", "values must be strings, numbers or booleans")
    defaults = {"user": t.get("user", str, "root", what="a user name"),
                "key": t.get("key", str, None, what="a path"),
                "port": t.positive("port", 22),
                "interface": t.get("interface", str, None, what="an interface name")}
    entries = data.get("host", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ConfigError(src, "host", None, "must be an array of tables ([[host]])")
    inventory = t.get("inventory", str, None, what="a path")
    from_inventory: dict[str, dict[str, Any]] = {}
    if inventory is not None:
        group = t.get("group", str, INVENTORY_GROUP, what="a group name")
        from_inventory = t.checked("inventory", lambda: read_inventory(home / inventory, group))
    if config.fleet.backend != "process":
        raise ConfigError(src, "fleet", "backend", "a multi-host fleet runs the process backend on each "
                                                   f"host, got {config.fleet.backend!r}")
    for group in config.groups:
        if group.address or group.address_pool:
            raise ConfigError(src, f"device[{group.index}]", "address" if group.address else "address_pool",
                              "a multi-host fleet takes its addresses from each [[host]]'s address_pool")
    hosts = _hosts(src, home, entries, from_inventory, defaults, config)
    if not hosts:
        raise ConfigError(src, "host", None, "no lab hosts: add [[host]] entries or a [hosts] inventory")
    check_pools_disjoint(Table(src, "host", {}, ()), "address_pool",
                         tuple(p for h in hosts for p in h.address_pool))
    shards = tuple(_shard(src, config, data, host, index, part)
                   for index, (host, part) in enumerate(zip(hosts, _split(src, config, hosts), strict=True)))
    extra_vars = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in extra.items()}
    return MultiHost(config=config, shards=shards, timeout=timeout, extra_vars=extra_vars)


def _hosts(src: str, home: Path, entries: list[dict], inventory: dict[str, dict[str, Any]],
           defaults: dict[str, Any], config: FleetConfig) -> list[LabHost]:
    named = {}
    for index, entry in enumerate(entries):
        t = Table(src, f"host[{index}]", entry, HOST_KEYS)
        name = t.get("name", str, None, what="a string")
        if name is None or not NAME_OK.fullmatch(name):
            t.fail("name", f"needs a host name of letters, digits, '.', '_' or '-', got {name!r}")
        if name in named:
            t.fail("name", f"duplicate host {name!r}")
        named[name] = (index, t)
    for name in inventory:
        if name not in named:
            named[name] = (None, None)
    hosts = []
    claimed: dict[int, str] = {}
    for name, (index, t) in named.items():
        table = f"host[{index}]" if index is not None else f"host {name!r} of the inventory"
        seen = inventory.get(name, {})
        t = t or Table(src, table, {}, ())

        def value(key: str, kind: type, what: str, t: Table = t, seen: dict = seen) -> Any:
            got = t.get(key, kind, None, what=what)
            if got is None and INVENTORY_VARS.get(key) in seen:
                got = seen[INVENTORY_VARS[key]]
                got = int(got) if kind is int else str(got)
            return defaults.get(key) if got is None else got

        address = value("address", str, "an address or host name")
        if not address:
            t.fail("address", "missing (where SSH reaches the host)")
        pool = read_pool(t, "address_pool")
        if pool is None and INVENTORY_VARS["address_pool"] in seen:
            pool = read_pool(Table(src, table, {"address_pool": seen[INVENTORY_VARS["address_pool"]]},
                                   {"address_pool"}), "address_pool")
        if not pool:
            t.fail("address_pool", "missing (the host's device addresses, on its own interface)")
        port = value("port", int, "an integer")
        if not isinstance(port, int) or not 0 < port < 65536:
            t.fail("port", f"must be 1..65535, got {port!r}")
        key = value("key", str, "a path")
        groups = t.get("groups", list, [], what="a list of [[device]] indexes")
        for g in groups:
            if not isinstance(g, int) or isinstance(g, bool) or not 0 <= g < len(config.groups):
                t.fail("groups", f"{g!r} is not a [[device]] index (0..{len(config.groups) - 1})")
            if g in claimed:
                t.fail("groups", f"device[{g}] already runs on host {claimed[g]!r}")
            claimed[g] = name
        interface = value("interface", str, "an interface name") or (
            config.fleet.interface if config.fleet.interface != "lo" else "eth0")
        hosts.append(LabHost(name=name, address=address, address_pool=pool, user=value("user", str, "a user"),
                             port=port, key=None if key is None else str((home / key).resolve()),
                             interface=interface, groups=tuple(groups)))
    return hosts


Part = list[tuple[int, int, int]]  # (group index, offset in the group, count)


def _split(src: str, config: FleetConfig, hosts: list[LabHost]) -> list[Part]:
    """Each host's part of the devices: its claimed groups whole, then the unclaimed groups'
    devices in contiguous runs over the hosts that claim none."""
    parts: list[Part] = [[(g, 0, config.groups[g].count) for g in sorted(h.groups)] for h in hosts]
    claimed = {g for h in hosts for g in h.groups}
    free = [g for g in config.groups if g.index not in claimed]
    takers = [i for i, h in enumerate(hosts) if not h.groups]
    total = sum(g.count for g in free)
    if total and not takers:
        raise ConfigError(src, "host", "groups", f"device[{free[0].index}] runs on no host (every host "
                                                 "names its groups; add it to one)")
    sizes = [total // len(takers) + (1 if i < total % len(takers) else 0) for i in range(len(takers))] \
        if takers else []
    runs = iter(zip(takers, sizes, strict=True))
    taker, room = next(runs, (None, 0))
    for group in free:
        offset = 0
        while offset < group.count:
            while room == 0:
                taker, room = next(runs)
            take = min(room, group.count - offset)
            parts[taker].append((group.index, offset, take))
            offset, room = offset + take, room - take
    for host, part in zip(hosts, parts, strict=True):
        if not part:
            raise ConfigError(src, "host", None, f"host {host.name!r} gets no devices ({total} devices to "
                                                 f"share over {len(takers)} hosts)")
    return parts


def _shard(src: str, config: FleetConfig, data: dict[str, Any], host: LabHost, index: int,
           part: Part) -> Shard:
    import tomli_w

    fleet = {**data["fleet"], "address_pool": list(host.address_pool), "addressing": "alias",
             "interface": host.interface}
    devices, names = [], []
    for g, offset, count in part:
        group = config.groups[g]
        table = {**data["device"][g], "count": count, "first": group.first + offset}
        devices.append(table)
        names += [format_pattern(group.name, n) for n in range(table["first"], table["first"] + count)]
    faults = [row for row in data.get("fault", [])
              if any(fnmatch.fnmatchcase(n, str(row.get("devices", ""))) for n in names)]
    text = (f"# host {host.name}'s shard of fleet {config.fleet.name!r} ({src}), written by cpppo-fleet\n"
            + tomli_w.dumps({"fleet": fleet, "device": devices, **({"fault": faults} if faults else {})}))
    where = f"{src} (host {host.name!r})"
    try:
        plan = expand(parse(text, source=Path(src).resolve()))
    except ConfigError as exc:
        if "address pool exhausted" in exc.message:
            raise ConfigError(src, f"host[{index}]", "address_pool", exc.message) from None
        raise ConfigError(where, exc.table, exc.key, exc.message) from None
    return Shard(host=host, toml=text, plan=plan)


def read_inventory(path: Path, group: str) -> dict[str, dict[str, Any]]:
    """The hosts of ``group`` in the Ansible inventory ``path`` and their variables
    (``ansible-inventory --list``, so every inventory format Ansible reads works)."""
    if not path.exists():
        raise ValueError(f"no inventory file {str(path)!r}")
    tool = _ansible_tool("ansible-inventory")
    if tool is None:
        raise ValueError("ansible-inventory not found (pip install ansible-core)")
    try:
        proc = subprocess.run([tool, "-i", str(path), "--list"], capture_output=True, text=True, timeout=60,
                              check=False, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise ValueError(f"ansible-inventory -i {path} took over 60s") from None
    if proc.returncode != 0:
        raise ValueError(f"ansible-inventory -i {path}: {proc.stderr.strip().splitlines()[-1:]}")
    listing = json.loads(proc.stdout)
    names = _group_hosts(listing, group)
    if not names:
        raise ValueError(f"inventory {str(path)!r} has no hosts in group {group!r}")
    hostvars = listing.get("_meta", {}).get("hostvars", {})
    return {name: hostvars.get(name, {}) for name in names}


def _group_hosts(listing: dict[str, Any], group: str, seen: frozenset[str] = frozenset()) -> list[str]:
    entry = listing.get(group, {})
    names = list(entry.get("hosts", []))
    for child in entry.get("children", []):
        if child not in seen:
            names += [n for n in _group_hosts(listing, child, seen | {group}) if n not in names]
    return names


def _ansible_tool(name: str) -> str | None:
    """An Ansible command beside the running interpreter (its virtualenv), else on PATH."""
    import sys

    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name)


def address_in(host: LabHost, address: str) -> bool:
    """Whether ``address`` is one of ``host``'s pool."""
    from fleet.config.pools import pool_addresses

    value = int(ipaddress.IPv4Address(address))
    return any(value in pool_addresses(p) for p in host.address_pool)
