"""The EtherNet/IP kind: Logix-like controllers, their tags, identity and Class 1 I/O."""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, NamedTuple

from fleet.kinds.base import (
    IdentityMismatch,
    Kind,
    ServerLimits,
    WriteError,
    _relative_to,
    limits,
    read_limits,
)
from fleet.table import Table


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
    lenient_sizes: bool = False  # also accept Forward Open sizes without the sequence count (cm-ethernetip)


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
    lenient = io.get("lenient_sizes", bool, False, what="true or false")
    options = IOOptions(tuple(text for text, _ in texts), port, t_o_port, rpi_range, lenient)
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
    policy = IOPolicy(rpi_min=rpi_min, rpi_max=rpi_max, t_o_port=_t_o_port(io.t_o_port), io_port=io.port,
                      lenient_sizes=io.lenient_sizes)
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
        from cpppo.enip.device.model import Device

        base = _relative_to(home)
        export = None
        if options.tags_from:
            from cpppo.enip.device.l5x import shared_export  # only for an export

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
        _parse_identity()(identity)

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

    def idle_default(self) -> float | None:
        from cpppo.enip.server.transport import Settings

        return Settings.idle_timeout

    async def open(self, client: Any) -> None:
        await client.connect(identify=True)  # the identity kept as client.identity while connected

    async def check(self, client: Any, options: EnipOptions, identity: Mapping[str, Any]) -> None:
        # the identity answered on this connection: another device at the address means another
        # connection (a restarted worker drops its connections), so one List Identity a connection
        ident = client.identity if client.identity is not None else await client.list_identity()
        for key in CHECKED_IDENTITY:  # (flat keys of the dotdict: read as a dict's, the quicker way)
            want = identity.get(key)
            if want is not None and dict.get(ident, key) != want:
                raise IdentityMismatch(f"identity {key} is {dict.get(ident, key)!r}, the plan says {want!r} "
                                       "(another device at this address?)")
        await client.read(options.health_tag)

    def health(self, options: EnipOptions) -> TagRead:
        return TagRead(options.health_tag)

    async def device_identity(self, device: Any, connect: Callable[[], Awaitable[Any]]) -> dict[str, Any]:
        ident = await (await connect()).list_identity()
        return {key: value for key, value in dict(ident).items() if isinstance(value, (str, int, float))}

    async def values(self, client: Any, options: EnipOptions, shown: int) -> list[dict[str, Any]]:
        from cpppo.enip.device.model import parse_tag_spec

        out = []
        for spec in options.tags:
            tag = parse_tag_spec(spec)
            first = min(tag.length, shown) if tag.length is not None else None
            values = await client.read(tag.name if first is None else f"{tag.name}[0-{first - 1}]")
            out.append({"name": tag.name, "type": tag.type.name, "first": 0,
                        "values": values if isinstance(values, list) else [values]})
        return out

    async def write(self, client: Any, device: Any, target: str, text: str) -> None:
        from cpppo.enip.device.model import parse_tag_spec

        name = target.partition("[")[0]
        tags = {t.name: t for t in map(parse_tag_spec, device.options.tags)}
        if name not in tags:
            raise WriteError(f"{device.name} has no tag {name!r}")
        ctype = tags[name].type
        try:
            value = ctype.parse(text)
        except ValueError:
            raise WriteError(f"{text!r} is not a {ctype.name} value") from None
        await client.write(target, [value], tag_type=ctype.name)


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


@functools.cache
def _parse_identity() -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    """cpppo's identity check, imported on first use, once: ``from ... import`` costs more than
    the check itself, and a plan checks the identity of each of 100,000 devices."""
    from cpppo.enip.device.model import parse_identity

    return parse_identity
