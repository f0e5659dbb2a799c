"""The ``[[device]]`` tables of fleet.toml: :class:`DeviceGroup` and its reader.

The keys every kind shares are :class:`DeviceGroup`'s fields, read by :func:`read_group`; the
keys of one kind are that kind's ``Options`` in :mod:`fleet.kinds`.  Adding a shared key is one
field here and one line in :func:`read_group`.  Each group's device model is built once here
(:meth:`fleet.kinds.Kind.build`, no sockets) exactly as its worker will build it, and every
device's own identity values are checked by the protocol library in ``fleet.plan``: what
validates is what the workers serve.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from fleet.config.pools import read_pool
from fleet.config.settings import NAME_OK
from fleet.kinds import KINDS, Kind
from fleet.patterns import format_pattern
from fleet.table import ConfigError, Table

MAX_DEVICES = 100_000  # devices in one fleet (a /16 pool holds 65,534)


@dataclass(frozen=True)
class DeviceGroup:
    """One ``[[device]]`` table: ``count`` devices of one kind."""

    index: int  # position in the file's device array (for messages)
    kind: str  # a key of fleet.kinds.KINDS: "enip", "modbus"
    count: int  # how many devices
    name: str  # name pattern, formatted with n: "line{n:03}"
    first: int = 1  # n of the first device
    port: int = 0  # TCP (and, for ENIP, UDP) port; 0 means the kind's standard port
    port_step: int = 0  # port increment from one device to the next (with a fixed address)
    address: str | None = None  # a fixed IP for every device of the group, instead of the pool
    address_pool: tuple[str, ...] = ()  # the group's own pool, instead of the fleet's
    identity: tuple[tuple[str, Any], ...] = ()  # identity values; strings patterned on n
    delay: float | tuple[float, float] | None = None  # reply delay, seconds or (lo, hi)
    retain: bool | None = None  # keep client writes across restarts; None: the [fleet]'s retain
    home: str = ""  # the directory of the fleet file: playback files are relative to it
    options: Any = None  # the kind's own keys: a fleet.kinds Options (EnipOptions, ModbusOptions)


COMMON_KEYS = frozenset(f.name for f in fields(DeviceGroup)) - {"index", "options", "home"}


def read_group(src: str, index: int, data: dict[str, Any]) -> DeviceGroup:
    """The ``[[device]]`` table number ``index`` of file ``src``, checked."""
    table = f"device[{index}]"
    name = data.get("kind")
    kind = KINDS.get(name) if isinstance(name, str) else None
    if kind is None:
        raise ConfigError(src, table, "kind", f"must be one of {', '.join(KINDS)}, got {name!r}")
    t = Table(src, table, data, COMMON_KEYS | kind.keys)
    count = t.positive("count", 1)
    if count > MAX_DEVICES:
        t.fail("count", f"must be at most {MAX_DEVICES}, got {count}")
    first = t.positive("first", 1, zero=True)
    pattern = t.get("name", str, None, what="a string")
    if pattern is None:
        t.fail("name", "missing (a pattern such as 'line{n:03}')")
    sample = t.checked("name", lambda: _pattern(pattern, first))
    if not NAME_OK.fullmatch(sample):
        t.fail("name", f"device names must be letters, digits, '.', '_' or '-', got {sample!r}")
    if count > 1 and sample == format_pattern(pattern, first + 1):
        t.fail("name", f"pattern {pattern!r} gives every device the same name; use {{n}}")
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
    pool = read_pool(t, "address_pool") or ()
    if address and pool:
        t.fail("address_pool", "give either address or address_pool, not both")
    identity = _identity(t, kind, first)
    delay = _delay(t)
    options = kind.options(t)
    retain = t.get("retain", bool, None, what="true or false")
    home = str(Path(src).resolve().parent)
    # the dry run: the worker's own construction, for the first device, and with the last one's
    # n (the others differ in their identity values, which fleet.plan checks device by device,
    # and in behaviour parameters patterned on n)
    first_identity = identity_values(kind, identity, first)
    for n in sorted({first, first + count - 1}):
        model = t.checked(kind.spec_key, lambda n=n: kind.build(options, first_identity, n=n, home=home))
    if count > 2:  # the devices between: their behaviours' shapes, where parameters name n
        between = range(first + 1, first + count - 1)
        t.checked(kind.spec_key, lambda: kind.check_patterned(model, between, home))
    return DeviceGroup(index=index, kind=kind.name, count=count, name=pattern, first=first,
                       port=port or kind.default_port, port_step=port_step, address=address,
                       address_pool=pool, identity=identity, delay=delay, retain=retain, home=home,
                       options=options)


def _pattern(pattern: str, n: int) -> str:
    try:
        return format_pattern(pattern, n)
    except ValueError as exc:
        raise ValueError(f"bad pattern {pattern!r}: {exc}") from None


def _identity(t: Table, kind: Kind, first: int) -> tuple[tuple[str, Any], ...]:
    identity = t.get("identity", dict, {}, what="a table")
    allowed = kind.identity
    for key, value in identity.items():
        if key not in allowed:
            t.fail("identity", f"unknown identity key {key!r} (allowed: {', '.join(sorted(allowed))})")
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            t.fail("identity", f"{key} must be an integer or a string pattern, got {value!r}")
    items = tuple(sorted(identity.items()))
    t.checked("identity", lambda: kind.check_identity(identity_values(kind, items, first)))
    return items


def identity_value(kind: Kind, key: str, value: int | str, n: int) -> int | str:
    """One identity value for device ``n``: strings are patterns formatted with ``n``;
    integer fields are then parsed with ``int(text, 0)``.  (The protocol library checks the
    result against its field's size: :meth:`fleet.kinds.Kind.check_identity`.)

    >>> from fleet.kinds import KINDS
    >>> identity_value(KINDS["enip"], "serial_number", "0x5100{n:04}", 7)
    1358954503
    """
    if isinstance(value, str):
        try:
            value = format_pattern(value, n)
        except ValueError as exc:
            raise ValueError(f"{key}: bad pattern {value!r}: {exc}") from None
    if kind.identity[key] is int and isinstance(value, str):
        try:
            value = int(value, 0)
        except ValueError:
            raise ValueError(f"{key}: {value!r} is not an integer") from None
    return value


def identity_values(kind: Kind, identity: tuple[tuple[str, Any], ...], n: int) -> dict[str, Any]:
    """Device ``n``'s identity values (ValueError naming a bad pattern)."""
    return {key: identity_value(kind, key, value, n) for key, value in identity}


def _delay(t: Table) -> float | tuple[float, float] | None:
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
