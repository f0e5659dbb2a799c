"""A device's identity and current values for the fleet page, read (and written) over the wire
with the client its kind gives (``fleet.kinds``: ENIP tags through ``AsyncClient``, Modbus
registers through ``AsyncModbusClient``).  The first :data:`SHOWN` elements of each tag or
register range are shown."""

from __future__ import annotations

import contextlib
from typing import Any

from fleet.kinds import KINDS
from fleet.kinds.base import WriteError
from fleet.plan import PlannedDevice

__all__ = ["SHOWN", "DeviceReader", "WriteError"]

SHOWN = 16  # elements shown per tag / register range


class DeviceReader:
    """One open client to one device; ``values()`` reads, ``write()`` writes."""

    def __init__(self, device: PlannedDevice, timeout: float = 2.0) -> None:
        self.device = device
        self.kind = KINDS[device.kind]
        self.timeout = timeout
        self.client: Any = None

    async def __aenter__(self) -> DeviceReader:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _open(self) -> Any:
        if self.client is None:
            device = self.device
            client = self.kind.client(device.host, device.port, device.options, self.timeout)
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
        try:
            return await self.kind.device_identity(self.device, self._open)
        except Exception:
            await self.close()
            raise

    async def values(self) -> list[dict[str, Any]]:
        """``[{"name", "type", "first", "values"}, ...]``: each tag's / range's first elements."""
        client = await self._open()
        try:
            return await self.kind.values(client, self.device.options, SHOWN)
        except Exception:
            await self.close()
            raise

    async def write(self, target: str, text: str) -> None:
        """Write ``text`` to ``target``: ``TAG`` / ``TAG[i]`` (ENIP) or a Modbus-numbered
        coil / holding register (``40001``).  Raises WriteError (one line) for a bad request."""
        await self.kind.write(await self._open(), self.device, target, text)
