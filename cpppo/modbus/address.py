'''Modbus register numbers and the ``<begin>[-<end>][=<value>[,<value>...]]`` range specs.

Register numbers name a table and a zero-based offset (spec 3.1.1)::

    1-9999                        coils               offset = number - 1
    10001-19999, 100001-165536    discrete inputs     offset = number - 10001 / - 100001
    30001-39999, 300001-365536    input registers     offset = number - 30001 / - 300001
    40001-99999, 400001-465536    holding registers   offset = number - 40001 / - 400001

>>> locate(40001)
(<Table.HOLDING_REGISTERS: 3>, 0)
>>> locate(400010)
(<Table.HOLDING_REGISTERS: 3>, 9)
>>> parse_spec("40001-40004=1,2")
RangeSpec(begin=40001, end=40004, values=(1, 2, 1, 2))
>>> parse_spec("40010=7,8,9")
RangeSpec(begin=40010, end=40012, values=(7, 8, 9))
'''

from __future__ import annotations

import enum
import re
from typing import NamedTuple

__all__ = ["RangeSpec", "Table", "locate", "parse_spec", "split_by_table"]


class Table(enum.IntEnum):
    """The four Modbus tables; the value is the function code that reads the table."""

    COILS = 1
    DISCRETE_INPUTS = 2
    HOLDING_REGISTERS = 3
    INPUT_REGISTERS = 4

    @property
    def is_bits(self) -> bool:
        return self in (Table.COILS, Table.DISCRETE_INPUTS)

    @property
    def writable(self) -> bool:
        return self in (Table.COILS, Table.HOLDING_REGISTERS)


# (first number, last number, table): the offset is number - first.
_RANGES = (
    (1, 9999, Table.COILS),
    (10001, 19999, Table.DISCRETE_INPUTS),
    (30001, 39999, Table.INPUT_REGISTERS),
    (40001, 99999, Table.HOLDING_REGISTERS),
    (100001, 165536, Table.DISCRETE_INPUTS),
    (300001, 365536, Table.INPUT_REGISTERS),
    (400001, 465536, Table.HOLDING_REGISTERS),
)


def locate(number: int) -> tuple[Table, int]:
    """The table and zero-based offset of a register ``number``; ValueError if it names none."""
    for first, last, table in _RANGES:
        if first <= number <= last:
            return table, number - first
    raise ValueError(f"{number} is not a Modbus register number (see the table in spec 3.1.1)")


def span(number: int) -> tuple[int, int]:
    """The (first, last) numbers of the numbering range that holds ``number``."""
    for first, last, _ in _RANGES:
        if first <= number <= last:
            return first, last
    raise ValueError(f"{number} is not a Modbus register number (see the table in spec 3.1.1)")


class RangeSpec(NamedTuple):
    """Registers ``begin..end`` (inclusive) and their values (empty when none were given)."""

    begin: int
    end: int
    values: tuple[int, ...]


_SPEC = re.compile(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?(?:=\s*(\S.*?))?\s*")


def _number(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise ValueError(f"value {text!r} is not a whole number (e.g. 42, 0x2A)") from None
    if not 0 <= value <= 0xFFFF:
        raise ValueError(f"value {text} is outside 0..65535")
    return value


def parse_spec(text: str, default: int | None = None) -> RangeSpec:
    """Parse ``<begin>[-<end>][=<value>[,<value>...]]``.

    With values, ``<begin>=a,b,c`` covers as many registers as values; with a range, the values
    repeat to fill it (and are cut at its end).  Without values, ``default`` fills the range
    when given.  Both ends must lie in the same numbering range; a bad spec raises ValueError
    naming it.
    """
    match = _SPEC.fullmatch(text)
    if not match:
        raise ValueError(f"bad register spec {text!r}: expected <begin>[-<end>][=<value>[,...]]")
    begin = int(match.group(1))
    try:
        values = tuple(_number(v.strip()) for v in match.group(3).split(",")) if match.group(3) else ()
        first, last = span(begin)
        end = int(match.group(2)) if match.group(2) else begin + max(len(values), 1) - 1
        if not begin <= end <= last:
            raise ValueError(f"{begin}-{end} is not a range within {first}-{last}")
    except ValueError as exc:
        raise ValueError(f"bad register spec {text!r}: {exc}") from None
    size = end - begin + 1
    if not values and default is not None:
        values = (default,)
    if values:
        values = (values * (size // len(values) + 1))[:size]
    return RangeSpec(begin, end, values)


def split_by_table(begin: int, end: int) -> tuple[Table, int, int]:
    """The table, first offset and count of the registers ``begin..end`` (one numbering range)."""
    table, offset = locate(begin)
    return table, offset, end - begin + 1
