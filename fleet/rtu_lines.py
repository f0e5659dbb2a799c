"""The ``modbus-rtu`` device kind: Modbus/RTU units on serial lines the fleet creates as
pseudo-terminals, RTU over TCP devices at their own IPs, and Modbus/TCP gateways in front of
a line.  Self-contained: config, plan, worker and health poller each call in here.

fleet.toml keys of a ``kind = "modbus-rtu"`` group (besides the Modbus ``registers`` and
``health_register``)::

    transport = "pty"        # "pty" (default): a line on a pseudo-terminal; "tcp": RTU over TCP
    line = "line0"           # the line's name (default: one line per group, "rtu<index>")
    unit_id = 1              # the first device's unit id; the next ones follow (default: next free)
    baud = 19200             # the line's timing: baud, parity ("N", "E", "O"), stopbits, timing
    gateway = "127.60.9.1:502"   # a Modbus/TCP gateway to every unit of the line

A pty line is named by a symbolic link ``<fleet.toml's folder>/.fleet/<fleet>/tty/<line>``
(plan and status show it, with the unit id: ``.../tty/line0#3``) that a third-party master
opens; the health poller polls over a second pty of the same line (``<line>.health``), so it
never takes replies from another master.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

KIND = "modbus-rtu"
KEYS = {"registers", "health_register", "transport", "line", "unit_id", "baud", "parity", "stopbits",
        "timing", "gateway"}
TRANSPORTS = ("pty", "tcp")


@dataclass(frozen=True)
class RtuOptions:
    """The RTU settings of one planned device."""

    transport: str = "pty"
    line: str = ""                  # the line's name
    link: str = ""                  # pty: the symbolic link naming the line
    unit: int = 1                   # this device's unit id on its line
    baud: int = 19200
    parity: str = "E"
    stopbits: int = 1
    timing: bool = False
    role: str = "unit"              # "unit", or "gateway" (Modbus/TCP in front of the line)
    units: tuple[int, ...] = ()     # gateway: the unit ids it routes

    def settings(self) -> Any:
        from cpppo.modbus.serial_line import LineSettings

        return LineSettings(self.baud, self.parity, self.stopbits, timing=self.timing)

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> RtuOptions | None:
        return None if data is None else cls(**{**data, "units": tuple(data.get("units", ()))})


# -- config ----------------------------------------------------------------------------------------

def parse_group(t: Any, index: int) -> tuple[tuple[str, Any], ...]:
    """The group's RTU keys, checked (ConfigError naming the key); stored on the DeviceGroup."""
    from cpppo.modbus.serial_line import LineSettings
    from fleet.config import NAME_OK

    transport = t.choice("transport", TRANSPORTS, "pty")
    line = t.get("line", str, f"rtu{index}", what="a line name")
    if not NAME_OK.fullmatch(line):
        t.fail("line", f"must be letters, digits, '.', '_' or '-', got {line!r}")
    unit = t.get("unit_id", int, None, what="an integer 1..247")
    if unit is not None and not 1 <= unit <= 247:
        t.fail("unit_id", f"must be 1..247, got {unit}")
    try:
        settings = LineSettings.parse(t.get("baud", int, 19200, what="an integer"),
                                      t.get("parity", str, "E", what="N, E or O"),
                                      t.get("stopbits", int, 1, what="1 or 2"),
                                      t.get("timing", bool, False, what="true or false"))
    except ValueError as exc:
        t.fail("baud" if "baud" in str(exc) else "parity" if "parity" in str(exc) else "stopbits", str(exc))
    gateway = t.get("gateway", str, None, what="an 'IP[:port]' string")
    if gateway is not None:
        try:
            _endpoint(gateway)
        except ValueError as exc:
            t.fail("gateway", str(exc))
        if transport != "pty":
            t.fail("gateway", "a gateway stands in front of a pty line (transport = \"pty\")")
    return (("transport", transport), ("line", line), ("unit_id", unit), ("baud", settings.baudrate),
            ("parity", settings.parity), ("stopbits", settings.stopbits), ("timing", settings.timing),
            ("gateway", gateway))


def _endpoint(text: str) -> tuple[str, int]:
    import ipaddress

    host, _, port = text.partition(":")
    ipaddress.IPv4Address(host)
    number = int(port) if port else 502
    if not 1 <= number <= 65535:
        raise ValueError(f"port {number} is outside 1..65535")
    return host, number


# -- plan -------------------------------------------------------------------------------------------

def arrange(devices: list[Any], config: Any) -> list[Any]:
    """Plan the RTU devices: unit ids along each line, the lines' links, pty devices without an
    IP, and a gateway device per line that asks for one.  ConfigError for a full line, a
    unit id taken twice, or a pty line on the docker backend."""
    from fleet.config import ConfigError

    src = str(config.source)
    groups = {g.index: g for g in config.groups}
    tty = Path(os.path.abspath(Path(config.source).parent)) / ".fleet" / config.fleet.name / "tty"
    taken: dict[str, set[int]] = {}
    starts: dict[tuple[int, str], int] = {}
    gateways: dict[str, tuple[str, int, int, Any]] = {}
    out = []
    for device in devices:
        if device.kind != KIND:
            out.append(device)
            continue
        keys = dict(groups[device.group].rtu)
        table = f"device[{device.group}]"
        if keys["transport"] == "pty" and config.fleet.backend != "process":
            raise ConfigError(src, table, "transport", "pty lines need backend \"process\"; use "
                                                       "transport = \"tcp\" on docker")
        line = keys["line"] if keys["transport"] == "pty" else device.name
        units = taken.setdefault(line, set())
        if (device.group, line) not in starts:           # the group's first unit on this line
            starts[(device.group, line)] = keys["unit_id"] or (max(units) + 1 if units else 1)
        unit = starts[(device.group, line)] + (0 if keys["transport"] == "tcp"
                                               else device.n - groups[device.group].first)
        if unit > 247 or unit in units:
            why = "beyond 247" if unit > 247 else f"taken on line {line}"
            raise ConfigError(src, table, "unit_id", f"unit id {unit} of {device.name!r} is {why}")
        units.add(unit)
        options = RtuOptions(transport=keys["transport"], line=line, unit=unit, baud=keys["baud"],
                             parity=keys["parity"], stopbits=keys["stopbits"], timing=keys["timing"],
                             link=str(tty / line) if keys["transport"] == "pty" else "")
        if keys["transport"] == "pty":
            device = replace(device, host="", port=0)
        device = replace(device, unit_ids=(unit,), rtu=options)
        if keys["gateway"] and line not in gateways:
            gateways[line] = (*_endpoint(keys["gateway"]), device.group, device)
        out.append(device)
    for line, (host, port, _group, first) in gateways.items():
        if any(d.host == host and d.port == port for d in out):
            raise ConfigError(src, f"device[{first.group}]", "gateway", f"{host}:{port} is taken")
        out.append(replace(first, name=f"{line}-gw", host=host, port=port,
                           rtu=replace(first.rtu, role="gateway", units=tuple(sorted(taken[line])))))
    return out


def endpoint(device: Any) -> str:
    """Where a master reaches the device: ``<link>#<unit>`` on a pty line, else ``IP:port``."""
    options = device.rtu
    if options is not None and options.role == "unit" and options.transport == "pty":
        return f"{options.link}#{options.unit}"
    return f"{device.host}:{device.port}"


def chunks(devices: list[Any], per: int) -> list[list[Any]]:
    """Workers' devices, ``per`` at a time, except that a line (its units and gateway) is never
    split: it goes to the worker of its first device."""
    home: dict[str, int] = {}
    out: list[list[Any]] = []
    for device in devices:
        line = device.rtu.line if device.rtu is not None and device.rtu.transport == "pty" else None
        if line is not None and line in home:
            out[home[line]].append(device)
            continue
        if not out or len(out[-1]) >= per:
            out.append([])
        if line is not None:
            home[line] = len(out) - 1
        out[-1].append(device)
    return out


def to_json(options: RtuOptions | None) -> dict[str, Any] | None:
    return None if options is None else asdict(options)


# -- worker -----------------------------------------------------------------------------------------

class _Line:
    """One line in a worker: its units and the ptys serving them (a master's, the poller's)."""

    def __init__(self, options: RtuOptions) -> None:
        from cpppo.modbus.rtu_server import RtuSerialServer, RtuUnits

        self.units = RtuUnits({})
        self.members = 0
        Path(options.link).parent.mkdir(parents=True, exist_ok=True)
        self.servers = [RtuSerialServer(self.units, "pty", options.settings(), link)
                        for link in (options.link, f"{options.link}.health")]
        for server in self.servers:
            server.open()

    def close(self) -> None:
        for server in self.servers:
            server.close()


_LINES: dict[str, _Line] = {}


class _Member:
    """A device's hold on its line: ``close()`` takes the unit off (the last one closes it)."""

    def __init__(self, line: _Line, options: RtuOptions, server: Any = None) -> None:
        self.line, self.options, self.server = line, options, server
        line.members += 1

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        elif self.options.role == "unit":
            self.line.units.remove(self.options.unit)
        self.line.members -= 1
        if self.line.members == 0:
            self.line.close()
            _LINES.pop(self.options.link, None)

    async def wait_closed(self) -> None:
        if self.server is not None:
            await self.server.wait_closed()


async def start(device: Any) -> Any:
    """Serve one planned modbus-rtu device in this worker; the handle has ``close()`` and
    ``wait_closed()``."""
    from cpppo.modbus.device import ModbusDevice
    from cpppo.modbus.gateway import ModbusGateway
    from cpppo.modbus.rtu_server import RtuUnits, serve_rtu_tcp
    from cpppo.modbus.server import serve

    options: RtuOptions = device.rtu
    model = ModbusDevice.from_specs(list(device.specs), unit_ids=(options.unit,),
                                    identity=device.identity_dict)
    if options.transport == "tcp":
        return await serve_rtu_tcp(RtuUnits({options.unit: model}), device.host, device.port,
                                   delay=device.delay)
    line = _LINES.get(options.link)
    if line is None:
        line = _LINES[options.link] = _Line(options)
    if options.role == "gateway":
        gateway = ModbusGateway({unit: line.units for unit in options.units})
        return _Member(line, options, await serve(gateway, device.host, device.port))
    line.units.add(options.unit, model)
    return _Member(line, options)


# -- health -----------------------------------------------------------------------------------------

_MASTERS: dict[int, dict[str, list[Any]]] = {}  # id(event loop) -> {path: [master, users]}


class _HealthClient:
    """A device's health client on its line: one master per line and event loop, shared by the
    line's devices (the line carries one request at a time)."""

    def __init__(self, device: Any, timeout: float) -> None:
        self.device, self.timeout = device, timeout
        self.path = f"{device.rtu.link}.health"
        self.entry: list[Any] | None = None

    async def __aenter__(self) -> _HealthClient:
        import asyncio

        from cpppo.modbus.rtu_client import AsyncRtuClient

        masters = _MASTERS.setdefault(id(asyncio.get_running_loop()), {})
        entry = masters.get(self.path)
        if entry is None:
            entry = masters[self.path] = [AsyncRtuClient.serial(self.path, self.device.rtu.settings(),
                                                                timeout=self.timeout), 0]
        entry[1] += 1
        self.entry = entry
        await entry[0].connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        import asyncio

        entry, self.entry = self.entry, None
        if entry is not None:
            entry[1] -= 1
            if entry[1] == 0:
                loop = id(asyncio.get_running_loop())
                _MASTERS.get(loop, {}).pop(self.path, None)
                if not _MASTERS.get(loop, True):
                    del _MASTERS[loop]
                await entry[0].close()

    def __getattr__(self, method: str) -> Any:
        master = self.entry[0]
        unit = self.device.rtu.unit

        async def call(address: int, count: int = 1) -> Any:
            previous, master.unit = master.unit, unit
            try:
                return await getattr(master, method)(address, count)
            finally:
                master.unit = previous
        return call


def health_client(device: Any, timeout: float) -> Any:
    """The (unopened) health client of a modbus-rtu device: over its line's health pty, RTU
    over TCP, or Modbus/TCP for a gateway."""
    options = device.rtu
    if options.role == "gateway":
        from cpppo.modbus.aclient import AsyncModbusClient

        return AsyncModbusClient(device.host, device.port, unit=options.units[0], timeout=timeout)
    if options.transport == "tcp":
        from cpppo.modbus.rtu_client import AsyncRtuClient

        return AsyncRtuClient.tcp(device.host, device.port, unit=options.unit, timeout=timeout)
    return _HealthClient(device, timeout)


# -- down -------------------------------------------------------------------------------------------

def remove_links(plan: Any) -> None:
    """Remove the plan's pty links (a worker removes its own when it stops; these are left by a
    killed one), and their folder when it is empty."""
    folders = set()
    for device in plan.devices:
        if device.rtu is not None and device.rtu.link:
            for link in (device.rtu.link, f"{device.rtu.link}.health"):
                if os.path.islink(link):
                    os.unlink(link)
            folders.add(os.path.dirname(device.rtu.link))
    for folder in folders:
        try:
            os.rmdir(folder)
        except OSError:
            pass
