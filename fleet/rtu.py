"""The serial lines of the ``modbus-rtu`` kind (:class:`fleet.kinds.ModbusRtuKind` calls in here):
units planned onto lines, the lines a worker serves on pseudo-terminals, the health poller's
master on each line, and the links ``down`` removes.

A line is an :class:`~cpppo.modbus.rtu_server.RtuUnits` (the units on it, by unit id) in the
worker that hosts every unit of the line (a line is never split across workers), served on
two pseudo-terminals the worker makes itself (``os.openpty``: no extra process): the user's,
named by the link ``.fleet/<fleet>/tty/<line>`` beside fleet.toml, and the health poller's,
``<line>.health``.  A pty is point to point: two masters opening the same one would read each
other's replies, so the poller has a wire of its own to the same units and never takes (or
collides with) a reply meant for the user's master.  A gateway in the same worker reaches
the line's units in-process.

A line may instead be a serial port the user names (``serial = "/dev/ttyUSB0"``): the worker
opens it with pyserial and serves the units there; no link, no health pty (the port's far side
is the user's), so its units' health is the worker's report (:class:`PortReport`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from fleet.control import REPORTS, request, socket_path
from fleet.table import ConfigError

KIND = "modbus-rtu"
TRANSPORTS = ("pty", "tcp", "gateway")
LINE_KEYS = ("baud", "parity", "stopbits", "timing", "serial")  # a line's settings: one value per line


def check_ports(devices: Iterable[Any], source: str) -> None:
    """ConfigError unless each line's ``serial`` is a character device on this host: what
    ``validate`` and ``up`` check (not ``status`` or ``down``: an unplugged port's fleet still
    comes down)."""
    import stat

    seen = set()
    for d in devices:
        path = getattr(d.options, "serial", "") if d.kind == KIND else ""
        if not path or path in seen:
            continue
        seen.add(path)
        table = f"device[{d.group}]"
        try:
            mode = os.stat(path).st_mode
        except OSError as exc:
            raise ConfigError(source, table, "serial", f"serial port {path!r}: {exc.strerror}") from None
        if not stat.S_ISCHR(mode):
            raise ConfigError(source, table, "serial", f"serial port {path!r} is not a character device")


def tty_dir(source: str | Path, fleet: str) -> Path:
    """The folder of a fleet's line links: ``.fleet/<fleet>/tty/`` beside its fleet.toml."""
    return Path(source).resolve().parent / ".fleet" / fleet / "tty"


def health_link(link: str) -> str:
    """The link of the health poller's pty of the line at ``link``."""
    return f"{link}.health"


# -- plan -----------------------------------------------------------------------------------------
@dataclass
class _Line:
    """One line while planning: its settings (and who set them), its units by unit id."""

    settings: tuple[Any, ...]
    group: int
    units: dict[int, Any] = field(default_factory=dict)  # unit id -> planned device


def arrange(devices: list[Any], config: Any) -> list[Any]:
    """The fleet's modbus-rtu devices planned: each pty unit's unit id (counting up from the
    group's ``unit_id``, or from the line's next free one) and line link, each gateway's routes,
    and each device's ``cluster`` (a line, with the gateways in front of it and the lines they
    join, is hosted by one worker).  ConfigError for what a worker could not serve: a unit id
    twice on a line or out of 1..247, one line with two settings, a gateway naming an unknown
    line or one unit id on two of its lines, a pty line outside the process backend."""
    src = str(config.source)
    tty = tty_dir(config.source, config.fleet.name)
    firsts = {g.index: g.first for g in config.groups}
    lines: dict[str, _Line] = {}
    ports: dict[str, str] = {}  # a serial port (its real path) -> the line on it
    starts: dict[tuple[int, str], int] = {}
    units: dict[int, int] = {}  # index in devices -> unit id
    for i, device in enumerate(devices):
        o = device.options
        if device.kind != KIND or o.transport == "tcp":
            continue
        table = f"device[{device.group}]"
        if o.serial and config.fleet.backend != "process":
            raise ConfigError(src, table, "serial",
                              f"serial = {o.serial!r} needs backend = \"process\" (the port is on this host, "
                              f"not in a {config.fleet.backend} container)")
        if config.fleet.backend != "process":
            raise ConfigError(src, table, "transport",
                              f"transport = {o.transport!r} needs backend = \"process\" (the fleet's "
                              f"pseudo-terminals are on this host); use transport = \"tcp\" under "
                              f"{config.fleet.backend}")
        if o.transport == "gateway":
            continue
        settings = tuple(getattr(o, key) for key in LINE_KEYS)
        if o.serial:
            real = os.path.realpath(o.serial)
            other = ports.setdefault(real, o.line)
            if other != o.line:
                raise ConfigError(src, table, "serial", f"{o.serial!r} is the port of line {other!r} too: "
                                                        "a port carries one line")
        line = lines.setdefault(o.line, _Line(settings, device.group))
        if line.settings != settings:
            key = next(k for k, a, b in zip(LINE_KEYS, settings, line.settings, strict=True) if a != b)
            raise ConfigError(src, table, key, f"line {o.line!r} has {key} = {getattr(o, key)!r} here and "
                                               f"{dict(zip(LINE_KEYS, line.settings, strict=True))[key]!r} "
                                               f"in device[{line.group}]: a line has one setting")
        start = starts.get((device.group, o.line))
        if start is None:
            start = starts[(device.group, o.line)] = o.unit_id or max(line.units, default=0) + 1
        unit = start + device.n - firsts[device.group]
        if unit > 247:
            raise ConfigError(src, table, "unit_id", f"{device.name!r} would be unit id {unit} on line "
                                                     f"{o.line!r}: unit ids are 1..247")
        if unit in line.units:
            raise ConfigError(src, table, "unit_id", f"duplicate unit id {unit} on line {o.line!r}: "
                                                     f"{device.name!r} and {line.units[unit].name!r}")
        line.units[unit] = device
        units[i] = unit

    def link_of(line: _Line, name: str) -> str:  # a line's serial port, or the link of its pty
        return line.settings[LINE_KEYS.index("serial")] or str(tty / name)

    joined = {name: name for name in lines}  # union-find: a gateway joins its lines

    def root(name: str) -> str:
        while joined[name] != name:
            name = joined[name]
        return name

    routes: dict[int, tuple[tuple[int, str], ...]] = {}
    for i, device in enumerate(devices):
        o = device.options
        if device.kind != KIND or o.transport != "gateway":
            continue
        owner: dict[int, str] = {}
        for name in o.lines:
            if name not in lines:
                known = ", ".join(sorted(lines)) or "none"
                raise ConfigError(src, f"device[{device.group}]", "lines",
                                  f"unknown line {name!r} (the fleet's lines: {known})")
            for unit in sorted(lines[name].units):
                if unit in owner:
                    raise ConfigError(src, f"device[{device.group}]", "lines",
                                      f"unit id {unit} is on line {owner[unit]!r} and on line {name!r}: a "
                                      "gateway routes a unit id to one line")
                owner[unit] = name
            joined[root(name)] = root(o.lines[0])
        routes[i] = tuple((unit, link_of(lines[name], name)) for unit, name in sorted(owner.items()))
    out = list(devices)
    for i, unit in units.items():
        o = devices[i].options
        out[i] = devices[i]._replace(options=replace(o, unit_id=unit, link=o.serial or str(tty / o.line),
                                                     cluster=f"line:{root(o.line)}"))
    for i, pairs in routes.items():
        o = devices[i].options
        first = lines[next(name for name in o.lines if lines[name].units)]
        unit = min(first.units)
        out[i] = devices[i]._replace(options=replace(
            o, routes=pairs, unit_id=unit, health_register=first.units[unit].options.health_register,
            cluster=f"line:{root(o.lines[0])}"))
    return out


def ranges(numbers: Iterable[int]) -> str:
    """Unit ids as runs.

    >>> ranges([1, 2, 3, 10, 11, 20])
    '1-3,10-11,20'
    """
    runs: list[list[int]] = []
    for n in sorted(numbers):
        if runs and n == runs[-1][1] + 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def describe_lines(devices: Iterable[Any]) -> list[str]:
    """One line of text per serial line and per gateway of planned devices (for ``plan``)."""
    from cpppo.modbus.serial_line import LineSettings

    lines: dict[str, list[Any]] = {}
    out = []
    for d in devices:
        if d.kind == KIND and d.options.transport == "pty":
            lines.setdefault(d.options.line, []).append(d)
    for name, units in lines.items():
        o = units[0].options
        wire = LineSettings(o.baud, o.parity, o.stopbits, timing=o.timing)
        health = ("health: the worker's report that it has the port open (no poll on the line)"
                  if o.serial else f"health polls on {health_link(o.link)}")
        out.append(f"line {name}: {'serial port ' if o.serial else ''}{o.link} "
                   f"({wire.describe()}{', wire timing' if o.timing else ''}), "
                   f"{len(units)} units {ranges(u.options.unit_id for u in units)}, "
                   f"worker {units[0].worker}; {health}")
    for d in devices:
        if d.kind == KIND and d.options.transport == "gateway":
            out.append(f"gateway {d.name}: Modbus/TCP {d.host}:{d.port} -> {', '.join(d.options.lines)} "
                       f"(units {ranges(u for u, _ in d.options.routes)})")
    return out


def links(devices: Iterable[Any]) -> set[str]:
    """The line links (and health links) of planned devices (a serial port is the user's: none)."""
    return {path for d in devices if d.kind == KIND and getattr(d.options, "link", "")
            and not getattr(d.options, "serial", "")
            for path in (d.options.link, health_link(d.options.link))}


def remove_links(devices: Iterable[Any]) -> None:
    """Remove the links of these devices' lines a worker left behind (it was killed: a worker
    that stops removes its own), and the tty folder when it is empty.  Only symbolic links
    are removed (a file a user put there stays)."""
    folders = set()
    for path in links(devices):
        if os.path.islink(path):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        folders.add(os.path.dirname(path))
    for folder in folders:  # tty/, then .fleet/<fleet>/ and .fleet/ if nothing else is there
        for empty in (folder, os.path.dirname(folder), os.path.dirname(os.path.dirname(folder))):
            try:
                os.rmdir(empty)
            except OSError:
                break


# -- worker ---------------------------------------------------------------------------------------
class Line:
    """A line in a worker: its units and, once a unit joins, the two ptys serving them."""

    def __init__(self, link: str) -> None:
        from cpppo.modbus.rtu_server import RtuUnits

        self.link = link
        self.units = RtuUnits({})
        self.servers: list[Any] = []
        self.members = 0

    def open(self, settings: Any, serial: str = "") -> None:
        """Serve the line on its ptys (the user's link and the health link), or on its serial
        port; ValueError naming a link that cannot be made or a port that cannot be opened."""
        if self.servers:
            return
        from cpppo.modbus.rtu_server import RtuSerialServer

        if serial:
            server = RtuSerialServer(self.units, serial, settings)
            server.open()
            self.servers = [server]
            return

        try:
            Path(self.link).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ValueError(f"cannot make {Path(self.link).parent}: {exc.strerror}") from None
        servers = []
        try:
            for link in (self.link, health_link(self.link)):
                server = RtuSerialServer(self.units, "pty", settings, link)
                server.open()
                servers.append(server)
        except ValueError:
            for server in servers:
                server.close()
            raise
        self.servers = servers

    def close(self) -> None:
        for server in self.servers:
            server.close()
        self.servers = []

    def report(self) -> dict[str, Any]:
        """What the worker says of the line (the control channel's ``lines``)."""
        return {"serving": bool(self.servers) and all(s.serving for s in self.servers),
                "units": sorted(self.units.devices), "frames": sum(s.counters.frames for s in self.servers)}


LINES: dict[str, Line] = {}  # the worker's lines, by link
REPORTS["lines"] = lambda: {link: each.report() for link, each in LINES.items()}  # for PortReport


def line(link: str) -> Line:
    """The worker's line at ``link`` (made, without ptys yet, when first asked for)."""
    found = LINES.get(link)
    if found is None:
        found = LINES[link] = Line(link)
    return found


class Hold:
    """A device's hold on lines (a unit on its line, a gateway on the lines behind it):
    ``close()`` takes the unit off (it falls silent) and closes the gateway's server; the last
    hold on a line closes it (its ptys and links go)."""

    def __init__(self, lines: Iterable[Line], unit: int | None = None, server: Any = None) -> None:
        self.lines, self.unit, self.server = list(lines), unit, server
        for each in self.lines:
            each.members += 1

    def __getattr__(self, name: str) -> Any:  # a gateway's counters and connections, for metrics
        server = self.__dict__.get("server")
        if server is None:
            raise AttributeError(name)
        return getattr(server, name)

    def __str__(self) -> str:
        return f"modbus-rtu@{self.lines[0].link}#{self.unit}" if self.unit else f"{self.server}"

    def close(self) -> None:
        lines, self.lines = self.lines, []
        if self.server is not None:
            self.server.close()
        for each in lines:
            if self.unit is not None:
                each.units.remove(self.unit)
            each.members -= 1
            if each.members <= 0:
                each.close()
                LINES.pop(each.link, None)

    async def wait_closed(self) -> None:
        if self.server is not None:
            await self.server.wait_closed()


def serve_unit(model: Any, options: Any) -> Hold:
    """Put a unit (its ModbusDevice ``model``) on its line, opening the line's ptys if it is the
    first; ValueError naming a link that cannot be made."""
    from cpppo.modbus.serial_line import LineSettings

    each = line(options.link)
    each.open(LineSettings(options.baud, options.parity, options.stopbits, timing=options.timing),
              options.serial)
    each.units.add(options.unit_id, model)
    return Hold([each], unit=options.unit_id)


async def serve_gateway(model: Any, host: str, port: int, delay: Any, settings: Any, pool: Any,
                        options: Any) -> Hold:
    """Serve a gateway (``model``, a ModbusGateway) on Modbus/TCP in front of its lines' units."""
    from cpppo.modbus.server import serve

    behind = {link: line(link) for _unit, link in options.routes}
    model.routes = {unit: behind[link].units for unit, link in options.routes}
    hold = Hold(behind.values())
    try:
        hold.server = await serve(model, host=host, port=port, delay=delay, settings=settings, pool=pool)
    except BaseException:
        hold.close()
        raise
    return hold


# -- health ---------------------------------------------------------------------------------------
_MASTERS: dict[tuple[int, str], list[Any]] = {}  # (id of the event loop, health link) -> [master, users]


def _master_key(path: str) -> tuple[int, str]:
    import asyncio

    return id(asyncio.get_running_loop()), path


def line_client(options: Any, timeout: float) -> Any:
    """The (unopened) health client of a pty unit: its unit id over its line's health pty."""
    from cpppo.modbus.aclient import RequestMethods

    class LineClient(RequestMethods):
        """One unit over the line's health pty, whose one master (per event loop) every unit
        of the line shares: a line carries one request at a time."""

        def __init__(self) -> None:
            self.path, self.unit, self.master = health_link(options.link), options.unit_id, None

        async def __aenter__(self) -> Any:
            from cpppo.modbus.rtu_client import AsyncRtuClient
            from cpppo.modbus.serial_line import LineSettings

            key = _master_key(self.path)
            entry = _MASTERS.get(key)
            if entry is None:
                settings = LineSettings(options.baud, options.parity, options.stopbits)
                entry = _MASTERS[key] = [AsyncRtuClient.serial(self.path, settings, timeout=timeout), 0]
            entry[1] += 1
            self.master = entry[0]
            try:
                await self.master.connect()
            except BaseException:
                await self.__aexit__()
                raise
            return self

        async def __aexit__(self, *exc: object) -> None:
            if self.master is None:
                return
            self.master = None
            key = _master_key(self.path)
            entry = _MASTERS.get(key)
            if entry is not None:
                entry[1] -= 1
                if entry[1] <= 0:
                    del _MASTERS[key]
                    await entry[0].close()

        async def request(self, request: Any, unit: int | None = None) -> Any:
            return await self.master.request(request, self.unit if unit is None else unit)

    return LineClient()


class PortReport:
    """The health of a unit on a serial port the user named: the worker's report (its control
    channel's ``lines``) that it has the port open and serving the unit.  Nothing is sent on the
    line: the port's far side is the user's master's, and a second master would collide with it.
    ``locate`` (the poller's) says which control socket to ask."""

    def __init__(self, options: Any, timeout: float) -> None:
        self.options, self.timeout = options, timeout
        self.socket: Path | None = None

    def locate(self, control: Path | None, worker: str) -> None:
        self.socket = None if control is None else socket_path(control, worker)

    async def __aenter__(self) -> PortReport:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def check(self) -> None:
        import asyncio

        o = self.options
        if self.socket is None:
            raise RuntimeError(f"no control folder to ask which worker has {o.serial} open")
        answer = await asyncio.to_thread(request, self.socket, {"op": "lines"}, self.timeout)
        line = answer["lines"].get(o.link)
        if line is None:
            raise RuntimeError(f"the worker does not have {o.serial} open")
        if not line["serving"]:
            raise RuntimeError(f"the worker has {o.serial} open but is not reading it (far side gone?)")
        if o.unit_id not in line["units"]:
            raise RuntimeError(f"unit {o.unit_id} is not on {o.serial}")
