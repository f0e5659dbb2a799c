"""The Modbus/RTU kind: units on serial lines, RTU over TCP, gateways (the lines: :mod:`fleet.rtu`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from fleet.kinds.base import ServerLimits, _relative_to, read_limits
from fleet.kinds.modbus import ModbusKind
from fleet.table import Table


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
