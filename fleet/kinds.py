"""Device kinds as a table: one :class:`Kind` per protocol, in :data:`KINDS`.

A kind knows everything the fleet does differently for its devices: its own fleet.toml keys
and their defaults (an ``Options`` dataclass and :meth:`Kind.options`, which reads them),
its identity keys, its default port, how a worker builds and serves a device, how the health
poller checks one, and its metrics labels.  Validation and the worker share
:meth:`Kind.build`: ``validate`` builds each group's device model (no sockets) with the same
call the worker makes, so a fleet that validates is a fleet the workers serve.

Adding a kind (Modbus/RTU, ...) is one more entry in :data:`KINDS`; adding a key to a kind is
one more field in its ``Options`` and one more line in its ``options()``.  The protocol
libraries are imported inside the methods: ``cpppo-fleet --help`` stays light.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

from fleet.table import Table

__all__ = ["KINDS", "EnipKind", "EnipOptions", "IOOptions", "Kind", "ModbusKind", "ModbusOptions",
           "ModbusRtuKind", "ModbusRtuOptions", "RegisterRead", "ServerLimits", "TagRead", "kind", "limits",
           "read_limits"]


class Kind(ABC):
    """What the fleet knows of one device kind."""

    name: ClassVar[str]  # the ``kind = "..."`` of fleet.toml
    default_port: ClassVar[int]  # port of a device whose table gives none
    spec_key: ClassVar[str]  # the key holding the device's data specs (tags, registers)
    Options: ClassVar[type]  # frozen dataclass of the kind's own keys, with their defaults
    identity: ClassVar[Mapping[str, type]]  # identity keys fleet.toml accepts: int or str
    sockets: ClassVar[int] = 1  # file descriptors one served device holds (its listening sockets)

    @property
    def keys(self) -> frozenset[str]:
        """The kind's own fleet.toml keys."""
        return frozenset(f.name for f in fields(self.Options))

    def metrics_labels(self) -> dict[str, str]:
        """Labels every metric of a device of this kind carries."""
        return {"kind": self.name, "protocol": self.protocol}

    protocol: ClassVar[str]  # the wire protocol, for labels and messages

    @abstractmethod
    def options(self, t: Table) -> Any:
        """Read and check the kind's keys of one [[device]] table (ConfigError naming the key)."""

    def options_from_json(self, data: Mapping[str, Any]) -> Any:
        """``Options`` from its JSON form (lists back to tuples)."""
        return self.Options(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})

    @abstractmethod
    def build(self, options: Any, identity: Mapping[str, Any], *, n: int = 0, retain: str | None = None,
              home: str | Callable[[str], str] = "") -> Any:
        """The device model (no sockets); ValueError naming what the protocol library refuses.
        ``n``: the device's number (behaviour parameters use it); ``retain``: the journal
        keeping client writes; ``home``: the directory playback file names are relative to."""

    @abstractmethod
    def check_identity(self, identity: Mapping[str, Any]) -> None:
        """ValueError if the protocol library would refuse these identity values (cheap: the
        plan checks every device's own values)."""

    @abstractmethod
    async def serve(self, model: Any, host: str, port: int, delay: Any, options: Any = None,
                    pool: Any = None) -> Any:
        """Serve a built model; the handle has ``close()`` and ``wait_closed()``.  ``options``
        (the kind's Options) gives the server's connection limits; ``pool`` (a
        ``cpppo.server.stream.ConnectionSet``) caps the worker's connections as a whole."""

    @abstractmethod
    def client(self, host: str, port: int, options: Any, timeout: float) -> Any:
        """An (unopened) asyncio client of a device, for the health poller."""

    @abstractmethod
    async def check(self, client: Any, options: Any, identity: Mapping[str, Any]) -> None:
        """One health check through an open ``client``; raises when the device is not well."""

    @abstractmethod
    def health(self, options: Any) -> NamedTuple:
        """What :meth:`check` reads (structured: a TagRead, a RegisterRead)."""

    # -- planning: what a kind whose devices are not all at an IP:port of their own changes ----
    def addressed(self, options: Any) -> bool:
        """Whether the devices of a group with these options each take an IP:port."""
        return True

    def arrange(self, devices: list[Any], config: Any) -> list[Any]:
        """The planned devices (all the fleet's, in plan order) with this kind's fleet-wide
        choices made (ConfigError for what no worker could serve); unchanged by default."""
        return devices

    def together(self, device: Any) -> str | None:
        """A name the devices one worker must host together share (None: any worker)."""
        return None

    def endpoint(self, device: Any) -> str:
        """Where a client reaches the device, as plan and status show it."""
        return f"{device.host}:{device.port}"

    def wire(self, device: Any) -> str | None:
        """A name the devices sharing one wire share (a serial line: the health poller polls
        them one at a time); None: the device has a connection of its own."""
        return None


@dataclass(frozen=True)
class ServerLimits:
    """Connection limits every kind's [[device]] table may set (unset: the server's default)."""

    max_connections: int | None = None  # connections per device; one more evicts the longest idle
    idle_timeout: float | None = None  # seconds a connection may stay silent (0: forever)
    max_in_flight: int | None = None  # delayed replies one connection may have waiting


_LIMIT_TYPES = {"max_connections": (int,), "idle_timeout": (int, float), "max_in_flight": (int,)}


def read_limits(t: Table) -> dict[str, Any]:
    """The :class:`ServerLimits` keys a [[device]] table sets, checked."""
    return {key: (float if float in kinds else int)(t.positive(key, None, kinds, zero=key == "idle_timeout"))
            for key, kinds in _LIMIT_TYPES.items() if key in t.data}


def limits(options: Any) -> dict[str, Any]:
    """The limits ``options`` sets, as server settings keywords.

    >>> limits(ModbusOptions(max_connections=16)), limits(None)
    ({'max_connections': 16}, {})
    """
    return {f.name: getattr(options, f.name) for f in fields(ServerLimits)
            if options is not None and getattr(options, f.name, None) is not None}


def _relative_to(home: str | Callable[[str], str]) -> Callable[[str], str]:
    """Resolves a file name (a playback recording, a ``tags_from`` export) against the fleet
    file's directory ``home``; a callable ``home`` is that resolver already
    (:func:`fleet.worker.files_base`: a container's view of the files, or the docker backend
    noting which files a device reads)."""
    import os.path

    if callable(home):
        return home
    return lambda name: os.path.join(home, name) if home else name


class IdentityMismatch(Exception):
    """The device at the planned address answers as another device."""


# -- EtherNet/IP --------------------------------------------------------------------------------
class TagRead(NamedTuple):
    """The health read of an ENIP device: one tag (element)."""

    tag: str  # "SCADA[0]", "Speed"


@dataclass(frozen=True)
class EnipOptions(ServerLimits):
    """The ENIP keys of a [[device]] table."""

    tags: tuple[str, ...] = ()  # enip_server tag specs, as written: "SCADA=INT[1000]"
    route_path: str | bool | None = None  # "1/0", false (none accepted) or unset (any)
    simple: bool = False  # a simple (non-routing) CIP device
    health_tag: str = ""  # the tag the health poller reads; default: the first tag's first element
    udts: tuple[str, ...] = ()  # structures the tags may use: "Motor={Speed:REAL,Running:BOOL}"
    tags_from: tuple[str, ...] = ()  # Logix exports (L5X, tag CSV) whose structures and tags it serves too
    io: IOOptions | None = None  # the [device.io] table: serve as a Class 1 I/O adapter


@dataclass(frozen=True)
class IOOptions:
    """The ``io`` table of an ENIP [[device]]: assemblies over its tags, served as an
    EtherNet/IP I/O adapter on UDP ``port`` of each device's address."""

    assemblies: tuple[str, ...] = ()  # enip_server --assembly specs: "100=in:Inputs", "150=out:Outputs"
    port: int = 2222  # UDP port of the I/O data
    t_o_port: int | str = 2222  # where inputs go unless the Forward Open says: a port, or "source"
    rpi_range: str = "1-10000"  # RPIs accepted, milliseconds


def _io_options(t: Table, tags: tuple[str, ...]) -> IOOptions | None:
    """The ``io`` table of an ENIP device group, checked against its tags."""
    data = t.get("io", dict, None, what="a table such as { assemblies = ['100=in:Inputs'] }")
    if data is None:
        return None
    io = Table(t.src, f"{t.name}.io", data, {f.name for f in fields(IOOptions)})
    texts = io.specs("assemblies", _assembly_spec, "an io table needs assemblies, such as '100=in:Inputs'")
    port = io.get("port", int, 2222, what="an integer")
    if not 1 <= port <= 65535:
        io.fail("port", f"must be 1-65535, got {port}")
    t_o_port = io.get("t_o_port", (int, str), 2222, what="a port number or 'source'")
    io.checked("t_o_port", lambda: _t_o_port(t_o_port))
    rpi_range = io.get("rpi_range", str, "1-10000", what="a string such as '1-10000' (milliseconds)")
    io.checked("rpi_range", lambda: _rpi_range(rpi_range))
    if t.data.get("port_step"):
        io.fail(None, "devices with an io table need addresses of their own (no port_step): "
                      "the I/O port is per address")
    options = IOOptions(tuple(text for text, _ in texts), port, t_o_port, rpi_range)
    io.checked("assemblies", lambda: _adapter(EnipKind().build(EnipOptions(tags=tags), {}), options))
    return options


def _assembly_spec(text: str) -> Any:
    from cpppo.enip.device.assembly import parse_assembly_spec

    return parse_assembly_spec(text)


def _t_o_port(value: int | str) -> int | str:
    from cpppo.enip.server.io import parse_t_o_port

    return parse_t_o_port(str(value))


def _rpi_range(text: str) -> tuple[int, int]:
    from cpppo.enip.server.io import parse_rpi_range

    return parse_rpi_range(text)


def _adapter(model: Any, io: IOOptions) -> Any:
    """The device's Assemblies (with their IOPolicy) for ``io``; ValueError naming a bad one."""
    from cpppo.enip.device.assembly import Assemblies
    from cpppo.enip.device.connections import IOPolicy

    rpi_min, rpi_max = _rpi_range(io.rpi_range)
    policy = IOPolicy(rpi_min=rpi_min, rpi_max=rpi_max, t_o_port=_t_o_port(io.t_o_port), io_port=io.port)
    return Assemblies.from_specs(model, io.assemblies, policy=policy)


_ROUTE = re.compile(r"[0-9]+/([0-9]+|[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+)")
# identity fields compared with the plan after a List Identity
CHECKED_IDENTITY = ("product_name", "serial_number", "vendor_id", "product_type", "product_code")


class EnipKind(Kind):
    name = "enip"
    protocol = "EtherNet/IP"
    default_port = 44818
    sockets = 2  # TCP and UDP (List Identity) on its port
    spec_key = "tags"
    Options = EnipOptions
    identity = {
        "vendor_id": int, "product_type": int, "product_code": int, "serial_number": int,
        "status": int, "state": int, "revision": str, "product_name": str,
    }

    def options(self, t: Table) -> EnipOptions:
        from cpppo.enip.device.l5x import shared_export
        from cpppo.enip.device.model import parse_tag_spec
        from cpppo.enip.device.udt import parse_udts

        udts = t.strings("udts") or ()
        types: Mapping[str, Any] = t.checked("udts", lambda: parse_udts(udts))
        here = Path(t.src).resolve().parent  # exports are relative to fleet.toml
        tags_from = tuple(str(here / path) for path in t.strings("tags_from") or ())
        if tags_from:
            export = t.checked("tags_from", lambda: shared_export(tags_from, udts))
            types = export.types
        if tags_from and not t.data.get("tags"):
            tags: tuple[tuple[str, Any], ...] = tuple((s.name, s) for s in export.specs)
            if not tags:
                t.fail("tags_from", f"{export.source}: the export has no tags this simulator serves")
        else:
            tags = t.specs("tags", lambda text: parse_tag_spec(text, types),
                           "an ENIP device needs at least one tag, such as 'SCADA=INT[100]'")
        route_path = t.get("route_path", (str, bool), None, what="a string such as '1/0' or false")
        if route_path is True or (isinstance(route_path, str) and not _ROUTE.fullmatch(route_path)):
            t.fail("route_path",
                   f"must be a '<port>/<link>' string (such as '1/0') or false, got {route_path!r}")
        if isinstance(route_path, str):  # the numbers' ranges: the library's own check
            from cpppo.enip.codec.epath import parse_route_path

            t.checked("route_path", lambda: parse_route_path(route_path))
        access = {spec.name.casefold(): spec.access for _, spec in tags}  # External Access of each
        if tags_from:
            access = {**{spec.name.casefold(): spec.access for spec in export.specs}, **access}
        health_tag = t.get("health_tag", str, None, what="a string")
        if health_tag is not None and health_tag.split("[")[0].casefold() not in access:
            t.fail("health_tag", f"{health_tag!r} is not one of the device's tags")
        if health_tag is not None and access[health_tag.split("[")[0].casefold()] == "none":
            t.fail("health_tag", f"{health_tag!r} has external access none: the health poller cannot read it")
        readable = [spec for _, spec in tags if spec.access != "none"]
        if health_tag is None and not readable:
            t.fail("tags", "every tag has external access none: give health_tag a tag clients can read")
        first = readable[0] if readable else tags[0][1]
        texts = () if tags_from and not t.data.get("tags") else tuple(text.strip() for text, _ in tags)
        return EnipOptions(**read_limits(t), tags=texts, route_path=route_path, io=_io_options(t, texts),
                           simple=t.get("simple", bool, False, what="true or false"), udts=udts,
                           tags_from=tags_from,
                           health_tag=health_tag or (f"{first.name}[0]" if first.length is not None
                                                     else first.name))

    def build(self, options: EnipOptions, identity: Mapping[str, Any], *, n: int = 0,
              retain: str | None = None, home: str | Callable[[str], str] = "") -> Any:
        from cpppo.enip.device.l5x import shared_export
        from cpppo.enip.device.model import Device

        base = _relative_to(home)
        export = None
        if options.tags_from:
            export = shared_export(tuple(map(base, options.tags_from)), options.udts)
        device = Device.from_specs(list(options.tags), identity=dict(identity), route_path=options.route_path,
                                   simple=options.simple, n=n, retain=retain, base=base,
                                   udts=() if export else options.udts, export=export)
        if options.io is not None:
            device.io = _adapter(device, options.io)
        return device

    def options_from_json(self, data: Mapping[str, Any]) -> EnipOptions:
        data = dict(data)
        io = data.pop("io", None)
        options = super().options_from_json(data)
        if io is None:
            return options
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in io.items()}
        return replace(options, io=IOOptions(**values))

    def check_identity(self, identity: Mapping[str, Any]) -> None:
        from cpppo.enip.device.model import parse_identity

        parse_identity(identity)

    async def serve(self, model: Any, host: str, port: int, delay: Any, options: Any = None,
                    pool: Any = None) -> Any:
        from cpppo.enip.server.transport import Settings, serve

        settings = Settings(**limits(options))
        if model.io is not None:  # an I/O adapter: the worker's one IOEngine sends every RPI
            from cpppo.enip.server.io import AdapterHandle, IOEngine, serve_adapter

            io_port = model.io.policy.io_port
            server, endpoint = await serve_adapter(model, model.io, host, port, engine=IOEngine.of_loop(),
                                                   io_port=io_port, udp=True, delay=delay, settings=settings,
                                                   pool=pool)
            return AdapterHandle(server, endpoint)
        return await serve(model, host=host, port=port, udp=True, delay=delay, settings=settings, pool=pool)

    def client(self, host: str, port: int, options: EnipOptions, timeout: float) -> Any:
        from cpppo.enip.client.aclient import AsyncClient

        return AsyncClient(host, port, timeout=timeout, **enip_route(options))

    async def check(self, client: Any, options: EnipOptions, identity: Mapping[str, Any]) -> None:
        ident = await client.list_identity()
        for key in CHECKED_IDENTITY:
            want = identity.get(key)
            if want is not None and ident.get(key) != want:
                raise IdentityMismatch(f"identity {key} is {ident.get(key)!r}, the plan says {want!r} "
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


@dataclass(frozen=True)
class ModbusOptions(ServerLimits):
    """The Modbus keys of a [[device]] table."""

    registers: tuple[str, ...] = ()  # modbus_sim register ranges, as written: "40001-40100=99"
    unit_ids: tuple[int, ...] = (1,)  # unit ids answered
    health_register: int = 0  # the register the health poller reads; default: the first configured


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

    def options(self, t: Table) -> ModbusOptions:
        from cpppo.modbus.address import parse_spec

        ranges = t.specs("registers", parse_spec,
                         "a Modbus device needs at least one range, such as '40001-40100=0'")
        units = t.get("unit_ids", list, [1], what="a list of integers")
        if not units or not all(type(u) is int and 0 <= u <= 255 for u in units):
            t.fail("unit_ids", f"must be a non-empty list of integers 0..255, got {units!r}")
        reg = t.get("health_register", int, None, what="an integer")
        if reg is not None and not any(r.begin <= reg <= r.end for _, r in ranges):
            t.fail("health_register", f"{reg} is not in any of the device's register ranges")
        return ModbusOptions(**read_limits(t), registers=tuple(text.strip() for text, _ in ranges),
                             unit_ids=tuple(units),
                             health_register=reg if reg is not None else ranges[0][1].begin)

    def build(self, options: ModbusOptions, identity: Mapping[str, Any], *, n: int = 0,
              retain: str | None = None, home: str | Callable[[str], str] = "") -> Any:
        from cpppo.modbus.device import ModbusDevice

        return ModbusDevice.from_specs(list(options.registers), unit_ids=options.unit_ids,
                                       identity=dict(identity), n=n, retain=retain, base=_relative_to(home))

    def check_identity(self, identity: Mapping[str, Any]) -> None:
        from cpppo.modbus.device import ModbusDevice

        ModbusDevice({}, identity=dict(identity))

    async def serve(self, model: Any, host: str, port: int, delay: Any, options: Any = None,
                    pool: Any = None) -> Any:
        from cpppo.modbus.server import serve

        return await serve(model, host=host, port=port, delay=delay, settings=self.settings(options),
                           pool=pool)

    @staticmethod
    def settings(options: Any) -> Any:
        """The server settings (cpppo.modbus.server.ServerSettings) of the limits ``options`` sets."""
        from cpppo.modbus.server import ServerSettings

        settings = limits(options)
        if "idle_timeout" in settings:
            settings["idle_timeout"] = settings["idle_timeout"] or None  # 0: never
        return ServerSettings(**settings)

    def client(self, host: str, port: int, options: ModbusOptions, timeout: float) -> Any:
        from cpppo.modbus.aclient import AsyncModbusClient

        return AsyncModbusClient(host, port, unit=options.unit_ids[0], timeout=timeout)

    async def check(self, client: Any, options: ModbusOptions, identity: Mapping[str, Any]) -> None:
        read = self.health(options)
        await getattr(client, self._READS[read.table.name])(read.offset, 1)

    def health(self, options: ModbusOptions) -> RegisterRead:
        from cpppo.modbus.address import locate

        return RegisterRead(*locate(options.health_register))


# -- Modbus/RTU ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModbusRtuOptions(ServerLimits):
    """The Modbus/RTU keys of a [[device]] table, and (after planning) each device's place."""

    transport: str = "pty"  # "pty": a unit on a line the fleet makes; "tcp": RTU over TCP; "gateway"
    registers: tuple[str, ...] = ()  # modbus_sim register ranges, as written (not for a gateway)
    health_register: int = 0  # the register the health poller reads; default: the first configured
    unit_id: int = 0  # the first device's unit id (pty: 0 means the line's next free one); planned: its own
    line: str = ""  # pty: the line's name
    baud: int = 19200  # pty: the line's settings
    parity: str = "E"
    stopbits: int = 1
    timing: bool = False  # pty: replies take the wire's time at the baud rate (and t3.5)
    serial: str = ""  # pty: the line is this serial port (pyserial), not a pseudo-terminal the fleet makes
    lines: tuple[str, ...] = ()  # gateway: the lines behind it
    link: str = ""  # planned, pty: the line's link (its serial port, for one)
    routes: tuple[tuple[int, str], ...] = ()  # planned, gateway: (unit id, line link) behind it
    cluster: str = ""  # planned: devices one worker hosts together (a line and its gateways)


class ModbusRtuKind(ModbusKind):
    """Modbus/RTU units on serial lines the fleet makes (pseudo-terminals), RTU over TCP devices,
    and Modbus/TCP gateways in front of lines; the register grammar and identity of Modbus/TCP.
    The lines themselves are :mod:`fleet.rtu`."""

    name = "modbus-rtu"
    protocol = "Modbus/RTU"
    Options = ModbusRtuOptions
    _PTY_ONLY = ("line", "baud", "parity", "stopbits", "timing", "serial")
    _UNADDRESSED = ("port", "port_step", "address", "address_pool", "delay", "max_connections",
                    "idle_timeout", "max_in_flight")
    _PLANNED = frozenset({"link", "routes", "cluster"})  # the plan's, not fleet.toml's

    @property
    def keys(self) -> frozenset[str]:
        return super().keys - self._PLANNED

    def options(self, t: Table) -> ModbusRtuOptions:
        from cpppo.modbus.serial_line import LineSettings
        from fleet.rtu import TRANSPORTS

        transport = t.choice("transport", TRANSPORTS, "pty")
        given = set(t.data)
        if transport == "gateway":
            for key in (*self._PTY_ONLY, "registers", "health_register", "unit_id", "identity"):
                if key in given:
                    t.fail(key, "a gateway has none: it forwards to the units of its lines")
            lines = t.strings("lines")
            if not lines:
                t.fail("lines", "a gateway needs the lines behind it, such as ['bus0']")
            return ModbusRtuOptions(**read_limits(t), transport=transport, lines=tuple(dict.fromkeys(lines)))
        if "lines" in given:
            t.fail("lines", 'only a gateway (transport = "gateway") has lines; a unit names its line')
        base = ModbusKind.options(self, t)
        unit = t.get("unit_id", int, 0 if transport == "pty" else 1, what="an integer 1..247")
        if "unit_id" in given and not 1 <= unit <= 247:
            t.fail("unit_id", f"must be 1..247, got {unit}")
        if transport == "tcp":
            for key in self._PTY_ONLY:
                if key in given:
                    t.fail(key, 'only a unit on a serial line (transport = "pty") has one')
            return ModbusRtuOptions(**read_limits(t), transport=transport, registers=base.registers,
                                    health_register=base.health_register, unit_id=unit)
        for key in self._UNADDRESSED:
            if key in given:
                t.fail(key, "a unit on a serial line has none: masters reach it on the line's link "
                            "(timing = true gives the wire's delays)")
        count = t.data.get("count", 1)
        if unit and unit + count - 1 > 247:
            t.fail("unit_id", f"unit ids {unit}..{unit + count - 1} go beyond 247")
        number = t.name.removeprefix("device[").removesuffix("]")
        line = t.get("line", str, f"rtu{number}", what="a line name such as 'bus0'")
        from fleet.config.settings import NAME_OK

        if not NAME_OK.fullmatch(line):
            t.fail("line", f"must be letters, digits, '.', '_' or '-', got {line!r}")
        values = {key: t.data[key] for key in ("baud", "parity", "stopbits") if key in given}
        for key, value in values.items():
            t.checked(key, lambda key=key, value=value: LineSettings.parse(**{_LINE_ARG[key]: value}))
        settings = LineSettings.parse(*(values.get(k, d) for k, d in (("baud", 19200), ("parity", "E"),
                                                                      ("stopbits", 1))))
        # a serial port's presence is checked by validate and up (fleet.rtu.check_ports), not here
        serial = t.get("serial", str, "", what="a serial port such as '/dev/ttyUSB0'")
        return ModbusRtuOptions(transport=transport, registers=base.registers,
                                health_register=base.health_register, unit_id=unit, line=line,
                                baud=settings.baudrate, parity=settings.parity, stopbits=settings.stopbits,
                                timing=t.get("timing", bool, False, what="true or false"), serial=serial)

    def options_from_json(self, data: Mapping[str, Any]) -> ModbusRtuOptions:
        options = super().options_from_json(data)
        return replace(options, routes=tuple(tuple(r) for r in options.routes))

    def build(self, options: ModbusRtuOptions, identity: Mapping[str, Any], *, n: int = 0,
              retain: str | None = None, home: str | Callable[[str], str] = "") -> Any:
        if options.transport == "gateway":
            from cpppo.modbus.gateway import ModbusGateway

            return ModbusGateway({})  # its routes are the worker's lines (fleet.rtu.serve_gateway)
        from cpppo.modbus.device import ModbusDevice

        unit = options.unit_id or 1
        device = ModbusDevice.from_specs(list(options.registers), unit_ids=(unit,), identity=dict(identity),
                                         n=n, retain=retain, base=_relative_to(home))
        if options.transport == "tcp":
            from cpppo.modbus.rtu_server import RtuUnits

            return RtuUnits({unit: device})
        return device

    async def serve(self, model: Any, host: str, port: int, delay: Any, options: Any = None,
                    pool: Any = None) -> Any:
        from fleet import rtu

        if options.transport == "pty":
            return rtu.serve_unit(model, options)
        if options.transport == "gateway":
            return await rtu.serve_gateway(model, host, port, delay, self.settings(options), pool, options)
        from cpppo.modbus.rtu_server import RtuTcpServer
        from cpppo.modbus.server import serve

        for device in model.devices.values():  # the device's one fault slot: the server's and the unit's
            device.faults = model.faults
        return await serve(model, host=host, port=port, delay=delay, settings=self.settings(options),
                           pool=pool, server_class=RtuTcpServer)

    def client(self, host: str, port: int, options: ModbusRtuOptions, timeout: float) -> Any:
        if options.serial:
            from fleet.rtu import PortReport

            return PortReport(options, timeout)
        if options.transport == "pty":
            from fleet.rtu import line_client

            return line_client(options, timeout)
        if options.transport == "tcp":
            from cpppo.modbus.rtu_client import AsyncRtuClient

            return AsyncRtuClient.tcp(host, port, unit=options.unit_id, timeout=timeout)
        from cpppo.modbus.aclient import AsyncModbusClient

        return AsyncModbusClient(host, port, unit=options.unit_id, timeout=timeout)

    async def check(self, client: Any, options: Any, identity: Mapping[str, Any]) -> None:
        if options.serial:  # a serial port's units: the worker's report, not a poll on the line
            return await client.check()
        return await super().check(client, options, identity)

    def addressed(self, options: ModbusRtuOptions) -> bool:
        return options.transport != "pty"

    def arrange(self, devices: list[Any], config: Any) -> list[Any]:
        from fleet.rtu import arrange

        return arrange(devices, config)

    def together(self, device: Any) -> str | None:
        return device.options.cluster or None

    def wire(self, device: Any) -> str | None:
        return device.options.link or None

    def endpoint(self, device: Any) -> str:
        o = device.options
        if o.serial:
            return f"{o.link}#{o.unit_id} (port)"
        return f"{o.link}#{o.unit_id}" if o.transport == "pty" else f"{device.host}:{device.port}"


_LINE_ARG = {"baud": "baudrate", "parity": "parity", "stopbits": "stopbits"}


KINDS: dict[str, Kind] = {k.name: k for k in (EnipKind(), ModbusKind(), ModbusRtuKind())}


def kind(name: str) -> Kind:
    """The kind called ``name`` (KeyError for none)."""
    return KINDS[name]
