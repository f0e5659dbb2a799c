"""``fleet.toml`` -> validated, frozen specs.

The file has one ``[fleet]`` table and any number of ``[[device]]`` tables, each describing a
*group* of ``count`` devices of one kind (``enip`` or ``modbus``: :mod:`fleet.kinds`) whose
names, identities and addresses are patterned on ``n`` (``name = "line{n:03}"``).  Everything
is checked here, before anything starts, by the same grammar and the same device construction
the workers use; a problem raises :class:`ConfigError`, whose message is one line naming the
file, the table (``device[2]``, counted from 0 as in the file's array), the key and what is
wrong.  Expansion into concrete devices (names, IPs, ports, workers) is ``fleet.plan``.

Where each key is read: ``[fleet]`` in :mod:`fleet.config.settings`, the keys every
``[[device]]`` has in :mod:`fleet.config.devices`, a kind's own keys in :mod:`fleet.kinds`,
address pools in :mod:`fleet.config.pools`.

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

import itertools
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path

from fleet.config.devices import MAX_DEVICES, DeviceGroup, identity_value, identity_values, read_group
from fleet.config.pools import DOCKER_BRIDGE_BLOCK, bridge_pool, pool_addresses
from fleet.config.settings import NAME_OK, FleetSettings, default_interval, read_fleet
from fleet.table import ConfigError

__all__ = ["DOCKER_BRIDGE_BLOCK", "MAX_DEVICES", "NAME_OK", "ConfigError", "DeviceGroup", "FleetConfig",
           "FleetSettings", "bridge_pool", "identity_value", "identity_values", "load", "load_for_backend",
           "parse", "plan_digest", "pool_addresses"]


@dataclass(frozen=True)
class FleetConfig:
    """A whole validated fleet.toml."""

    source: Path  # the file read
    fleet: FleetSettings
    groups: tuple[DeviceGroup, ...] = field(default_factory=tuple)
    faults: tuple = ()  # [[fault]] schedule rows (fleet.faults.ScheduleRow)
    multihost: bool = False  # it names lab hosts ([hosts], [[host]]): fleet.hosts shards it
    digest: str = ""  # of the text it was read from (and the code reading it): a plan expanded
    # from it again would be the same, so `status` can take plan.json's instead (fleet.plan)


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
    unknown = set(data) - {"fleet", "device", "fault", "host", "hosts", "vagrant"}
    if unknown:
        raise ConfigError(src, "top level", sorted(unknown)[0],
                          "unknown table (expected [fleet], [[device]], [[fault]], [hosts], [[host]], "
                          "[vagrant])")
    fleet_table = data.get("fleet")
    if not isinstance(fleet_table, dict):
        raise ConfigError(src, "fleet", None, "missing [fleet] table")
    fleet = read_fleet(src, fleet_table)
    if "vagrant" in data and fleet.backend != "vagrant":
        raise ConfigError(src, "vagrant", None,
                          f'[vagrant] is for backend = "vagrant", not {fleet.backend!r}')
    devices = data.get("device", [])
    if not isinstance(devices, list) or not all(isinstance(d, dict) for d in devices):
        raise ConfigError(src, "device", None, "must be an array of tables ([[device]])")
    if not devices:
        raise ConfigError(src, "device", None, "no [[device]] tables: the fleet is empty")
    groups = tuple(read_group(src, i, table) for i, table in enumerate(devices))
    total = list(itertools.accumulate(g.count for g in groups))
    over = next((i for i, t in enumerate(total) if t > MAX_DEVICES), None)
    if over is not None:
        raise ConfigError(src, f"device[{over}]", "count",
                          f"the fleet would have {total[-1]} devices; at most {MAX_DEVICES} are supported")
    if "health_interval" not in fleet_table:  # the default grows with the fleet
        fleet = replace(fleet, health_interval=default_interval(total[-1]))
    return FleetConfig(source=Path(source), fleet=fleet, groups=groups, faults=read_faults(src, data),
                       digest=plan_digest(text), multihost=is_multihost_data(data))


def is_multihost_data(data: dict) -> bool:
    """Whether the fleet file's ``data`` names lab hosts, or VMs the fleet makes (fleet.vagrant)."""
    fleet = data.get("fleet")
    vagrant = isinstance(fleet, dict) and fleet.get("backend") == "vagrant"
    return "host" in data or "hosts" in data or vagrant


def plan_digest(text: str) -> str:
    """The digest of a fleet.toml text (and of the code expanding it) that plan.json keeps: the
    same digest, the same plan."""
    import hashlib

    from fleet import __version__

    return hashlib.sha1(f"{__version__}\0{PLAN_FORMAT}\0{text}".encode()).hexdigest()[:20]


PLAN_FORMAT = 2  # bump when expanding the same text would give another plan


def read_faults(src: str, data: dict) -> tuple:
    """The ``[[fault]]`` schedule rows (fleet.faults.ScheduleRow), each checked."""
    from fleet.faults import ScheduleError, parse_schedule_row

    rows = data.get("fault", [])
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise ConfigError(src, "fault", None, "must be an array of tables ([[fault]])")
    out = []
    for i, row in enumerate(rows):
        try:
            out.append(parse_schedule_row(row, index=i))
        except ScheduleError as exc:
            raise ConfigError(src, f"fault[{i}]", exc.key, str(exc)) from None
    return tuple(out)


def load_for_backend(path: str | Path, backend: str) -> FleetConfig:
    """:func:`load` with ``[fleet] backend`` replaced (the CLI's ``--backend``), re-validated."""
    config = load(path)
    if config.fleet.backend == backend:
        return config
    table = {**tomllib.loads(Path(path).read_text())["fleet"], "backend": backend}
    return FleetConfig(source=config.source, fleet=read_fleet(str(path), table), groups=config.groups,
                       faults=config.faults, digest=plan_digest(f"{config.digest}\0{backend}"))
