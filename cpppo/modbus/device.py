'''A simulated Modbus device: its tables, unit ids and identity, and how it answers a PDU.

>>> dev = ModbusDevice.from_specs(["40001-40003=99", "1-8=1"])
>>> dev.handle(1, bytes.fromhex("03 0000 0002")).hex()     # read 2 holding registers
'030400630063'
>>> dev.handle(1, bytes.fromhex("03 0002 0002")).hex()     # 40003..40004: 40004 not configured
'8302'
>>> dev.handle(1, bytes.fromhex("41")).hex()               # unknown function
'c101'
>>> dev.write(40002, [7]); dev.read(40001, 3)
[99, 7, 99]
>>> ModbusDevice.from_specs(["40001-40003=99", "1-8=1"]).read(40001, 3)  # same specs: own values
[99, 99, 99]

Register ranges may move (``40001-40002:float32~sine(amplitude=10, period=60)``, see
:mod:`cpppo.modbus.living`); a client write to a driven register is refused with exception 2.
With ``retain``, client writes are journaled before the reply and restored at start.

The device knows nothing of sockets; :mod:`cpppo.modbus.server` puts it on the network.
'''

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from cpppo.faults import FaultState
from cpppo.modbus import pdu
from cpppo.modbus.address import Table, TypedRange, locate, parse_range
from cpppo.modbus.datastore import DataTable, IllegalAddress
from cpppo.modbus.errors import ExceptionCode, RequestError

__all__ = ["IDENTITY_OBJECTS", "ModbusDevice"]

log = logging.getLogger(__name__)

#: Device identification object ids (function 43/14) by the key used in ``identity``.
IDENTITY_OBJECTS = {
    "vendor_name": 0x00, "product_code": 0x01, "major_minor_revision": 0x02,   # basic
    "vendor_url": 0x03, "product_name": 0x04, "model_name": 0x05,              # regular
    "user_application_name": 0x06,
}
_DEFAULT_IDENTITY = {"vendor_name": "cpppo", "product_code": "modbus_sim",
                     "major_minor_revision": "0.1"}
_CATEGORY_LAST = {1: 0x02, 2: 0x7F, 3: 0xFF}       # highest object id of each stream category


def _identity_objects(identity: Mapping[str | int, Any] | None) -> dict[int, bytes]:
    merged: dict[str | int, Any] = {**_DEFAULT_IDENTITY, **(identity or {})}
    objects: dict[int, bytes] = {}
    for key, value in merged.items():
        if isinstance(key, int) and 0x80 <= key <= 0xFF:
            oid = key
        elif key in IDENTITY_OBJECTS:
            oid = IDENTITY_OBJECTS[key]
        else:
            raise ValueError(f"unknown identity key {key!r}; use one of {', '.join(IDENTITY_OBJECTS)} "
                             "or an extended object id 0x80..0xFF")
        data = value if isinstance(value, bytes) else str(value).encode("utf-8")
        if len(data) > 240:
            raise ValueError(f"identity {key!r} is longer than 240 bytes")
        objects[oid] = data
    return dict(sorted(objects.items()))


@functools.lru_cache(maxsize=256)
def _layout(specs: tuple[str, ...]) -> tuple[tuple[TypedRange, ...], dict[Table, DataTable]]:
    """The ranges ``specs`` name and the tables holding their initial values, to be copied:
    the devices of a fleet's group share their specs, so each is parsed once."""
    cells: dict[Table, dict[int, int]] = {table: {} for table in Table}
    ranges: list[TypedRange] = []
    for text in specs:
        spec = parse_range(text, default=0)
        table, offset = locate(spec.begin)
        for i, value in enumerate(spec.values):
            cells[table][offset + i] = value
        ranges.append(spec)
    return tuple(ranges), {t: DataTable(t.is_bits, c) for t, c in cells.items() if c}


class ModbusDevice:
    """A Modbus device: four sparse tables, the unit ids it answers, and its identity.

    ``unit_ids`` None answers every unit id; otherwise a request to another unit id is
    answered with exception 0x0B (gateway target device failed to respond), so a client does
    not wait for a timeout.  Access is thread-safe (one lock around each request).
    """

    def __init__(self, tables: Mapping[Table, DataTable], unit_ids: Iterable[int] | None = (1,),
                 identity: Mapping[str | int, Any] | None = None) -> None:
        self.tables = {table: tables.get(table) for table in Table}
        self._by_function = {function: self.tables[table] for function, table in _TABLE_OF.items()}
        self.unit_ids = None if unit_ids is None else frozenset(unit_ids)
        if self.unit_ids is not None and not all(0 <= u <= 255 for u in self.unit_ids):
            raise ValueError(f"unit ids must be 0..255: {sorted(self.unit_ids)}")
        self.identity = _identity_objects(identity)
        self.conformity = 0x83 if any(oid >= 0x80 for oid in self.identity) else 0x82
        self.lock = threading.Lock()
        self.faults = FaultState()  # injected faults (cpppo.faults), consulted by the servers
        self.requests = 0
        self.living: Any = None  # cpppo.modbus.living.ModbusPlant, when ranges have behaviours
        self.journal: Any = None  # cpppo.behaviour.Journal, when client writes are retained

    @property
    def plant(self) -> Any:
        """The behaviours' Plant (its clock and ``freeze()``), or None."""
        return self.living.plant if self.living else None

    @classmethod
    def from_specs(cls, specs: Sequence[str], unit_ids: Iterable[int] | None = (1,),
                   identity: Mapping[str | int, Any] | None = None, *, n: int = 0, clock: Any = None,
                   retain: str | None = None, base: Any = str) -> ModbusDevice:
        """A device serving the registers named by ``specs``
        (``<begin>[-<end>][:<type>[:hi|lo]][=<value>[,...]][~<behaviour>]``, values default to
        0).  A bad spec raises ValueError naming it.  ``n``: the device's number in its group
        (behaviour parameters may use it); ``clock``: a :class:`cpppo.behaviour.Clock`;
        ``retain``: the path of a journal keeping client writes across restarts."""
        ranges, layout = _layout(tuple(specs))
        device = cls({t: table.copy() for t, table in layout.items()}, unit_ids=unit_ids, identity=identity)
        if any(spec.behaviour for spec in ranges):
            from cpppo.modbus.living import ModbusPlant
            device.living = ModbusPlant(device.tables, ranges, n=n, clock=clock, base=base,
                                        owner=device)
        if retain is not None:
            device.retain(retain)
        return device

    def retain(self, path: str) -> None:
        """Restore the client writes journaled at ``path``, and journal every later one."""
        from cpppo.behaviour import Journal

        journal = Journal(path)

        def apply(table: int, offset: int, values: list[int]) -> None:
            data = self.tables[Table(table)]
            driven = self.living is not None and self.living.driven(Table(table), offset, len(values))
            if data is None or driven:
                raise ValueError("not configured, or driven by a behaviour now")
            data.write(offset, values)

        journal.replay(apply)
        self.journal = journal

    def __repr__(self) -> str:
        units = "any" if self.unit_ids is None else ",".join(map(str, sorted(self.unit_ids)))
        tables = ", ".join(f"{t.name.lower()}={len(d)}" for t, d in self.tables.items() if d)
        return f"<ModbusDevice units={units} {tables}>"

    def serves(self, unit_id: int) -> bool:
        return self.unit_ids is None or unit_id in self.unit_ids

    # Register-number access, for hooks, tests and the CLI.

    def _table(self, number: int) -> tuple[DataTable, int]:
        table, offset = locate(number)
        data = self.tables[table]
        if data is None:
            raise ValueError(f"register {number}: no {table.name.lower()} are configured")
        return data, offset

    def read(self, number: int, count: int = 1) -> list[int]:
        """Values of registers ``number..number+count-1`` (e.g. ``read(40001, 10)``)."""
        data, offset = self._table(number)
        with self.lock:
            try:
                if self.living is not None:
                    self.living.produce(locate(number)[0], offset, count)
                return data.read(offset, count)
            except IllegalAddress as exc:
                raise ValueError(f"registers {number}..{number + count - 1}: {exc}") from None

    def write(self, number: int, values: Sequence[int]) -> None:
        """Store ``values`` from register ``number`` (any table, unlike a Modbus client)."""
        data, offset = self._table(number)
        with self.lock:
            try:
                data.write(offset, values)
                if self.living is not None:
                    self.living.plant.version += 1
            except (IllegalAddress, OverflowError) as exc:
                raise ValueError(f"registers {number}..{number + len(values) - 1}: {exc}") from None

    # The protocol face.

    def handle(self, unit_id: int, raw: bytes) -> bytes:
        """The reply PDU to the request PDU ``raw`` addressed to ``unit_id``: a normal reply or
        an exception reply; it never raises for any input bytes."""
        if self.unit_ids is not None and unit_id not in self.unit_ids:
            return pdu.exception_pdu(raw[0] if raw else 0, ExceptionCode.GATEWAY_TARGET_FAILED)
        try:
            request = pdu.decode_request(raw)
            with self.lock:
                self.requests += 1
                return _EXECUTE[type(request)](self, request, raw)
        except RequestError as exc:
            log.debug("unit %d: %s", unit_id, exc)
            return pdu.exception_pdu(exc.function, exc.code)
        except IllegalAddress as exc:
            log.debug("unit %d, function %d: %s", unit_id, raw[0], exc)
            return pdu.exception_pdu(raw[0], ExceptionCode.ILLEGAL_DATA_ADDRESS)

    def _data(self, function: int) -> DataTable:
        data = self._by_function[function]
        if data is None:
            raise IllegalAddress(f"no {_TABLE_OF[function].name.lower()} are configured")
        return data

    def _writable(self, function: int, offset: int, quantity: int) -> DataTable:
        """The table a write addresses, if no register of it is driven by a behaviour."""
        data = self._data(function)
        if self.living is not None and self.living.driven(_TABLE_OF[function], offset, quantity):
            raise IllegalAddress(f"offsets {offset}..{offset + quantity - 1} are driven by a behaviour")
        return data

    def _journal(self, function: int, offset: int, values: Sequence[int]) -> None:
        """After a client write: journal it (when retained); values that follow it recompute."""
        if self.living is not None:
            self.living.plant.version += 1
        if self.journal is not None:
            self.journal.record(int(_TABLE_OF[function]), offset, [int(v) for v in values])

    def _read(self, request: pdu.ReadRequest, raw: bytes) -> bytes:
        data = self._data(request.function)
        if self.living is not None:
            self.living.produce(_TABLE_OF[request.function], request.address, request.quantity)
        if data.bits:
            body = pdu.pack_bits(data.read(request.address, request.quantity))
        else:
            body = data.read_registers_bytes(request.address, request.quantity)
        return bytes((request.function, len(body))) + body

    def _write_single(self, request: pdu.WriteSingleRequest, raw: bytes) -> bytes:
        self._writable(request.function, request.address, 1).write(request.address, (request.value,))
        self._journal(request.function, request.address, (request.value,))
        return raw

    def _write_multiple(self, request: pdu.WriteMultipleRequest, raw: bytes) -> bytes:
        self._writable(request.function, request.address, len(request.values)).write(request.address,
                                                                                      request.values)
        self._journal(request.function, request.address, request.values)
        return raw[:5]

    def _mask_write(self, request: pdu.MaskWriteRequest, raw: bytes) -> bytes:
        table = self._writable(pdu.Function.WRITE_SINGLE_REGISTER, request.address, 1)
        (current,) = table.read(request.address, 1)
        value = (current & request.and_mask) | (request.or_mask & ~request.and_mask & 0xFFFF)
        table.write(request.address, (value,))
        self._journal(pdu.Function.WRITE_SINGLE_REGISTER, request.address, (value,))
        return raw

    def _read_write(self, request: pdu.ReadWriteRequest, raw: bytes) -> bytes:
        function = pdu.Function.WRITE_SINGLE_REGISTER
        table = self._writable(function, request.write_address, len(request.values))
        table.read(request.read_address, request.read_quantity)    # check before writing
        table.write(request.write_address, request.values)
        self._journal(function, request.write_address, request.values)
        if self.living is not None:
            self.living.produce(Table.HOLDING_REGISTERS, request.read_address, request.read_quantity)
        body = table.read_registers_bytes(request.read_address, request.read_quantity)
        return bytes((request.function, len(body))) + body

    def _identification(self, request: pdu.DeviceIdRequest, raw: bytes = b"") -> bytes:
        if request.read_code == 4:
            if request.object_id not in self.identity:
                raise IllegalAddress(f"identity object {request.object_id} does not exist")
            objects = {request.object_id: self.identity[request.object_id]}
            return pdu.DeviceIdentification(4, self.conformity, False, 0, objects).encode()
        last = _CATEGORY_LAST[request.read_code]
        ids = [oid for oid in self.identity if oid <= last]
        start = request.object_id if request.object_id in ids else 0
        objects: dict[int, bytes] = {}
        room = pdu.MAX_PDU_BYTES - 7
        for oid in ids[ids.index(start):]:
            size = 2 + len(self.identity[oid])
            if size > room:
                return pdu.DeviceIdentification(request.read_code, self.conformity, True, oid,
                                              objects).encode()
            objects[oid] = self.identity[oid]
            room -= size
        return pdu.DeviceIdentification(request.read_code, self.conformity, False, 0, objects).encode()


# The table each function code addresses, and the method that executes each request type.
_TABLE_OF = {1: Table.COILS, 2: Table.DISCRETE_INPUTS, 3: Table.HOLDING_REGISTERS,
             4: Table.INPUT_REGISTERS, 5: Table.COILS, 6: Table.HOLDING_REGISTERS,
             15: Table.COILS, 16: Table.HOLDING_REGISTERS}
_EXECUTE = {
    pdu.ReadRequest: ModbusDevice._read, pdu.WriteSingleRequest: ModbusDevice._write_single,
    pdu.WriteMultipleRequest: ModbusDevice._write_multiple,
    pdu.MaskWriteRequest: ModbusDevice._mask_write, pdu.ReadWriteRequest: ModbusDevice._read_write,
    pdu.DeviceIdRequest: ModbusDevice._identification,
}
