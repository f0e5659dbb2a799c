"""`poller_modbus`: background polling and synchronous writes of a Modbus/TCP or Modbus/RTU PLC.

    from cpppo.remote import plc_modbus
    p = plc_modbus.poller_modbus("fake", host="localhost", port=1502, rate=.5)
    p.poll(40001)           # begin polling in a background thread
    p.read(40001)           # None until the first poll succeeds
    p.write(40001, 123)     # synchronous

Addresses are Modbus register numbers (spec 3.1.1).  Polled addresses of one table within
``reach`` of each other are merged into one request (at most 125 registers or 2000 bits).  On
pymodbus's synchronous ``ModbusTcpClient``.  The polling thread never raises: an offline PLC
makes ``read`` give None, and reconnects are retried with a doubling back-off.

Modbus/RTU: ``poller_modbus("pump", serial="/dev/ttyUSB0", settings=LineSettings(9600, "E", 1),
unit=3)`` polls unit 3 on a serial line, and ``rtu=True`` (with ``host``, ``port``) RTU over TCP,
both with :class:`cpppo.modbus.rtu_client.RtuClient`, on the codec the simulator uses.  A silent
unit is offline.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from pymodbus.client import ModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

from cpppo.modbus import pdu as codec
from cpppo.modbus.address import Table, locate, span
from cpppo.modbus.errors import ExceptionCode
from cpppo.modbus.errors import ModbusConnectionError as RtuOffline
from cpppo.modbus.errors import ModbusException as RtuException
from cpppo.modbus.pdu import MAX_READ_BITS, MAX_READ_REGISTERS, MAX_WRITE_BITS, MAX_WRITE_REGISTERS
from cpppo.modbus.rtu_client import RtuClient
from cpppo.modbus.serial_line import LineSettings
from cpppo.remote.plc import PlcError, PlcOffline, moving_loads, poller
from cpppo.timing import timer

__all__ = ["merge", "poller_modbus", "shatter"]

log = logging.getLogger(__name__)

MAX_BACKOFF = 10.0


def _read_limit(number: int) -> int:
    return MAX_READ_BITS if locate(number)[0].is_bits else MAX_READ_REGISTERS


def shatter(address: int, count: int, limit: int) -> Iterator[tuple[int, int]]:
    """``count`` registers from ``address`` cut into chunks of at most ``limit``.

    >>> list(shatter(40001, 300, 125))
    [(40001, 125), (40126, 125), (40251, 50)]
    """
    while count > 0:
        yield address, min(count, limit)
        address, count = address + limit, count - limit


def merge(ranges: Iterable[tuple[int, int]], reach: int = 1,
          limit: int | None = None) -> Iterator[tuple[int, int]]:
    """Merge (address, count) ranges whose gaps are under ``reach`` into (base, length) ranges
    of at most ``limit`` (default: the table's read limit), never across tables.

    >>> list(merge([(40001, 1), (40002, 1), (40010, 1), (1, 1), (2, 2)], reach=5))
    [(1, 3), (40001, 2), (40010, 1)]
    """
    base = length = 0
    for address, count in sorted(ranges):
        end = address + count
        cap = limit or _read_limit(address)
        if (length and span(address) == span(base) and address < base + length + reach
                and max(end, base + length) - base <= cap):
            length = max(end, base + length) - base
            continue
        if length:
            yield base, length
        base, length = address, count
    if length:
        yield base, length


# Our RTU client's requests by the pymodbus method names the poller uses.
_RTU_REQUESTS = {
    "read_coils": lambda a, n: codec.ReadRequest(1, a, n),
    "read_discrete_inputs": lambda a, n: codec.ReadRequest(2, a, n),
    "read_holding_registers": lambda a, n: codec.ReadRequest(3, a, n),
    "read_input_registers": lambda a, n: codec.ReadRequest(4, a, n),
    "write_coil": lambda a, v: codec.WriteSingleRequest(5, a, bool(v)),
    "write_register": lambda a, v: codec.WriteSingleRequest(6, a, v),
    "write_coils": lambda a, v: codec.WriteMultipleRequest(15, a, tuple(v)),
    "write_registers": lambda a, v: codec.WriteMultipleRequest(16, a, tuple(v)),
}


class poller_modbus(poller):  # noqa: N801 - the spec's name
    """Poll a Modbus/TCP PLC at ``host:port`` (or a Modbus/RTU unit on the ``serial`` port, or
    over RTU over TCP with ``rtu=True``) in a background thread."""

    def __init__(self, description: str, host: str = "localhost", port: int = 502,
                 rate: float = 1.0, reach: int = 100, unit: int | None = None,
                 timeout: float = 2.0, client: ModbusTcpClient | RtuClient | None = None,
                 serial: str | None = None, settings: LineSettings | None = None,
                 rtu: bool = False) -> None:
        super().__init__(description, rate)
        self.host, self.port = host, port
        self.unit = 1 if unit is None else unit
        self.reach = reach
        if client is None and (serial is not None or rtu):
            client = RtuClient(serial=serial, settings=settings, host=None if serial else host,
                               port=port, timeout=timeout)
        self.client = client or ModbusTcpClient(host, port=port, timeout=timeout, retries=0)
        self._rtu = isinstance(self.client, RtuClient)
        self.where = self.client.where if self._rtu else f"{host}:{port}"
        self.polling: set[tuple[int, int]] = set()      # ranges polled successfully last time
        self.failing: set[tuple[int, int]] = set()      # ranges that failed last time
        self._addresses: set[int] = set()
        self._io = threading.Lock()                     # one request at a time: polls and writes
        self._wake = threading.Condition()
        self._stopped = False
        self._backoff = 0.0
        self._was_connected = False
        self._thread = threading.Thread(target=self._run, name=f"poller_modbus {description}",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop polling (the thread ends after its current request) and close the client."""
        with self._wake:
            self._stopped = True
            self._wake.notify_all()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)
        with self._io:
            self.client.close()

    def _poll(self, address: int) -> None:
        locate(address)                                 # ValueError for a bad number, now
        with self._wake:
            self._addresses.add(address)
            self._wake.notify_all()

    # I/O, always under self._io.

    def _request(self, method: str, address: int, *args: Any, **kwargs: Any) -> Any:
        """Call a client method; a stale connection (the PLC restarted) is retried once."""
        if self._rtu:
            return self._rtu_request(method, address, *args, *kwargs.values())
        for attempt in (1, 2):
            try:
                reply = getattr(self.client, method)(address, *args, device_id=self.unit, **kwargs)
                break
            except (ConnectionException, ModbusIOException, OSError) as exc:
                self.client.close()
                if attempt == 2 or not self._was_connected:
                    self._was_connected = False
                    raise PlcOffline(f"{self}: {self.where} offline: {exc}") from None
                self._was_connected = False
            except ModbusException as exc:
                raise PlcError(f"{self}: {method}({address}) failed: {exc}") from None
        self._was_connected = True
        if reply.isError():
            code = getattr(reply, "exception_code", None)
            name = ExceptionCode(code).name.lower().replace("_", " ") if code in set(ExceptionCode) else "?"
            raise PlcError(f"{self}: {method} at offset {address} answered exception {code} ({name})")
        return reply

    def _rtu_request(self, method: str, address: int, arg: Any) -> Any:
        """The result of our RTU client's request (values of a read)."""
        try:
            return self.client.request(_RTU_REQUESTS[method](address, arg), unit=self.unit)
        except (TimeoutError, RtuOffline) as exc:
            self.client.close()
            raise PlcOffline(f"{self}: {self.where} offline: {exc}") from None
        except RtuException as exc:
            raise PlcError(f"{self}: {method} at offset {address}: {exc}") from None

    def _read(self, base: int, count: int) -> list[Any]:
        table, offset = locate(base)
        method = {Table.COILS: "read_coils", Table.DISCRETE_INPUTS: "read_discrete_inputs",
                  Table.INPUT_REGISTERS: "read_input_registers",
                  Table.HOLDING_REGISTERS: "read_holding_registers"}[table]
        reply = self._request(method, offset, count=count)
        values = list(reply) if self._rtu else (reply.bits[:count] if table.is_bits else reply.registers)
        if len(values) != count:
            raise PlcError(f"{self}: {method} returned {len(values)} values, not {count}")
        return [int(v) for v in values] if table.is_bits else list(values)

    def _write(self, address: int, value: Any) -> None:
        table, offset = locate(address)
        if not table.writable:
            raise ValueError(f"{address}: {table.name.lower().replace('_', ' ')} are read-only")
        values: Sequence[Any] = list(value) if isinstance(value, list | tuple) else [value]
        limit = MAX_WRITE_BITS if table.is_bits else MAX_WRITE_REGISTERS
        with self._io:
            for number, count in shatter(address, len(values), limit):
                chunk = values[number - address:number - address + count]
                first = offset + number - address
                if table.is_bits:
                    if count == 1 and not isinstance(value, list | tuple):
                        self._request("write_coil", first, bool(chunk[0]))
                    else:
                        self._request("write_coils", first, [bool(v) for v in chunk])
                elif count == 1 and not isinstance(value, list | tuple):
                    self._request("write_register", first, int(chunk[0]))
                else:
                    self._request("write_registers", first, [int(v) for v in chunk])

    # The polling thread.

    def _run(self) -> None:
        while True:
            with self._wake:
                if self._stopped:
                    return
                addresses = sorted(self._addresses)
            started = timer()
            try:
                busy = self._poll_once(addresses) if addresses else 0.0
            except Exception:                           # never let the thread die
                log.exception("%s: polling failed unexpectedly", self)
                busy = 0.0
            rate = self.rate or 1.0
            if addresses:
                self.load = moving_loads(self.load, min(busy / rate, 1.0), rate)
            pause = max(rate - (timer() - started), 0.0)
            if addresses and not self.polling:          # all failing: back off
                self._backoff = min(max(self._backoff * 2, rate), MAX_BACKOFF)
                pause = max(pause, self._backoff)
            else:
                self._backoff = 0.0
            idle = not addresses
            with self._wake:                            # wake early to stop, or on a first poll()
                self._wake.wait_for(lambda idle=idle: self._stopped or (idle and bool(self._addresses)),
                                    timeout=pause)

    def _poll_once(self, addresses: list[int]) -> float:
        succeeded: set[tuple[int, int]] = set()
        failed: set[tuple[int, int]] = set()
        busy = 0.0
        for base, count in merge(((a, 1) for a in addresses), reach=self.reach):
            with self._io:
                began = timer()
                try:
                    values = self._read(base, count)
                except PlcError as exc:
                    log.debug("%s: polling %d-%d: %s", self, base, base + count - 1, exc)
                    failed.add((base, count))
                    values = [None] * count
                    if isinstance(exc, PlcOffline):
                        self._forget(addresses)
                        failed.update(set(merge(((a, 1) for a in addresses), reach=self.reach)))
                        break
                else:
                    succeeded.add((base, count))
                finally:
                    busy += timer() - began
            for i, value in enumerate(values):
                self._store(base + i, value)
        for rng in succeeded - self.polling:
            log.info("%s: polling %d-%d", self, rng[0], rng[0] + rng[1] - 1)
        for rng in failed - self.failing:
            log.warning("%s: failing %d-%d", self, rng[0], rng[0] + rng[1] - 1)
        self.polling, self.failing = succeeded, failed - succeeded
        return busy

    def _forget(self, addresses: Iterable[int]) -> None:
        with self._data_lock:
            for address in addresses:
                self._data[address] = None
