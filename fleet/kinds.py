"""Device kinds as a table: one :class:`Kind` per protocol, in :data:`KINDS`.

A kind knows everything the fleet does differently for its devices: its own fleet.toml keys
and their defaults (an ``Options`` dataclass and :meth:`Kind.options`, which reads them),
its identity keys, its default port, how a worker builds and serves a device, how the health
poller checks one, and its metrics labels.  Validation and the worker share
:meth:`Kind.build`: ``validate`` builds each group's device model (no sockets) with the same
call the worker makes, so a fleet that validates is a fleet the workers serve.

Adding a kind (Modbus/RTU, ...) is one more entry in :data:`KINDS`; adding a key to a kind is
one line in its ``Options``: ``name: type = key(default, reader)`` (:mod:`fleet.table`).  The protocol
libraries are imported inside the methods: ``cpppo-fleet --help`` stays light.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

from fleet.table import Table, flag, key, keys_of, read_keys, specs

__all__ = ["KINDS", "EnipKind", "EnipOptions", "Kind", "ModbusKind", "ModbusOptions", "RegisterRead",
           "TagRead", "kind"]


class Kind(ABC):
    """What the fleet knows of one device kind."""

    name: ClassVar[str]  # the ``kind = "..."`` of fleet.toml
    default_port: ClassVar[int]  # port of a device whose table gives none
    spec_key: ClassVar[str]  # the key holding the device's data specs (tags, registers)
    Options: ClassVar[type]  # frozen dataclass of the kind's own keys (fleet.table.key fields)
    identity: ClassVar[Mapping[str, type]]  # identity keys fleet.toml accepts: int or str

    protocol: ClassVar[str]  # the wire protocol, for labels and messages

    @property
    def keys(self) -> frozenset[str]:
        """The kind's own fleet.toml keys."""
        return keys_of(self.Options)

    def metrics_labels(self) -> dict[str, str]:
        """Labels every metric of a device of this kind carries."""
        return {"kind": self.name, "protocol": self.protocol}

    def options(self, t: Table) -> Any:
        """Read and check the kind's keys of one [[device]] table (ConfigError naming the key)."""
        return read_keys(t, self.Options)

    def options_from_json(self, data: Mapping[str, Any]) -> Any:
        """``Options`` from its JSON form (lists back to tuples)."""
        return self.Options(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})

    @abstractmethod
    def build(self, options: Any, identity: Mapping[str, Any]) -> Any:
        """The device model (no sockets); ValueError naming what the protocol library refuses."""

    @abstractmethod
    def check_identity(self, identity: Mapping[str, Any]) -> None:
        """ValueError if the protocol library would refuse these identity values (cheap: the
        plan checks every device's own values)."""

    @abstractmethod
    async def serve(self, model: Any, host: str, port: int, delay: Any) -> Any:
        """Serve a built model; the handle has ``close()`` and ``wait_closed()``."""

    @abstractmethod
    def client(self, host: str, port: int, options: Any, timeout: float) -> Any:
        """An (unopened) asyncio client of a device, for the health poller."""

    @abstractmethod
    async def check(self, client: Any, options: Any, identity: Mapping[str, Any]) -> None:
        """One health check through an open ``client``; raises when the device is not well."""

    @abstractmethod
    def health(self, options: Any) -> NamedTuple:
        """What :meth:`check` reads (structured: a TagRead, a RegisterRead)."""


class IdentityMismatch(Exception):
    """The device at the planned address answers as another device."""


# -- EtherNet/IP --------------------------------------------------------------------------------
class TagRead(NamedTuple):
    """The health read of an ENIP device: one tag (element)."""

    tag: str  # "SCADA[0]", "Speed"


def _tag_spec(text: str) -> Any:
    from cpppo.enip.device.model import parse_tag_spec

    return parse_tag_spec(text)


def _route_path(t: Table, key: str, default: Any, values: dict[str, Any]) -> str | bool | None:
    route_path = t.get(key, (str, bool), default, what="a string such as '1/0' or false")
    if route_path is True or (isinstance(route_path, str) and not _ROUTE.fullmatch(route_path)):
        t.fail(key, f"must be a '<port>/<link>' string (such as '1/0') or false, got {route_path!r}")
    return route_path


def _health_tag(t: Table, key: str, default: str, values: dict[str, Any]) -> str:
    """A tag of the device (default: the first tag, its first element if an array)."""
    specs = [_tag_spec(text) for text in values["tags"]]
    health_tag = t.get(key, str, None, what="a string")
    if health_tag is None:
        return f"{specs[0].name}[0]" if specs[0].length is not None else specs[0].name
    if health_tag.split("[")[0].casefold() not in {spec.name.casefold() for spec in specs}:
        t.fail(key, f"{health_tag!r} is not one of the device's tags")
    return health_tag


_ROUTE = re.compile(r"[0-9]+/([0-9]+|[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+)")
# identity fields compared with the plan after a List Identity
CHECKED_IDENTITY = ("product_name", "serial_number", "vendor_id", "product_type", "product_code")


@dataclass(frozen=True)
class EnipOptions:
    """The ENIP keys of a [[device]] table, one line each (read in this order)."""

    tags: tuple[str, ...] = key((), specs(_tag_spec, "an ENIP device needs at least one tag, "
                                                     "such as 'SCADA=INT[100]'"))  # "SCADA=INT[1000]"
    route_path: str | bool | None = key(None, _route_path)  # "1/0", false (none accepted), unset (any)
    simple: bool = key(False, flag())  # a simple (non-routing) CIP device
    health_tag: str = key("", _health_tag)  # the tag the health poller reads


class EnipKind(Kind):
    name = "enip"
    protocol = "EtherNet/IP"
    default_port = 44818
    spec_key = "tags"
    Options = EnipOptions
    identity = {
        "vendor_id": int, "product_type": int, "product_code": int, "serial_number": int,
        "status": int, "state": int, "revision": str, "product_name": str,
    }

    def build(self, options: EnipOptions, identity: Mapping[str, Any]) -> Any:
        from cpppo.enip.device.model import Device

        return Device.from_specs(list(options.tags), identity=dict(identity), route_path=options.route_path,
                                 simple=options.simple)

    def check_identity(self, identity: Mapping[str, Any]) -> None:
        from cpppo.enip.device.model import parse_identity

        parse_identity(identity)

    async def serve(self, model: Any, host: str, port: int, delay: Any) -> Any:
        from cpppo.enip.server.transport import serve

        return await serve(model, host=host, port=port, udp=True, delay=delay)

    def client(self, host: str, port: int, options: EnipOptions, timeout: float) -> Any:
        from cpppo.enip.client.aclient import AsyncClient

        return AsyncClient(host, port, timeout=timeout, **enip_route(options))

    async def check(self, client: Any, options: EnipOptions, identity: Mapping[str, Any]) -> None:
        ident = await client.list_identity()
        for field in CHECKED_IDENTITY:
            want = identity.get(field)
            if want is not None and ident.get(field) != want:
                raise IdentityMismatch(f"identity {field} is {ident.get(field)!r}, the plan says {want!r} "
                                       "(another device at this address?)")
        await client.read(options.health_tag)

    def health(self, options: EnipOptions) -> TagRead:
        return TagRead(options.health_tag)


def enip_route(options: EnipOptions) -> dict[str, Any]:
    """AsyncClient keywords that address a device the way it expects (simple, or a route path).

    >>> enip_route(EnipOptions(route_path="1/2"))
    {'route_path': [{'port': 1, 'link': 2}]}
    """
    if options.simple or options.route_path is False:
        return {"simple": True}
    if isinstance(options.route_path, str):
        port, _, link = options.route_path.partition("/")
        return {"route_path": [{"port": int(port, 0), "link": int(link, 0) if link.isdigit() else link}]}
    return {}


# -- Modbus/TCP ---------------------------------------------------------------------------------
class RegisterRead(NamedTuple):
    """The health read of a Modbus device: one register (or bit) of one table."""

    table: Any  # cpppo.modbus.address.Table
    offset: int  # zero-based address in the table


def _register_spec(text: str) -> Any:
    from cpppo.modbus.address import parse_spec

    return parse_spec(text)


def _unit_ids(t: Table, key: str, default: tuple[int, ...], values: dict[str, Any]) -> tuple[int, ...]:
    units = t.get(key, list, list(default), what="a list of integers")
    if not units or not all(type(u) is int and 0 <= u <= 255 for u in units):
        t.fail(key, f"must be a non-empty list of integers 0..255, got {units!r}")
    return tuple(units)


def _health_register(t: Table, key: str, default: int, values: dict[str, Any]) -> int:
    """A register of the device (default: the first configured)."""
    ranges = [_register_spec(text) for text in values["registers"]]
    reg = t.get(key, int, None, what="an integer")
    if reg is None:
        return ranges[0].begin
    if not any(r.begin <= reg <= r.end for r in ranges):
        t.fail(key, f"{reg} is not in any of the device's register ranges")
    return reg


@dataclass(frozen=True)
class ModbusOptions:
    """The Modbus keys of a [[device]] table, one line each (read in this order)."""

    registers: tuple[str, ...] = key((), specs(_register_spec, "a Modbus device needs at least one "
                                                               "range, such as '40001-40100=0'"))
    unit_ids: tuple[int, ...] = key((1,), _unit_ids)  # unit ids answered
    health_register: int = key(0, _health_register)  # the register the health poller reads


class ModbusKind(Kind):
    name = "modbus"
    protocol = "Modbus/TCP"
    default_port = 502
    spec_key = "registers"
    Options = ModbusOptions
    identity = {
        "vendor_name": str, "product_code": str, "major_minor_revision": str, "vendor_url": str,
        "product_name": str, "model_name": str, "user_application_name": str,
    }
    _READS: ClassVar[dict[str, str]] = {
        "HOLDING_REGISTERS": "read_holding_registers", "INPUT_REGISTERS": "read_input_registers",
        "COILS": "read_coils", "DISCRETE_INPUTS": "read_discrete_inputs",
    }

    def build(self, options: ModbusOptions, identity: Mapping[str, Any]) -> Any:
        from cpppo.modbus.device import ModbusDevice

        return ModbusDevice.from_specs(list(options.registers), unit_ids=options.unit_ids,
                                       identity=dict(identity))

    def check_identity(self, identity: Mapping[str, Any]) -> None:
        from cpppo.modbus.device import ModbusDevice

        ModbusDevice({}, identity=dict(identity))

    async def serve(self, model: Any, host: str, port: int, delay: Any) -> Any:
        from cpppo.modbus.server import serve

        return await serve(model, host=host, port=port, delay=delay)

    def client(self, host: str, port: int, options: ModbusOptions, timeout: float) -> Any:
        from cpppo.modbus.aclient import AsyncModbusClient

        return AsyncModbusClient(host, port, unit=options.unit_ids[0], timeout=timeout)

    async def check(self, client: Any, options: ModbusOptions, identity: Mapping[str, Any]) -> None:
        read = self.health(options)
        await getattr(client, self._READS[read.table.name])(read.offset, 1)

    def health(self, options: ModbusOptions) -> RegisterRead:
        from cpppo.modbus.address import locate

        return RegisterRead(*locate(options.health_register))


KINDS: dict[str, Kind] = {k.name: k for k in (EnipKind(), ModbusKind())}


def kind(name: str) -> Kind:
    """The kind called ``name`` (KeyError for none)."""
    return KINDS[name]
