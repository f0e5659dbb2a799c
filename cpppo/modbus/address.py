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
>>> parse_spec("40001-40004=1,2").values
(1, 2, 1, 2)
>>> parse_spec("40010=7,8,9")[:3]
(40010, 40012, (7, 8, 9))

A range may hold 16- or 32-bit values (``:int16``, ``:uint16``, the default, ``:int32``,
``:uint32``, ``:float32``; a 32-bit value spans two registers, high word first or, with
``:lo``, low word first) and a behaviour (:mod:`cpppo.behaviour`) after ``~``::

>>> spec = parse_range("40001-40004:float32:lo=1.5~sine(amplitude=10, period=60)")
>>> spec.values, spec.type.name, spec.behaviour
((0, 16320, 0, 16320), 'float32', 'sine(amplitude=10, period=60)')
'''

from __future__ import annotations

import ast
import enum
import re
import struct
from dataclasses import dataclass
from typing import Any, NamedTuple

__all__ = ["REGISTER_TYPES", "RangeSpec", "RegisterType", "Table", "TypedRange", "locate", "parse_range",
           "parse_spec", "split_by_table"]


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


@dataclass(frozen=True)
class RegisterType:
    """How a value sits in registers: ``words`` (1 or 2) 16-bit words, ``fmt`` its struct
    letter, ``low_first`` for 32-bit values whose low word comes first."""

    name: str
    fmt: str
    words: int
    low_first: bool = False

    @property
    def limits(self) -> tuple[float, float]:
        if self.fmt == "f":
            return -3.4028234e38, 3.4028234e38
        bits = 16 * self.words
        return (-(1 << bits - 1), (1 << bits - 1) - 1) if self.fmt.islower() else (0, (1 << bits) - 1)

    def encode(self, value: Any) -> tuple[int, ...]:
        """The register words of one value (raises ValueError if it does not fit)."""
        if self.fmt != "f":
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(f"{value!r} is not a whole number for {self.name}")
            low, high = self.limits
            if not low <= int(value) <= high:
                raise ValueError(f"value {value} is outside {self.name}'s {int(low)}..{int(high)}")
            value = int(value)
        words = struct.unpack(f">{self.words}H", struct.pack(f">{self.fmt}", value))
        return words[::-1] if self.low_first else words

    def decode(self, words: Any) -> Any:
        words = tuple(words)
        if self.low_first:
            words = words[::-1]
        return struct.unpack(f">{self.fmt}", struct.pack(f">{self.words}H", *words))[0]


REGISTER_TYPES = {name: RegisterType(name, fmt, words) for name, fmt, words in (
    ("uint16", "H", 1), ("int16", "h", 1), ("uint32", "I", 2), ("int32", "i", 2), ("float32", "f", 2))}
BITS = RegisterType("bit", "H", 1)


class RangeSpec(NamedTuple):
    """Registers ``begin..end`` (inclusive) and their values (empty when none were given)."""

    begin: int
    end: int
    values: tuple[int, ...]


@dataclass(frozen=True)
class TypedRange:
    """A :class:`RangeSpec` with the type of the values it holds and its behaviour (None:
    still); ``values`` are register words."""

    begin: int
    end: int
    values: tuple[int, ...]
    type: RegisterType = REGISTER_TYPES["uint16"]
    behaviour: str | None = None

    @property
    def count(self) -> int:
        """The number of values (not registers) in the range."""
        return (self.end - self.begin + 1) // self.type.words


_SPEC = re.compile(r"""\s*(\d+)\s*(?:-\s*(\d+)\s*)?(?::\s*([a-z0-9]+)\s*(?::\s*(hi|lo)\s*)?)?
                       (?:=\s*([^~]*?))?\s*(?:~\s*(\S.*?))?\s*""", re.X | re.S)


def _number(text: str, rtype: RegisterType) -> tuple[int, ...]:
    text = text.strip()
    try:
        value: Any = int(text, 0)
    except ValueError:
        try:
            value = float(text) if rtype.fmt == "f" else ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = None
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise ValueError(f"value {text!r} is not a number (e.g. 42, 1.5)" if rtype.fmt == "f" else
                             f"value {text!r} is not a whole number (e.g. 42, 0x2A)") from None
    if rtype is REGISTER_TYPES["uint16"] and not 0 <= value <= 0xFFFF:
        raise ValueError(f"value {text} is outside 0..65535")
    return rtype.encode(value)


def parse_spec(text: str, default: int | None = None) -> RangeSpec:
    """The RangeSpec of ``text`` (see :func:`parse_range`)."""
    typed = parse_range(text, default)
    return RangeSpec(typed.begin, typed.end, typed.values)


def parse_range(text: str, default: int | None = None) -> TypedRange:
    """Parse ``<begin>[-<end>][:<type>[:hi|lo]][=<value>[,<value>...]][~<behaviour>]``.

    With values, ``<begin>=a,b,c`` covers as many registers as values; with a range, the values
    repeat to fill it (and are cut at its end).  Without values, ``default`` fills the range
    when given.  Both ends must lie in the same numbering range; a bad spec raises ValueError
    naming it.  The behaviour's syntax is checked here, the registers it names by the device.
    """
    match = _SPEC.fullmatch(text)
    if not match:
        raise ValueError(f"bad register spec {text!r}: expected "
                         "<begin>[-<end>][:<type>[:hi|lo]][=<value>[,...]][~<behaviour>]")
    begin = int(match.group(1))
    behaviour = match.group(6)
    try:
        table, _ = locate(begin)
        type_name = match.group(3) or "uint16"
        if table.is_bits:
            if match.group(3):
                raise ValueError("coils and discrete inputs hold bits; they take no type")
            rtype = BITS
        elif type_name not in REGISTER_TYPES:
            raise ValueError(f"unknown register type {type_name!r} (one of {', '.join(REGISTER_TYPES)})")
        else:
            rtype = REGISTER_TYPES[type_name]
            if match.group(4) == "lo":
                if rtype.words == 1:
                    raise ValueError(f"word order applies to 32-bit types, not {type_name}")
                rtype = RegisterType(rtype.name, rtype.fmt, rtype.words, low_first=True)
        values = match.group(5).split(",") if match.group(5) else ()
        words = tuple(w for v in values for w in _number(v, rtype))
        first, last = span(begin)
        end = int(match.group(2)) if match.group(2) else begin + max(len(words), rtype.words) - 1
        if not begin <= end <= last:
            raise ValueError(f"{begin}-{end} is not a range within {first}-{last}")
        if (end - begin + 1) % rtype.words:
            raise ValueError(f"{end - begin + 1} registers do not hold whole {rtype.name} values")
        if behaviour is not None:
            from cpppo.behaviour.spec import parse_behaviour
            parse_behaviour(behaviour)
    except ValueError as exc:
        raise ValueError(f"bad register spec {text!r}: {exc}") from None
    size = end - begin + 1
    if not words and default is not None:
        words = rtype.encode(default) if rtype is not BITS else (default,)
    if words:
        words = (words * (size // len(words) + 1))[:size]
    return TypedRange(begin, end, words, rtype, behaviour)


def split_by_table(begin: int, end: int) -> tuple[Table, int, int]:
    """The table, first offset and count of the registers ``begin..end`` (one numbering range)."""
    table, offset = locate(begin)
    return table, offset, end - begin + 1
