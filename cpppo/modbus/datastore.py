'''Sparse Modbus tables: only the configured registers exist.

A :class:`DataTable` holds one of the four Modbus tables as contiguous segments (an ``array``
of 16-bit registers, or a ``bytearray`` of 0/1 bits).  A read or write must fall entirely
inside one segment; anything else raises :class:`IllegalAddress`, which a device answers with
exception 2.  Lookups are O(log segments + quantity).

>>> table = DataTable(bits=False, cells={0: 1, 1: 2, 2: 3, 10: 9})
>>> table.read(0, 3), table.segments
([1, 2, 3], [(0, 3), (10, 1)])
>>> table.read(2, 2)
Traceback (most recent call last):
  ...
cpppo.modbus.datastore.IllegalAddress: offsets 2..3 are not all configured
'''

from __future__ import annotations

import array
import bisect
import sys
from collections.abc import Iterable, Mapping, Sequence

__all__ = ["DataTable", "IllegalAddress"]

_BIG_ENDIAN_HOST = sys.byteorder == "big"


class IllegalAddress(LookupError):
    """The addressed range is not configured in the table."""


class DataTable:
    """One Modbus table (coils, discrete inputs, input or holding registers), sparse."""

    __slots__ = ("_segments", "_starts", "bits")

    def __init__(self, bits: bool, cells: Mapping[int, int]) -> None:
        self.bits = bits
        self._starts: list[int] = []
        self._segments: list[bytearray | array.array] = []
        run: list[int] = []
        start = previous = -2
        for offset in sorted(cells):
            if offset != previous + 1 and run:
                self._append(start, run)
                run = []
            if not run:
                start = offset
            run.append(cells[offset])
            previous = offset
        if run:
            self._append(start, run)

    def _append(self, start: int, values: Sequence[int]) -> None:
        self._starts.append(start)
        if self.bits:
            self._segments.append(bytearray(1 if v else 0 for v in values))
        else:
            self._segments.append(array.array("H", values))

    def copy(self) -> DataTable:
        """A table of the same segments and values, sharing none of them."""
        table = DataTable.__new__(DataTable)
        table.bits, table._starts = self.bits, list(self._starts)
        table._segments = [segment[:] for segment in self._segments]
        return table

    @property
    def segments(self) -> list[tuple[int, int]]:
        """The configured (first offset, count) runs."""
        return [(s, len(seg)) for s, seg in zip(self._starts, self._segments, strict=True)]

    def __len__(self) -> int:
        return sum(len(seg) for seg in self._segments)

    def _find(self, offset: int, quantity: int) -> tuple[bytearray | array.array, int]:
        index = bisect.bisect_right(self._starts, offset) - 1
        if index >= 0:
            segment = self._segments[index]
            start = offset - self._starts[index]
            if start + quantity <= len(segment):
                return segment, start
        raise IllegalAddress(f"offsets {offset}..{offset + quantity - 1} are not all configured")

    def read(self, offset: int, quantity: int) -> list[int]:
        """Values at ``offset..offset+quantity-1`` (0/1 for bits)."""
        segment, start = self._find(offset, quantity)
        return list(segment[start:start + quantity])

    def read_registers_bytes(self, offset: int, quantity: int) -> bytes:
        """Registers at ``offset..`` as big-endian bytes, as a Modbus reply carries them."""
        segment, start = self._find(offset, quantity)
        values = segment[start:start + quantity]
        if not _BIG_ENDIAN_HOST:
            values.byteswap()
        return values.tobytes()

    def write(self, offset: int, values: Iterable[int]) -> None:
        """Store ``values`` from ``offset``; all of them must be configured."""
        values = list(values)
        segment, start = self._find(offset, len(values))
        if self.bits:
            segment[start:start + len(values)] = bytes(1 if v else 0 for v in values)
        else:
            segment[start:start + len(values)] = array.array("H", values)
