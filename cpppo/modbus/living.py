"""Behaviours of a Modbus device's register ranges (no sockets): the glue between
:mod:`cpppo.behaviour` and :class:`cpppo.modbus.device.ModbusDevice`.

A range with a ``~<behaviour>`` is driven: a read of any of its registers first writes the
values produced now into the table (whole values: both words of a 32-bit one), and a
client's write to it is refused with exception 2, as a PLC refuses writes to registers its
program owns.  Expressions name registers as ``r<number>`` (``r1``: coil 1, ``r40001``),
read with the type of the range that holds them (a float32 at ``r40010``: both words).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable
from typing import Any

from cpppo.behaviour import Clock, Plant, ValueType, build_driver
from cpppo.behaviour.driver import Driver
from cpppo.modbus.address import BITS, RegisterType, Table, TypedRange, locate

__all__ = ["ModbusPlant"]


def value_type(rtype: RegisterType) -> ValueType:
    if rtype is BITS:
        return ValueType("bit", "bool", 0, 1)
    low, high = rtype.limits
    return ValueType(rtype.name, "float" if rtype.fmt == "f" else "int", low, high)


class _Driven:
    __slots__ = ("driver", "name", "offset", "rtype", "size", "written")

    def __init__(self, name: str, offset: int, size: int, rtype: RegisterType, driver: Driver) -> None:
        self.name, self.offset, self.size, self.rtype, self.driver = name, offset, size, rtype, driver
        self.written: tuple[Any, int, int] | None = None  # (driver's held values, first, last) written


class ModbusPlant:
    """The driven ranges of one device, by table, and the names its expressions read."""

    def __init__(self, tables: dict[Table, Any], ranges: Iterable[TypedRange], *, n: int = 0,
                 clock: Clock | None = None, base: Callable[[str], str] = str, owner: Any = None) -> None:
        self.tables = tables
        self.plant = Plant(clock, owner=owner)
        self.plant.resolve = self.resolve
        ranges = list(ranges)
        self._names: dict[str, tuple[Table, int, RegisterType]] = {}
        for spec in ranges:
            table, offset = locate(spec.begin)
            step = spec.type.words
            for k in range(spec.count):
                self._names[f"r{spec.begin + k * step}"] = (table, offset + k * step, spec.type)
        self._driven: dict[Table, list[_Driven]] = {}
        for spec in ranges:
            if spec.behaviour is None:
                continue
            table, offset = locate(spec.begin)
            try:
                driver = build_driver(spec.behaviour, self.plant, value_type(spec.type), spec.count, n=n,
                                      known=self._names, base=base, what="register")
            except ValueError as exc:
                where = (f"registers {spec.begin}-{spec.end}" if spec.end > spec.begin
                         else f"register {spec.begin}")
                raise ValueError(f"{where}: {exc}") from None
            size = spec.end - spec.begin + 1
            item = _Driven(f"r{spec.begin}", offset, size, spec.type, driver)
            self._driven.setdefault(table, []).append(item)
            self.plant.add(f"r{spec.begin}", driver)
        for driven in self._driven.values():
            driven.sort(key=lambda d: d.offset)
        self._starts = {t: [d.offset for d in ds] for t, ds in self._driven.items()}
        self.plant.check_cycles(self._owner)

    def __bool__(self) -> bool:
        return bool(self._driven)

    def _owner(self, name: str) -> str:
        """The driver name (``r<first register>``) of the range holding register ``name``."""
        where = self._names.get(name)
        if where is None:
            return name
        for driven in self._overlapping(where[0], where[1], 1):
            return driven.name
        return name

    def _overlapping(self, table: Table, offset: int, quantity: int) -> Iterable[_Driven]:
        driven = self._driven.get(table)
        if not driven:
            return ()
        starts = self._starts[table]
        index = max(bisect.bisect_right(starts, offset) - 1, 0)
        found = []
        for item in driven[index:]:
            if item.offset >= offset + quantity:
                break
            if item.offset + item.size > offset:
                found.append(item)
        return found

    def produce(self, table: Table, offset: int, quantity: int) -> None:
        """Write the values produced now into the registers ``offset..offset+quantity-1``
        (whole values) of the driven ranges they touch.  Call with the device's lock held."""
        driven = self._driven.get(table)
        if not driven or self.plant.frozen:
            return
        data = self.tables[table]
        end = offset + quantity
        for item in driven if len(driven) <= 4 else self._overlapping(table, offset, quantity):
            if item.offset >= end or item.offset + item.size <= offset:
                continue
            words = item.rtype.words
            first = max(offset - item.offset, 0) // words
            last = (min(end, item.offset + item.size) - item.offset - 1) // words + 1
            driver, written = item.driver, item.written
            if (written is not None and written[1] <= first and last <= written[2]
                    and written[0] is driver.current()):
                continue  # these registers already hold this period's values
            values = driver.values(first, last)
            item.written = (driver.current(), first, last) if driver.update else None
            if words == 1:
                cells = [int(v) for v in values]
            else:
                encode = item.rtype.encode
                cells = [w for v in values for w in encode(v)]
            data.write(item.offset + first * words, cells)

    def driven(self, table: Table, offset: int, quantity: int) -> bool:
        """Whether any of the registers ``offset..offset+quantity-1`` is driven."""
        return bool(self._overlapping(table, offset, quantity))

    def resolve(self, name: str) -> Any:
        table, offset, rtype = self._names[name]
        self.produce(table, offset, rtype.words)
        words = self.tables[table].read(offset, rtype.words)
        return bool(words[0]) if rtype is BITS else rtype.decode(words)
