"""The ``[[device]]`` tables of fleet.toml: :class:`DeviceGroup` and its reader.

The keys every kind shares are :class:`DeviceGroup`'s fields, each declared with its default and
its reader (:func:`fleet.table.key`); the keys of one kind are that kind's ``Options`` in
:mod:`fleet.kinds`, declared the same way.  Adding a key is one line in either.  Each group's
device model is built once here (:meth:`fleet.kinds.Kind.build`, no sockets) exactly as its
worker will build it, and every
device's own identity values are checked by the protocol library in ``fleet.plan``: what
validates is what the workers serve.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass, replace
from typing import Any

from fleet.config.pools import read_pool
from fleet.config.settings import NAME_OK
from fleet.kinds import KINDS, Kind
from fleet.patterns import format_pattern
from fleet.table import ConfigError, Table, checked, key, keys_of, number, read_keys, text

MAX_DEVICES = 100_000  # devices in one fleet (a /16 pool holds 65,534)


def _name(t: Table, key: str, default: str, values: dict[str, Any]) -> str:
    """The name pattern: it must give the first device a valid name, and each device its own."""
    pattern = text(required="a pattern such as 'line{n:03}'")(t, key, default, values)
    first, count = values["first"], values["count"]
    sample = t.checked(key, lambda: _pattern(pattern, first))
    if not NAME_OK.fullmatch(sample):
        t.fail(key, f"device names must be letters, digits, '.', '_' or '-', got {sample!r}")
    if count > 1 and sample == format_pattern(pattern, first + 1):
        t.fail(key, f"pattern {pattern!r} gives every device the same name; use {{n}}")
    return pattern


def _address(value: str) -> None:
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        raise ValueError(f"not an IPv4 address: {value!r}") from None


def _address_pool(t: Table, key: str, default: tuple[str, ...],
                  values: dict[str, Any]) -> tuple[str, ...]:
    pool = read_pool(t, key) or default
    if values["address"] and pool:
        t.fail(key, "give either address or address_pool, not both")
    return pool


def _identity(t: Table, key: str, default: tuple, values: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    """Identity values (strings are patterns on n), checked by the kind's protocol library for
    the first device (fleet.plan checks the others')."""
    kind, first = KINDS[values["kind"]], values["first"]
    identity = t.get(key, dict, {}, what="a table")
    allowed = kind.identity
    for name, value in identity.items():
        if name not in allowed:
            t.fail(key, f"unknown identity key {name!r} (allowed: {', '.join(sorted(allowed))})")
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            t.fail(key, f"{name} must be an integer or a string pattern, got {value!r}")
    items = tuple(sorted(identity.items()))
    t.checked(key, lambda: kind.check_identity(identity_values(kind, items, first)))
    return items


def _delay(t: Table, key: str, default: Any, values: dict[str, Any]) -> float | tuple[float, float] | None:
    value = t.get(key, (int, float, list), None, what="seconds or [lo, hi]")
    if value is None:
        return None
    if isinstance(value, list):
        if len(value) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            t.fail(key, f"must be seconds or [lo, hi], got {value!r}")
        lo, hi = float(value[0]), float(value[1])
        if not 0 <= lo <= hi < math.inf:
            t.fail(key, f"needs 0 <= lo <= hi, got {value!r}")
        return (lo, hi)
    if not 0 <= value < math.inf:
        t.fail(key, f"must be finite and >= 0, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class DeviceGroup:
    """One ``[[device]]`` table: ``count`` devices of one kind.  Each key every kind has is one
    line here, ``name: type = key(default, reader)``, read in this order."""

    index: int  # position in the file's device array (for messages)
    kind: str  # a key of fleet.kinds.KINDS: "enip", "modbus"
    count: int = key(1, number(most=MAX_DEVICES))  # how many devices
    first: int = key(1, number(zero=True))  # n of the first device
    name: str = key("", _name)  # name pattern, formatted with n: "line{n:03}"
    port: int = key(0, number(zero=True, most=65535))  # TCP (and ENIP UDP) port; 0: the kind's own
    port_step: int = key(0, number(zero=True))  # port increment from one device to the next
    address: str | None = key(None, checked(str, "a string", _address))  # one IP for all, not the pool
    address_pool: tuple[str, ...] = key((), _address_pool)  # the group's own pool, not the fleet's
    identity: tuple[tuple[str, Any], ...] = key((), _identity)  # identity values; strings patterned on n
    delay: float | tuple[float, float] | None = key(None, _delay)  # reply delay, seconds or (lo, hi)
    options: Any = None  # the kind's own keys: a fleet.kinds Options (EnipOptions, ModbusOptions)


COMMON_KEYS = keys_of(DeviceGroup) | {"kind"}


def read_group(src: str, index: int, data: dict[str, Any]) -> DeviceGroup:
    """The ``[[device]]`` table number ``index`` of file ``src``, checked."""
    table = f"device[{index}]"
    name = data.get("kind")
    kind = KINDS.get(name) if isinstance(name, str) else None
    if kind is None:
        raise ConfigError(src, table, "kind", f"must be one of {', '.join(KINDS)}, got {name!r}")
    t = Table(src, table, data, COMMON_KEYS | kind.keys)
    group = read_keys(t, DeviceGroup, index=index, kind=kind.name)
    group = replace(group, port=group.port or kind.default_port, options=kind.options(t))
    # the dry run: the worker's own construction, for the first device (the others differ only
    # in their identity values, which fleet.plan checks device by device)
    identity = identity_values(kind, group.identity, group.first)
    t.checked(kind.spec_key, lambda: kind.build(group.options, identity))
    return group


def _pattern(pattern: str, n: int) -> str:
    try:
        return format_pattern(pattern, n)
    except ValueError as exc:
        raise ValueError(f"bad pattern {pattern!r}: {exc}") from None


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
