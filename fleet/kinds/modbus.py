"""The Modbus/TCP kind: register maps and unit ids."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

from fleet.kinds.base import Kind, ServerLimits, WriteError, _relative_to, limits, read_limits
from fleet.table import Table


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

    def label(self, name: str) -> str:
        return f"register {name[1:]}"  # a driven range by its first register, r40001

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

    def idle_default(self) -> float | None:
        from cpppo.modbus.server import ServerSettings

        return ServerSettings.idle_timeout

    def client(self, host: str, port: int, options: ModbusOptions, timeout: float) -> Any:
        from cpppo.modbus.aclient import AsyncModbusClient

        return AsyncModbusClient(host, port, unit=options.unit_ids[0], timeout=timeout)

    async def check(self, client: Any, options: ModbusOptions, identity: Mapping[str, Any]) -> None:
        method, address = _health_read(options.health_register)
        await getattr(client, method)(address, 1)

    def health(self, options: ModbusOptions) -> RegisterRead:
        from cpppo.modbus.address import locate

        return RegisterRead(*locate(options.health_register))

    async def values(self, client: Any, options: ModbusOptions, shown: int) -> list[dict[str, Any]]:
        from cpppo.modbus.address import locate, parse_spec

        out = []
        for spec in options.registers:
            block = parse_spec(spec)
            table, offset = locate(block.begin)
            count = min(block.end - block.begin + 1, shown)
            values = await getattr(client, self._READS[table.name])(offset, count)
            out.append({"name": spec.partition("=")[0].strip(), "type": _table_name(table),
                        "first": block.begin, "values": [int(v) for v in values]})
        return out

    async def write(self, client: Any, device: Any, target: str, text: str) -> None:
        """``target``: a Modbus-numbered coil or holding register (``40001``)."""
        from cpppo.modbus.address import Table, locate

        try:
            table, offset = locate(int(target))
            value = int(text, 0)
        except ValueError as exc:
            raise WriteError(str(exc)) from None
        if table is Table.HOLDING_REGISTERS:
            await client.write_register(offset, value)
        elif table is Table.COILS:
            await client.write_coil(offset, bool(value))
        else:
            raise WriteError(f"{target} is in the {_table_name(table)}, which are read-only")


def _table_name(table: Any) -> str:
    """``holding registers`` for Table.HOLDING_REGISTERS."""
    return table.name.lower().replace("_", " ")


@functools.lru_cache(maxsize=1024)
def _health_read(register: int) -> tuple[str, int]:
    """The client method and zero-based address of the health read of ``register`` (cached: every
    poll of every Modbus device reads it)."""
    from cpppo.modbus.address import locate

    table, offset = locate(register)
    return ModbusKind._READS[table.name], offset
