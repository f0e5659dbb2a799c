"""Declarative CIP data types: each knows its type code, element size, and how to encode and
decode scalars and arrays (CIP Vol 1, Appendix C-2; Logix 5000 Data Access manual).

``TYPES`` maps names to instances; ``BY_CODE`` maps type codes to instances.  Numeric types
have a fixed ``size``; ``SSTRING`` and ``STRING`` (CIP 0xD0) are variable-length (``size`` is
None).  ``LOGIX_STRING`` is the Logix built-in STRING structure (a DINT length and 82 SINT
characters, 88 bytes with padding) that Logix controllers serve as structure type 0xA0 with
structure handle 0x0FCE.

>>> INT.encode([1, -2])
b'\\x01\\x00\\xfe\\xff'
>>> INT.decode(b'\\x01\\x00\\xfe\\xff')
[1, -2]
>>> SSTRING.encode(["Hi"])
b'\\x02Hi'
>>> LOGIX_STRING.decode(LOGIX_STRING.encode(["abc"]))
['abc']
>>> isinstance(TYPES["REAL"], REAL), isinstance(INT, REAL)
(True, False)
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cpppo.enip.codec.errors import CodecError

__all__ = [
    "BOOL",
    "BYTE",
    "BY_CODE",
    "DINT",
    "DWORD",
    "ELEMENTARY",
    "INT",
    "LINT",
    "LOGIX_STRING",
    "LREAL",
    "LWORD",
    "REAL",
    "SINT",
    "SSTRING",
    "STRING",
    "STRING_HANDLE",
    "STRUCT",
    "TYPES",
    "UDINT",
    "UINT",
    "ULINT",
    "USINT",
    "WORD",
    "CIPType",
    "LogixStringType",
    "NumericType",
    "StringType",
    "decode_padded_strings",
    "encode_padded_strings",
]

STRUCT = 0xA0  # the abbreviated structure type code that precedes a structure handle
STRING_HANDLE = 0x0FCE  # the Logix STRING structure handle (CRC of its template)
LOGIX_STRING_CHARS = 82
LOGIX_STRING_SIZE = 88


@dataclass(frozen=True)
class CIPType:
    """A CIP elementary type.  ``size`` is bytes per element, None if variable-length."""

    name: str
    code: int
    size: int | None
    handle: int | None = None  # structure handle, for Logix structures served as 0xA0

    def encode(self, values: Sequence[Any]) -> bytes:  # pragma: no cover - abstract
        raise NotImplementedError

    def decode(self, data: bytes) -> list[Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def default(self) -> Any:
        return 0

    def coerce(self, value: Any) -> Any:
        """A Python value of this type from ``value`` (raises ValueError if it does not fit)."""
        return value

    def parse(self, text: str) -> Any:
        """The value a person typed as ``text`` (a web form, a page's write box): text for
        strings, a number for numbers (ValueError if it is not one, or does not fit)."""
        return self.coerce(text)

    def split(self, data: bytes) -> list[bytes]:
        """Split encoded ``data`` into per-element byte strings (raises CodecError)."""
        if self.size is None:  # pragma: no cover - overridden by variable types
            raise CodecError(f"{self.name} cannot be split")
        if len(data) % self.size:
            raise CodecError(f"{len(data)} bytes is not a whole number of {self.name} ({self.size} bytes)")
        return [data[i:i + self.size] for i in range(0, len(data), self.size)]

    def __str__(self) -> str:
        return self.name

    def __instancecheck__(self, obj: object) -> bool:
        """``isinstance(attribute.parser, REAL)`` works as with upstream's type classes."""
        return obj is self or (isinstance(obj, CIPType) and (obj.name, obj.code) == (self.name, self.code))


@dataclass(frozen=True)
class NumericType(CIPType):
    """Fixed-size numbers (and BOOL, one byte, 0 or 1) packed with a struct format letter."""

    fmt: str = "b"
    low: float = 0
    high: float = 0
    _structs: dict = field(default_factory=dict, compare=False, repr=False)

    def _struct(self, count: int) -> struct.Struct:
        s = self._structs.get(count)
        if s is None:
            s = struct.Struct(f"<{count}{self.fmt}")
            if len(self._structs) < 256:
                self._structs[count] = s
        return s

    def encode(self, values: Sequence[Any]) -> bytes:
        try:
            if self.fmt == "?":
                return bytes(1 if v else 0 for v in values)
            return self._struct(len(values)).pack(*values)
        except (struct.error, TypeError) as exc:
            raise CodecError(f"cannot encode {list(values)[:4]!r}... as {self.name}: {exc}") from None

    def decode(self, data: bytes) -> list[Any]:
        if len(data) % self.size:  # type: ignore[operator]
            raise CodecError(f"{len(data)} bytes is not a whole number of {self.name} ({self.size} bytes)")
        if self.fmt == "?":
            return [b != 0 for b in data]
        return list(self._struct(len(data) // self.size).unpack(data))  # type: ignore[operator]

    def default(self) -> Any:
        return False if self.fmt == "?" else (0.0 if self.fmt in "fd" else 0)

    def parse(self, text: str) -> Any:
        """``12``, ``0x1F`` (integers), ``2.5`` (REAL, LREAL), ``true``/``false``/``on``/``off``
        or a number (BOOL); ValueError if it is not one, or does not fit.

        >>> INT.parse("0x10"), REAL.parse("2.5"), BOOL.parse("on")
        (16, 2.5, True)
        """
        word = text.strip().lower()
        if self.fmt == "?":
            if word in ("true", "yes", "on", "false", "no", "off"):
                return word in ("true", "yes", "on")
            try:
                return bool(int(word, 0))
            except ValueError:
                raise ValueError(f"{text!r} is not a boolean (true/false)") from None
        return self.coerce(float(word) if self.fmt in "fd" else int(word, 0))

    def coerce(self, value: Any) -> Any:
        if self.fmt == "?":
            return bool(value)
        if self.fmt in "fd":
            number = float(value)
            if self.fmt == "f" and math.isfinite(number) and abs(number) > 3.4028235e38:
                raise ValueError(f"{value!r} is out of range for {self.name}")
            return number
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(f"{value!r} is not an integer {self.name}")
        number = int(value)
        if not self.low <= number <= self.high:
            raise ValueError(f"{value!r} is out of range for {self.name}")
        return number


@dataclass(frozen=True)
class StringType(CIPType):
    """CIP SSTRING (USINT length) and STRING (UINT length): length-prefixed characters."""

    length_size: int = 1
    capacity: int = 255

    def encode(self, values: Sequence[Any]) -> bytes:
        out = bytearray()
        for value in values:
            raw = value.encode("iso-8859-1") if isinstance(value, str) else bytes(value)
            if len(raw) > self.capacity:
                raise CodecError(f"{self.name} holds at most {self.capacity} characters, not {len(raw)}")
            out += len(raw).to_bytes(self.length_size, "little") + raw
        return bytes(out)

    def split(self, data: bytes, limit: int | None = None) -> list[bytes]:
        """Per-string pieces; with ``limit``, stop after that many (ignoring what follows)."""
        pieces, i = [], 0
        while i < len(data) and (limit is None or len(pieces) < limit):
            if i + self.length_size > len(data):
                raise CodecError(f"truncated {self.name} length")
            end = i + self.length_size + int.from_bytes(data[i:i + self.length_size], "little")
            if end > len(data):
                raise CodecError(f"{self.name} length runs past the end of the data")
            pieces.append(data[i:end])
            i = end
        return pieces

    def decode(self, data: bytes) -> list[Any]:
        return [piece[self.length_size:].decode("iso-8859-1") for piece in self.split(data)]

    def default(self) -> Any:
        return ""

    def coerce(self, value: Any) -> Any:
        text = value if isinstance(value, str) else str(value)
        if len(text.encode("iso-8859-1", "replace")) > self.capacity:
            raise ValueError(f"{value!r} is longer than {self.capacity} characters for {self.name}")
        return text


@dataclass(frozen=True)
class LogixStringType(CIPType):
    """The Logix STRING structure: DINT LEN, SINT DATA[82], 2 pad bytes (88 bytes)."""

    def encode(self, values: Sequence[Any]) -> bytes:
        out = bytearray()
        for value in values:
            raw = value.encode("iso-8859-1") if isinstance(value, str) else bytes(value)
            if len(raw) > LOGIX_STRING_CHARS:
                raise CodecError(f"STRING holds at most {LOGIX_STRING_CHARS} characters, not {len(raw)}")
            out += struct.pack("<i", len(raw)) + raw.ljust(LOGIX_STRING_SIZE - 4, b"\0")
        return bytes(out)

    def decode(self, data: bytes) -> list[Any]:
        out = []
        for piece in self.split(data):
            length = struct.unpack_from("<i", piece)[0]
            if not 0 <= length <= LOGIX_STRING_CHARS:
                raise CodecError(f"STRING length {length} is outside 0-{LOGIX_STRING_CHARS}")
            out.append(piece[4:4 + length].decode("iso-8859-1"))
        return out

    def default(self) -> Any:
        return ""

    def coerce(self, value: Any) -> Any:
        text = value if isinstance(value, str) else str(value)
        if len(text.encode("iso-8859-1", "replace")) > LOGIX_STRING_CHARS:
            raise ValueError(f"{value!r} is longer than {LOGIX_STRING_CHARS} characters for STRING")
        return text


def _int(name: str, code: int, fmt: str, size: int, signed: bool) -> NumericType:
    bits = size * 8
    low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    return NumericType(name, code, size, fmt=fmt, low=low, high=high)


BOOL = NumericType("BOOL", 0xC1, 1, fmt="?", low=0, high=1)
SINT = _int("SINT", 0xC2, "b", 1, True)
INT = _int("INT", 0xC3, "h", 2, True)
DINT = _int("DINT", 0xC4, "i", 4, True)
LINT = _int("LINT", 0xC5, "q", 8, True)
USINT = _int("USINT", 0xC6, "B", 1, False)
UINT = _int("UINT", 0xC7, "H", 2, False)
UDINT = _int("UDINT", 0xC8, "I", 4, False)
ULINT = _int("ULINT", 0xC9, "Q", 8, False)
REAL = NumericType("REAL", 0xCA, 4, fmt="f")
#: a 32-bit bit string: how a Logix controller stores BOOL arrays (32 BOOLs per element)
DWORD = _int("DWORD", 0xD3, "I", 4, False)
LREAL = NumericType("LREAL", 0xCB, 8, fmt="d")
STRING = StringType("STRING", 0xD0, None, length_size=2, capacity=65535)  # CIP STRING
SSTRING = StringType("SSTRING", 0xDA, None, length_size=1, capacity=255)
LOGIX_STRING = LogixStringType("STRING", STRUCT, LOGIX_STRING_SIZE, handle=STRING_HANDLE)

#: name -> type, as tag specs name them; "STRING" is the Logix STRING structure
TYPES: dict[str, CIPType] = {
    t.name: t for t in (BOOL, SINT, INT, DINT, LINT, USINT, UINT, UDINT, ULINT, REAL, LREAL, DWORD, SSTRING)
}
TYPES["STRING"] = LOGIX_STRING
#: the bit strings a client may name in a cast (Logix tags are never declared with them)
BYTE = _int("BYTE", 0xD1, "B", 1, False)
WORD = _int("WORD", 0xD2, "H", 2, False)
LWORD = _int("LWORD", 0xD4, "Q", 8, False)
#: name -> type of every elementary CIP type: the names of client casts (``(REAL)1.5``);
#: here "STRING" is the CIP STRING (0xD0), which a client writes to a tag as the Logix structure
ELEMENTARY: dict[str, CIPType] = {t.name: t for t in (
    BOOL, SINT, INT, DINT, LINT, USINT, UINT, UDINT, ULINT, REAL, LREAL, BYTE, WORD, DWORD, LWORD, STRING,
    SSTRING)}
#: type code -> type, for decoding typed data (0xD0 is the CIP STRING)
BY_CODE: dict[int, CIPType] = {t.code: t for t in ELEMENTARY.values()}


def decode_padded_strings(data: bytes) -> list[str] | None:
    """CIP STRINGs (UINT length, characters) each padded to an even size, as upstream cpppo
    serves STRING tags (the last one's pad may be missing); None if ``data`` are not that.

    >>> decode_padded_strings(bytes.fromhex("0300616263000200") + b"de")
    ['abc', 'de']
    >>> decode_padded_strings(bytes.fromhex("03006162630200") + b"de") is None
    True
    """
    out, at = [], 0
    while at < len(data):
        if at + 2 > len(data):
            return None
        size = data[at] | data[at + 1] << 8
        end = at + 2 + size
        if end > len(data):
            return None
        out.append(data[at + 2:end].decode("iso-8859-1"))
        at = end + size % 2
    return out


def encode_padded_strings(values: Sequence[Any]) -> bytes:
    """CIP STRINGs each padded to an even size (the inverse of :func:`decode_padded_strings`).

    >>> encode_padded_strings(["abc", "de"]).hex()
    '03006162630002006465'
    """
    return b"".join(raw + b"\0" * (len(raw) % 2) for raw in (STRING.encode([v]) for v in values))
