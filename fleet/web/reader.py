"""A device's identity and current values for the fleet page, read (and written) over the wire
with the project's own async clients: ``cpppo.enip.client.aclient.AsyncClient`` (tags) and
``cpppo.modbus.aclient.AsyncModbusClient`` (registers).  The first :data:`SHOWN` elements of
each tag or register range are shown."""

from __future__ import annotations

import contextlib
from typing import Any

from fleet.kinds import KINDS
from fleet.plan import PlannedDevice

SHOWN = 16  # elements shown per tag / register range
_READS = {"HOLDING_REGISTERS": "read_holding_registers", "INPUT_REGISTERS": "read_input_registers",
          "COILS": "read_coils", "DISCRETE_INPUTS": "read_discrete_inputs"}


class WriteError(ValueError):
    """A write the device (or the request) refused: the message says why."""


class DeviceReader:
    """One open client to one device; ``values()`` reads, ``write()`` writes."""

    def __init__(self, device: PlannedDevice, timeout: float = 2.0) -> None:
        self.device = device
        self.timeout = timeout
        self.client: Any = None

    async def __aenter__(self) -> DeviceReader:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _open(self) -> Any:
        if self.client is None:
            device = self.device
            client = KINDS[device.kind].client(device.host, device.port, device.options, self.timeout)
            await client.__aenter__()
            self.client = client
        return self.client

    async def close(self) -> None:
        if self.client is not None:
            client, self.client = self.client, None
            with contextlib.suppress(Exception):
                await client.__aexit__(None, None, None)

    async def identity(self) -> dict[str, Any]:
        """What the device says it is (ENIP: List Identity); the plan's identity for Modbus."""
        if self.device.kind != "enip":
            return dict(self.device.identity_dict)
        client = await self._open()
        try:
            ident = await client.list_identity()
        except Exception:
            await self.close()
            raise
        return {key: value for key, value in dict(ident).items() if isinstance(value, (str, int, float))}

    async def values(self) -> list[dict[str, Any]]:
        """``[{"name", "type", "first", "values"}, ...]``: each tag's / range's first elements."""
        from cpppo.enip.device.model import parse_tag_spec
        from cpppo.modbus.address import locate, parse_spec

        client = await self._open()
        out = []
        try:
            if self.device.kind == "enip":
                for spec in self.device.options.tags:
                    tag = parse_tag_spec(spec)
                    shown = min(tag.length, SHOWN) if tag.length is not None else None
                    what = tag.name if shown is None else f"{tag.name}[0-{shown - 1}]"
                    values = await client.read(what)
                    out.append({"name": tag.name, "type": tag.type.name, "first": 0,
                                "values": values if isinstance(values, list) else [values]})
            else:
                for spec in self.device.options.registers:
                    block = parse_spec(spec)
                    table, offset = locate(block.begin)
                    count = min(block.end - block.begin + 1, SHOWN)
                    values = await getattr(client, _READS[table.name])(offset, count)
                    out.append({"name": spec.partition("=")[0].strip(), "type": _table_name(table),
                                "first": block.begin, "values": [int(v) for v in values]})
        except Exception:
            await self.close()
            raise
        return out

    async def write(self, target: str, text: str) -> None:
        """Write ``text`` to ``target``: ``TAG`` / ``TAG[i]`` (ENIP) or a Modbus-numbered
        coil / holding register (``40001``).  Raises WriteError (one line) for a bad request."""
        from cpppo.enip.device.model import parse_tag_spec
        from cpppo.modbus.address import Table, locate

        client = await self._open()
        if self.device.kind == "enip":
            name = target.partition("[")[0]
            tags = {t.name: t for t in map(parse_tag_spec, self.device.options.tags)}
            if name not in tags:
                raise WriteError(f"{self.device.name} has no tag {name!r}")
            kind = tags[name].type.name
            try:
                value: Any = (text if "STRING" in kind else float(text) if kind in ("REAL", "LREAL")
                              else int(text, 0))
            except ValueError:
                raise WriteError(f"{text!r} is not a {kind} value") from None
            await client.write(target, [value], tag_type=kind)
            return
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


def _table_name(table: object) -> str:
    """``holding registers`` for Table.HOLDING_REGISTERS."""
    return table.name.lower().replace("_", " ")  # type: ignore[attr-defined]
