"""Light validation of ``modbus_sim`` register range specs (``40001-40100=99``,
``1-16=0``, ``30001-30010=1,2,3``) for fleet.toml; the worker hands the specs verbatim to
``cpppo.modbus.device.ModbusDevice.from_specs``, which remains the authority."""

from __future__ import annotations

import re
from dataclasses import dataclass

# (first, last, table, zero-based offset) of the Modbus address blocks modbus_sim accepts
BLOCKS = (
    (1, 9999, "coils", 1),
    (10001, 19999, "discrete inputs", 10001),
    (30001, 39999, "input registers", 30001),
    (40001, 99999, "holding registers", 40001),
    (100001, 165536, "discrete inputs", 100001),
    (300001, 365536, "input registers", 300001),
    (400001, 465536, "holding registers", 400001),
)
_RANGE = re.compile(r"^(?P<first>[0-9]+)(?:-(?P<last>[0-9]+))?(?:=(?P<values>.+))?$")


@dataclass(frozen=True)
class RegisterRange:
    """One range: ``first[-last][=value[,value...]]``."""

    spec: str  # the text as written
    first: int  # first register address (Modbus numbering, e.g. 40001)
    last: int  # last register address, inclusive
    table: str  # "coils", "discrete inputs", "input registers" or "holding registers"

    def contains(self, address: int) -> bool:
        return self.first <= address <= self.last


def register_block(address: int) -> tuple[str, int]:
    """(table, zero-based address) of a Modbus-numbered address.

    >>> register_block(40010)
    ('holding registers', 9)
    """
    for first, last, table, offset in BLOCKS:
        if first <= address <= last:
            return table, address - offset
    raise ValueError(f"register {address} is in no Modbus block "
                     "(1-9999, 10001-19999, 30001-39999, 40001-99999)")


def parse_register_spec(spec: str) -> RegisterRange:
    """Check one range; raise ValueError naming it and what is wrong.

    >>> parse_register_spec("40001-40100=99").table
    'holding registers'
    """
    m = _RANGE.match(spec.replace(" ", ""))
    if not m:
        raise ValueError(f"bad register range {spec!r}: expected FIRST[-LAST][=VALUE[,VALUE...]]")
    first = int(m["first"])
    last = int(m["last"]) if m["last"] else first
    if last < first:
        raise ValueError(f"bad register range {spec!r}: last before first")
    try:
        table, _ = register_block(first)
        table_last, _ = register_block(last)
    except ValueError as exc:
        raise ValueError(f"bad register range {spec!r}: {exc}") from None
    if table != table_last or (first < 100001 <= last):
        raise ValueError(f"bad register range {spec!r}: spans more than one Modbus block")
    if m["values"] is not None:
        for value in m["values"].split(","):
            try:
                int(value, 0)
            except ValueError:
                raise ValueError(f"bad register range {spec!r}: value {value!r} is not an integer") from None
    return RegisterRange(spec=spec.strip(), first=first, last=last, table=table)
