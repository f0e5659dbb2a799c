"""Logix tag services (Logix 5000 Data Access manual, 1756-PM020): request and reply data.

Each record is the *data* part of a Message Router request or reply (the path names the tag)::

    Read Tag (0x4C)              request: elements (UINT)
                                 reply:   type | data
    Read Tag Fragmented (0x52)   request: elements (UINT), byte offset (UDINT)
                                 reply:   type | data   (status 0x06 while more remains)
    Write Tag (0x4D)             request: type | elements (UINT) | data;        reply: empty
    Write Tag Fragmented (0x53)  request: type | elements | byte offset (UDINT) | data
    Read Modify Write Tag (0x4E) request: mask size (UINT) | OR mask | AND mask (size bytes
                                          each, little-endian); reply: empty.  The tag becomes
                                          (value | OR) & AND: 1s in OR set bits, 0s in AND clear them
    Get Instance Attribute List (0x55, @0x6B/<first instance>)
                                 request: count (UINT), attribute ids (UINT each)
                                 reply:   per instance: instance id (UDINT), attribute values
                                          (status 0x06 when more instances remain)

``type`` is the type code (UINT), or for structures 0xA0, 0x02 and the structure handle (UINT).

>>> ReadTag.decode(b'\\x0a\\x00')
ReadTag(elements=10)
>>> WriteTag.decode(b'\\xc3\\x00\\x01\\x00\\x07\\x00')
WriteTag(type_code=195, elements=1, data=b'\\x07\\x00', handle=None)
>>> ReadModifyWriteTag.decode(b'\\x01\\x00\\x20\\xff')
ReadModifyWriteTag(size=1, or_mask=32, and_mask=255, excess=b'')
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from cpppo.enip.codec.cip import ServiceError, Status
from cpppo.enip.codec.errors import CodecError
from cpppo.enip.codec.types import STRUCT

__all__ = [
    "SYMBOL_CLASS", "TEMPLATE_CLASS", "GetInstanceAttributeList", "ReadModifyWriteReply",
    "ReadModifyWriteTag", "ReadTag", "ReadTagFragmented", "ReadTemplate",
    "SymbolEntry", "TypedData", "WriteTag", "WriteTagFragmented", "decode_symbol_entries",
    "decode_type", "encode_symbol_entry", "encode_template", "encode_type", "split_typed",
    "template_words",
]

SYMBOL_CLASS = 0x6B
TEMPLATE_CLASS = 0x6C
_TEMPLATE_MEMBER = struct.Struct("<HHI")
_READ_TEMPLATE = struct.Struct("<IH")  # info (array length, or bit number), type, offset


def encode_template(members: Sequence[tuple[int, int, int]], tail: bytes) -> bytes:
    """A Template Object's definition as Read Template (0x4C at @0x6C/<instance>) serves it:
    one descriptor per member ``(info, type, offset)`` (info UINT: the array length or a
    BOOL's bit number; type UINT; offset UDINT), then ``tail`` (the NUL-terminated structure
    and member names), NUL-padded to the length clients compute from the definition size
    (:func:`template_words`): ``ceil((words * 4 - 23) / 4) * 4`` bytes.

    >>> encode_template([(0, 0xC4, 0)], b"T\\0A\\0").hex()
    '0000c400000000005400410000000000'
    >>> template_words(encode_template([(0, 0xC4, 0)], b"T\\0A\\0"))
    9
    """
    raw = b"".join(_TEMPLATE_MEMBER.pack(info & 0xFFFF, kind, offset) for info, kind, offset in members)
    raw += tail
    words = (len(raw) + 23 + 3) // 4
    return raw.ljust((words * 4 - 23 + 3) // 4 * 4, b"\0")


@dataclass(frozen=True, slots=True)
class ReadTemplate:
    """Read Template (Read Tag, 0x4C, at @0x6C/<instance>) request data: the byte ``offset``
    (UDINT) and ``count`` (UINT) of the definition wanted; ``decode`` raises ServiceError
    with the status a server answers a wrong length with.

    >>> ReadTemplate.decode(ReadTemplate(0, 100).encode())
    ReadTemplate(offset=0, count=100)
    """

    offset: int
    count: int

    def encode(self) -> bytes:
        return _READ_TEMPLATE.pack(self.offset, self.count)

    @classmethod
    def decode(cls, data: bytes) -> ReadTemplate:
        size = _READ_TEMPLATE.size
        if len(data) != size:
            raise ServiceError(Status.NOT_ENOUGH_DATA if len(data) < size else Status.TOO_MUCH_DATA)
        return cls(*_READ_TEMPLATE.unpack(data))


def template_words(definition: bytes) -> int:
    """The object definition size (Template attribute 4), in 32-bit words, of a definition
    :func:`encode_template` made."""
    return (len(definition) + 23) // 4


def encode_type(type_code: int, handle: int | None = None) -> bytes:
    """The type prefix of tag data: UINT code, or 0xA0 0x02 handle for a structure."""
    if handle is not None:
        return bytes((STRUCT, 0x02)) + struct.pack("<H", handle)
    return struct.pack("<H", type_code)


def decode_type(data: bytes, offset: int = 0) -> tuple[int, int | None, int]:
    """``(type_code, handle or None, offset after the type)``."""
    if len(data) < offset + 2:
        raise CodecError("tag data is missing its type code")
    if data[offset] in (STRUCT, 0xA1, 0xA2):
        size = data[offset + 1]
        end = offset + 2 + size
        if end > len(data) or size != 2:
            raise CodecError(f"structure type 0x{data[offset]:02x} has a bad handle size {size}")
        return data[offset], struct.unpack_from("<H", data, offset + 2)[0], end
    return struct.unpack_from("<H", data, offset)[0], None, offset + 2


def split_typed(data: bytes) -> tuple[int, int | None, bytes]:
    """Read Tag [Fragmented] reply data as clients report it: ``(type, structure handle or
    None, value bytes)``, where a structure's type is its first two bytes as a UINT (0x02A0,
    as upstream cpppo reports it).  Lenient where :class:`TypedData` is strict.

    >>> split_typed(bytes.fromhex("a002ce0f0100"))
    (672, 4046, b'\\x01\\x00')
    >>> split_typed(bytes.fromhex("c3000100"))
    (195, None, b'\\x01\\x00')
    """
    tag_type = data[0] | data[1] << 8
    if data[0] == STRUCT and len(data) >= 4:
        return tag_type, data[2] | data[3] << 8, data[4:]
    return tag_type, None, data[2:]


@dataclass(frozen=True, slots=True)
class ReadTag:
    elements: int = 1

    def encode(self) -> bytes:
        return struct.pack("<H", self.elements)

    @classmethod
    def decode(cls, data: bytes) -> ReadTag:
        if len(data) != 2:
            raise CodecError(f"Read Tag data must be 2 bytes (element count), not {len(data)}")
        return cls(struct.unpack("<H", data)[0])


@dataclass(frozen=True, slots=True)
class ReadTagFragmented:
    elements: int = 1
    offset: int = 0

    def encode(self) -> bytes:
        return struct.pack("<HI", self.elements, self.offset)

    @classmethod
    def decode(cls, data: bytes) -> ReadTagFragmented:
        if len(data) != 6:
            raise CodecError(f"Read Tag Fragmented data must be 6 bytes, not {len(data)}")
        return cls(*struct.unpack("<HI", data))


@dataclass(frozen=True, slots=True)
class TypedData:
    """Read Tag [Fragmented] reply data: the type and the (possibly partial) encoded values."""

    type_code: int
    data: bytes
    handle: int | None = None

    def encode(self) -> bytes:
        return encode_type(self.type_code, self.handle) + self.data

    @classmethod
    def decode(cls, data: bytes) -> TypedData:
        code, handle, end = decode_type(data)
        return cls(code, bytes(data[end:]), handle)


@dataclass(frozen=True, slots=True)
class WriteTag:
    type_code: int
    elements: int
    data: bytes
    handle: int | None = None

    def encode(self) -> bytes:
        return encode_type(self.type_code, self.handle) + struct.pack("<H", self.elements) + self.data

    @classmethod
    def decode(cls, data: bytes) -> WriteTag:
        code, handle, end = decode_type(data)
        if len(data) < end + 2:
            raise CodecError("Write Tag data is missing its element count")
        elements = struct.unpack_from("<H", data, end)[0]
        return cls(code, elements, bytes(data[end + 2:]), handle)


@dataclass(frozen=True, slots=True)
class WriteTagFragmented:
    type_code: int
    elements: int
    offset: int
    data: bytes
    handle: int | None = None

    def encode(self) -> bytes:
        return (encode_type(self.type_code, self.handle) + struct.pack("<HI", self.elements, self.offset)
                + self.data)

    @classmethod
    def decode(cls, data: bytes) -> WriteTagFragmented:
        code, handle, end = decode_type(data)
        if len(data) < end + 6:
            raise CodecError("Write Tag Fragmented data is missing its element count or offset")
        elements, offset = struct.unpack_from("<HI", data, end)
        return cls(code, elements, offset, bytes(data[end + 6:]), handle)


@dataclass(frozen=True, slots=True)
class ReadModifyWriteTag:
    """Read Modify Write Tag request data: ``size`` bytes of OR mask then of AND mask.

    ``excess``: bytes after the AND mask.  pycomm3 1.2 always sends an 8-byte AND mask
    whatever the size (it slices by the mask's value, not its size); a Logix controller
    accepts that, so decoding keeps the surplus here instead of refusing it, and encoding
    puts it back, so ``decode(encode(x)) == x``.

    >>> ReadModifyWriteTag(4, 1 << 5, 0xFFFFFFFF).encode().hex()
    '040020000000ffffffff'
    """

    size: int
    or_mask: int
    and_mask: int
    excess: bytes = b""

    def apply(self, value: int) -> int:
        """The masks applied to the low ``size`` bytes of an unsigned ``value``."""
        keep = (1 << (8 * self.size)) - 1
        return (value & ~keep) | (((value | self.or_mask) & self.and_mask) & keep)

    def encode(self) -> bytes:
        if not 0 < self.size <= 0xFFFF:
            raise CodecError(f"Read Modify Write mask size must be 1-65535 bytes, not {self.size}")
        limit = 1 << (8 * self.size)
        if not (0 <= self.or_mask < limit and 0 <= self.and_mask < limit):
            raise CodecError(f"Read Modify Write masks do not fit in {self.size} bytes")
        return (struct.pack("<H", self.size) + self.or_mask.to_bytes(self.size, "little")
                + self.and_mask.to_bytes(self.size, "little") + self.excess)

    @classmethod
    def decode(cls, data: bytes) -> ReadModifyWriteTag:
        if len(data) < 2:
            raise CodecError("Read Modify Write Tag data is missing its mask size")
        size = struct.unpack_from("<H", data)[0]
        if size == 0:
            raise CodecError("Read Modify Write Tag mask size is 0")
        if len(data) < 2 + 2 * size:
            raise CodecError(f"Read Modify Write Tag data has {len(data) - 2} bytes for two "
                             f"{size}-byte masks")
        or_mask = int.from_bytes(data[2:2 + size], "little")
        and_mask = int.from_bytes(data[2 + size:2 + 2 * size], "little")
        return cls(size, or_mask, and_mask, bytes(data[2 + 2 * size:]))


@dataclass(frozen=True, slots=True)
class ReadModifyWriteReply:
    """Read Modify Write Tag reply data: always empty (the status says how it went)."""

    def encode(self) -> bytes:
        return b""

    @classmethod
    def decode(cls, data: bytes) -> ReadModifyWriteReply:
        if data:
            raise CodecError(f"Read Modify Write Tag reply carries {len(data)} unexpected bytes")
        return cls()


@dataclass(frozen=True, slots=True)
class GetInstanceAttributeList:
    """Get Instance Attribute List request data: the attribute ids wanted for each instance."""

    attributes: tuple[int, ...] = (1, 2)

    def encode(self) -> bytes:
        return struct.pack(f"<H{len(self.attributes)}H", len(self.attributes), *self.attributes)

    @classmethod
    def decode(cls, data: bytes) -> GetInstanceAttributeList:
        if len(data) < 2:
            raise CodecError("Get Instance Attribute List data is missing its attribute count")
        count = struct.unpack_from("<H", data)[0]
        if len(data) != 2 + 2 * count or count == 0:
            raise CodecError(f"Get Instance Attribute List count {count} does not match "
                             f"{len(data) - 2} bytes")
        return cls(tuple(struct.unpack_from(f"<{count}H", data, 2)))


@dataclass(frozen=True, slots=True)
class SymbolEntry:
    """One instance in a Get Instance Attribute List reply for the common attributes 1 (name,
    a UINT-length string), 2 (symbol type, UINT), 8 (dimensions, 3 x UDINT)."""

    instance: int
    name: str
    symbol_type: int
    dimensions: tuple[int, int, int] = (0, 0, 0)
    alias: bool = False  # an alias tag: software control without the base-tag bit 26
    access: int = 0  # external access (attribute 10): 0 read/write, 2 read only, 3 none


def encode_symbol_entry(entry: SymbolEntry, attributes: tuple[int, ...]) -> bytes:
    """The reply bytes for one symbol instance; unknown attribute ids raise CodecError.

    Attributes: 1 name, 2 symbol type, 3 symbol address (UDINT), 5 symbol object address
    (UDINT), 6 software control (UDINT), 7 element size (UINT), 8 dimensions (3 x UDINT),
    10 external access (USINT: 0 read/write, 2 read only, 3 none)."""
    out = bytearray(struct.pack("<I", entry.instance))
    for attribute in attributes:
        if attribute == 1:
            name = entry.name.encode("utf-8")
            out += struct.pack("<H", len(name)) + name
        elif attribute == 2:
            out += struct.pack("<H", entry.symbol_type)
        elif attribute in (3, 5):
            out += struct.pack("<I", entry.instance << 8 if attribute == 3 else entry.instance)
        elif attribute == 6:
            out += struct.pack("<I", 0 if entry.alias else 1 << 26)  # bit 26: a base tag
        elif attribute == 7:
            out += struct.pack("<H", 0)
        elif attribute == 8:
            out += struct.pack("<3I", *entry.dimensions)
        elif attribute == 10:
            out.append(entry.access)
        else:
            raise CodecError(f"symbol attribute {attribute} is not supported")
    return bytes(out)


_FIXED_SIZES = {2: "<H", 3: "<I", 5: "<I", 6: "<I", 7: "<H", 8: "<3I", 10: "<B"}


def decode_symbol_entries(data: bytes, attributes: tuple[int, ...] = (1, 2)) -> list[SymbolEntry]:
    """Decode a Get Instance Attribute List reply to a request for ``attributes``."""
    for attribute in attributes:
        if attribute != 1 and attribute not in _FIXED_SIZES:
            raise CodecError(f"symbol attribute {attribute} is not supported")
    entries, i = [], 0
    while i < len(data):
        if i + 4 > len(data):
            raise CodecError("truncated symbol instance id in Get Instance Attribute List reply")
        instance = struct.unpack_from("<I", data, i)[0]
        i += 4
        name, symbol_type, dims, access = "", 0, (0, 0, 0), 0
        for attribute in attributes:
            if attribute == 1:
                if i + 2 > len(data):
                    raise CodecError("truncated symbol name length")
                size = struct.unpack_from("<H", data, i)[0]
                if i + 2 + size > len(data):
                    raise CodecError("truncated symbol name")
                name = data[i + 2:i + 2 + size].decode("utf-8", "replace")
                i += 2 + size
                continue
            fmt = _FIXED_SIZES[attribute]
            end = i + struct.calcsize(fmt)
            if end > len(data):
                raise CodecError(f"truncated symbol attribute {attribute}")
            values = struct.unpack_from(fmt, data, i)
            if attribute == 2:
                symbol_type = values[0]
            elif attribute == 8:
                dims = values
            elif attribute == 10:
                access = values[0]
            i = end
        entries.append(SymbolEntry(instance, name, symbol_type, dims, access=access))
    return entries
