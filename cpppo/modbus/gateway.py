'''A Modbus/TCP to Modbus/RTU gateway: Modbus/TCP in front, RTU lines behind it.

A request to unit id *u* over Modbus/TCP is sent, PDU unchanged, to unit *u* on the line that
routes it: a serial port or RTU over TCP (an :class:`~cpppo.modbus.rtu_client.AsyncRtuClient`),
or an in-process :class:`~cpppo.modbus.rtu_server.RtuUnits` (a simulated line).  The reply PDU
goes back unchanged.  When the unit is silent the gateway answers exception 0x0B (gateway
target device failed to respond); when no line routes the unit, or the line cannot be
reached, exception 0x0A (gateway path unavailable).

>>> import asyncio
>>> from cpppo.modbus.rtu_server import RtuUnits
>>> gw = ModbusGateway({1: RtuUnits.from_specs({1: ["40001=5"]})})
>>> asyncio.run(gw.forward(1, bytes.fromhex("03 0000 0001"))).hex()
'03020005'
>>> asyncio.run(gw.forward(9, bytes.fromhex("03 0000 0001"))).hex()       # no path
'830a'

Serve it like any device: ``await serve(gateway, host, port)`` (:mod:`cpppo.modbus.server`).
'''

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from cpppo.faults import FaultState
from cpppo.modbus import rtu
from cpppo.modbus.errors import ExceptionCode, FrameError, ModbusConnectionError
from cpppo.modbus.pdu import exception_pdu
from cpppo.modbus.rtu_server import RtuUnits

__all__ = ["ModbusGateway"]

log = logging.getLogger(__name__)


class ModbusGateway:
    """Routes unit ids to RTU lines: ``routes`` maps a unit id to an ``AsyncRtuClient`` (or
    anything with ``async transact(unit, pdu) -> pdu``) or to an in-process ``RtuUnits``."""

    def __init__(self, routes: Mapping[int, Any]) -> None:
        self.faults = FaultState()  # injected faults of the gateway (cpppo.faults)
        bad = [u for u in routes if not 1 <= u <= 247]
        if bad:
            raise ValueError(f"gateway unit ids must be 1..247: {sorted(bad)}")
        self.routes = dict(routes)
        self.forwarded = self.silent = self.no_path = 0

    @classmethod
    def of_lines(cls, lines: Iterable[tuple[Iterable[int], Any]]) -> ModbusGateway:
        """A gateway from (unit ids, line) pairs; a unit id routed twice raises ValueError."""
        routes: dict[int, Any] = {}
        for units, line in lines:
            for unit in units:
                if unit in routes:
                    raise ValueError(f"gateway unit id {unit} is routed to two lines")
                routes[unit] = line
        return cls(routes)

    def __repr__(self) -> str:
        return f"<ModbusGateway units={','.join(map(str, sorted(self.routes)))}>"

    async def forward(self, unit: int, pdu: bytes) -> bytes:
        """The reply PDU to ``pdu`` from ``unit`` behind the gateway; never raises."""
        function = pdu[0] if pdu else 0
        line = self.routes.get(unit)
        if line is None or not pdu:
            self.no_path += 1
            return exception_pdu(function, ExceptionCode.GATEWAY_PATH_UNAVAILABLE)
        try:
            if isinstance(line, RtuUnits):
                frame = line.answer(rtu.encode(unit, pdu))
                if frame is None:
                    raise TimeoutError(f"unit {unit} is silent")
                wait = line.latency(unit)
                if wait:
                    await asyncio.sleep(wait)
                try:
                    reply = rtu.split(frame)[1]
                except FrameError as exc:       # a corrupt reply: as good as none
                    raise TimeoutError(f"unit {unit}: {exc}") from None
            else:
                reply = await line.transact(unit, pdu)
        except TimeoutError as exc:
            self.silent += 1
            log.debug("gateway: %s", exc)
            return exception_pdu(function, ExceptionCode.GATEWAY_TARGET_FAILED)
        except (ModbusConnectionError, OSError) as exc:
            self.no_path += 1
            log.info("gateway: unit %d: %s", unit, exc)
            return exception_pdu(function, ExceptionCode.GATEWAY_PATH_UNAVAILABLE)
        except Exception:                       # a gateway answers, whatever happens behind it
            log.exception("gateway: unit %d failed", unit)
            return exception_pdu(function, ExceptionCode.SERVER_DEVICE_FAILURE)
        self.forwarded += 1
        return reply
