"""CIP services on a Device's tags and attributes: Logix Read/Write Tag [Fragmented], Read
Modify Write Tag, Get Instance Attribute List (tag browsing, controller or program scope), Read
Template, and Get/Set Attribute Single, Get Attributes All, Get Attribute List.  Each takes
decoded request parts and returns reply data or raises ``ServiceError`` with the general and
extended status a Logix controller gives.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cpppo.enip.codec import CodecError, logix
from cpppo.enip.codec.cip import GetAttributeList, ServiceError, Status, encode_attribute_list_reply
from cpppo.enip.codec.epath import Logical, Segment, Symbolic
from cpppo.enip.codec.types import (
    BY_CODE,
    DINT,
    DWORD,
    INT,
    LINT,
    LOGIX_STRING,
    SINT,
    SSTRING,
    STRING,
    STRING_HANDLE,
    STRUCT,
    UDINT,
    UINT,
    ULINT,
    USINT,
    CIPType,
    LogixStringType,
    StringType,
)
from cpppo.enip.device.model import Attribute, Device, StringMember, Tag
from cpppo.enip.device.objects import GET_ALL_ATTRIBUTES, STRING_TEMPLATE
from cpppo.enip.device.udt import MemberView, StructType, member_view

__all__ = ["PROGRAM_SYMBOL_TYPE", "Target", "get_attribute_list", "get_attribute_single",
           "get_attributes_all", "get_instance_attribute_list", "read_modify_write_tag", "read_tag",
           "read_template", "resolve", "set_attribute_single", "symbol_entries", "write_tag"]

def out_of_range() -> ServiceError:
    """A fresh error each time: a shared instance re-raised keeps every traceback (and the
    frames, and the sessions in them) it was ever raised with."""
    return ServiceError(Status.GENERAL_ERROR, (Status.EXT_OUT_OF_RANGE,), "beyond the end of the tag")


def bad_type() -> ServiceError:
    return ServiceError(Status.GENERAL_ERROR, (Status.EXT_BAD_TYPE,), "data type does not match the tag")


@dataclass(frozen=True, slots=True)
class Target:
    """What a Logix tag-service path names: an attribute and the first element."""

    attribute: Attribute
    element: int = 0
    tag: Tag | None = None


def _is_program(name: str) -> bool:
    return name[:8].casefold() == "program:" and len(name) > 8


def _named_tag(device: Device, path: tuple[Segment, ...]) -> tuple[Tag, tuple[Segment, ...]]:
    """The tag named by the leading symbolic segments: ``Name``, or a dotted name split into
    segments as clients send it (``Program:Main`` ``Speed`` is the tag ``Program:Main.Speed``),
    or ``Program:<name>`` then ``@0x6B/<instance>``; and the segments after it."""
    names: list[str] = []
    for i, segment in enumerate(path):
        if not isinstance(segment, Symbolic):
            break
        names.append(segment.name)
        tag = device.tag(".".join(names))
        if tag is not None:
            return tag, path[i + 1:]
        if i == 0 and _is_program(segment.name) and len(path) >= 3 and _symbol_class(path[1:]):
            tag = device.symbols.get(path[2].value)  # type: ignore[union-attr]
            if tag is None or (tag.program or "").casefold() != segment.name.casefold():
                raise ServiceError(Status.PATH_DESTINATION_UNKNOWN, (),
                                   f"no symbol instance {path[2].value} in {segment.name}")  # type: ignore[union-attr]
            return tag, path[3:]
    raise ServiceError(Status.PATH_SEGMENT_ERROR, (), f"no tag named {'.'.join(names)!r}")


def _symbol_class(path: tuple[Segment, ...]) -> bool:
    """Does the path start with @0x6B/<instance> (a Symbol Object instance)?"""
    return (len(path) >= 2 and isinstance(path[0], Logical) and path[0].kind == "class"
            and path[0].value == logix.SYMBOL_CLASS and isinstance(path[1], Logical)
            and path[1].kind == "instance")


def _index(segments: tuple[Segment, ...], attribute: Attribute,
           dims: tuple[int, ...] | None = None) -> tuple[int, tuple[Segment, ...]]:
    """A leading array index (checked against ``attribute``), or 0; and what follows it.  With
    ``dims`` (a multi-dimensional tag), one index per dimension, flattened row-major; a single
    index is then the flat element (as clients read ``Grid{6}`` from ``Grid[0]``)."""
    count = 0
    while (count < len(segments) and isinstance(segments[count], Logical)
           and segments[count].kind == "element"):  # type: ignore[union-attr]
        count += 1
    if not count:
        return 0, segments
    indices = [seg.value for seg in segments[:count]]  # type: ignore[union-attr]
    if count == 1 or (dims and count == len(dims)):
        flat = 0
        for index, size in zip(indices, dims if count > 1 else (len(attribute),), strict=True):  # type: ignore[arg-type]
            if index >= size:
                raise out_of_range()
            flat = flat * size + index
        if flat >= len(attribute):
            raise out_of_range()
        return flat, segments[count:]
    raise ServiceError(Status.PATH_SEGMENT_ERROR, (), f"{count} indices for {attribute.name}")


def resolve(device: Device, path: tuple[Segment, ...]) -> Target:
    """The tag or attribute a Read/Write Tag path names (raises ServiceError).

    After the tag: an array index, then for a Logix STRING tag a member ``LEN`` or ``DATA``
    (with its own index), e.g. ``Text[1].DATA[0]``."""
    if not path:
        raise ServiceError(Status.PATH_SEGMENT_ERROR, (), "empty path")
    first = path[0]
    tag = None
    if isinstance(first, Symbolic):
        tag, rest = _named_tag(device, path)
        attribute = tag.attribute
    elif isinstance(first, Logical) and first.kind == "class":
        if _symbol_class(path):
            tag = device.symbols.get(path[1].value)  # type: ignore[union-attr]
            if tag is None or tag.program is not None:  # program tags: only within their program
                raise ServiceError(Status.PATH_DESTINATION_UNKNOWN, (), f"no symbol instance {path[1].value}")  # type: ignore[union-attr]
            attribute, rest = tag.attribute, path[2:]
        else:
            attribute, rest = _numeric(device, path)
    else:
        raise ServiceError(Status.PATH_SEGMENT_ERROR, (), "tag path must start with a name or a class")
    if tag is not None and tag.access == "none":  # External Access None: as if it were not there
        raise ServiceError(Status.PATH_DESTINATION_UNKNOWN, (), f"{tag.name} has no external access")
    element, rest = _index(rest, attribute, tag.dims if tag is not None else None)
    while rest and isinstance(rest[0], Symbolic) and (attribute.parser is LOGIX_STRING
                                                      or isinstance(attribute.parser, StructType)):
        try:
            if attribute.parser is LOGIX_STRING:
                attribute = StringMember(attribute, element, rest[0].name)
            else:
                attribute = member_view(attribute, element, rest[0].name)
        except ValueError as exc:
            raise ServiceError(Status.PATH_SEGMENT_ERROR, (), str(exc)) from None
        element, rest = _index(rest[1:], attribute)
    if rest:
        raise ServiceError(Status.PATH_SEGMENT_ERROR, (), "only array indices and structure members "
                           "may follow a tag")
    return Target(attribute, element, tag)


def _numeric(device: Device, path: tuple[Segment, ...]) -> tuple[Attribute, tuple[Segment, ...]]:
    kinds = tuple(seg.kind if isinstance(seg, Logical) else "" for seg in path[:3])
    if kinds != ("class", "instance", "attribute"):
        raise ServiceError(Status.PATH_SEGMENT_ERROR, (), "expected @class/instance/attribute")
    cls_id, inst, attr_id = (seg.value for seg in path[:3])  # type: ignore[union-attr]
    attrs = device.objects.get((cls_id, inst))
    if attrs is None:
        raise ServiceError(Status.PATH_DESTINATION_UNKNOWN, (), f"no object @{cls_id}/{inst}")
    attribute = attrs.get(attr_id)
    if attribute is None:
        raise ServiceError(Status.ATTRIBUTE_NOT_SUPPORTED, (), f"no attribute @{cls_id}/{inst}/{attr_id}")
    return attribute, path[3:]


def _values(attribute: Attribute, start: int, count: int) -> list[Any]:
    if attribute.error:
        raise ServiceError(attribute.error, (), f"{attribute.name} is faulted")
    if count < 1 or start + count > len(attribute):
        raise out_of_range()
    try:
        values = attribute[start:start + count]
    except IndexError:
        raise out_of_range() from None
    return list(values) if isinstance(values, (list, tuple)) else [values]


def _room(ctype: CIPType, room: int) -> int:
    """Bytes of whole elements that fit in ``room`` (at least one element's worth)."""
    size = ctype.size
    if not size:
        return max(room, 1)
    return max(room - room % size, size)


def read_tag(target: Target, elements: int, room: int, offset: int | None = None) -> tuple[int, bytes]:
    """Read Tag (``offset`` None) or Read Tag Fragmented: ``(status, reply data)``; room is the
    number of reply bytes available for values and type."""
    _readable(target)
    attribute = target.attribute
    ctype = attribute.parser
    data = ctype.encode(_values(attribute, target.element, elements))
    head = logix.encode_type(ctype.code, ctype.handle)
    start = offset or 0
    if start > len(data) or (start == len(data) and start):
        raise out_of_range()
    end = start + _room(ctype, room - len(head))
    status = Status.SUCCESS if end >= len(data) else Status.PARTIAL_TRANSFER
    return status, head + data[start:end]


def _incoming_type(tag_type: CIPType, code: int, handle: int | None) -> CIPType:
    """The type the write's data is encoded in, if it is acceptable for a tag of ``tag_type``."""
    if isinstance(tag_type, (LogixStringType, StringType)):
        if code == STRUCT and handle == STRING_HANDLE:
            return LOGIX_STRING
        if handle is None and code in (STRING.code, SSTRING.code):
            return BY_CODE[code]
        raise bad_type()
    if isinstance(tag_type, StructType):
        if code != STRUCT or handle != tag_type.handle:
            raise bad_type()
        return tag_type
    if handle is not None or code != tag_type.code:
        raise bad_type()
    return tag_type


def _access(target: Target) -> str:
    """The External Access of what ``target`` names: a member's, narrowed by a structure's
    members (a whole structure is as restricted as its most restricted member)."""
    attribute = target.attribute
    access = attribute.access if isinstance(attribute, MemberView) else "rw"
    parser = attribute.parser
    if isinstance(parser, StructType) and parser.access != "rw" and access != "none":
        access = parser.access
    return access


def _readable(target: Target) -> None:
    """A structure member of External Access None, or a structure holding one, refuses reads
    as Logix does (0x0F, pycomm3's "Permission denied"); a None tag is not found (resolve)."""
    attribute = target.attribute
    if (isinstance(attribute, MemberView) or isinstance(attribute.parser, StructType)) and \
            _access(target) == "none":
        raise ServiceError(Status.PRIVILEGE_VIOLATION, (), f"{attribute.name}: external access none")


def _writable(target: Target) -> None:
    """A tag or member of External Access Read Only (or a Constant), or a structure holding
    one, refuses writes as Logix does: 0x0F."""
    if target.tag is not None and target.tag.access == "ro":
        raise ServiceError(Status.PRIVILEGE_VIOLATION, (), f"{target.tag.name} is read only")
    attribute = target.attribute
    if (isinstance(attribute, MemberView) or isinstance(attribute.parser, StructType)) and \
            _access(target) != "rw":
        raise ServiceError(Status.PRIVILEGE_VIOLATION, (), f"{attribute.name} is not writable")


def write_tag(target: Target, request: logix.WriteTag | logix.WriteTagFragmented) -> None:
    """Write Tag [Fragmented].  More data than ``elements`` needs is accepted and ignored."""
    _writable(target)
    attribute = target.attribute
    if attribute.error:
        raise ServiceError(attribute.error, (), f"{attribute.name} is faulted")
    incoming = _incoming_type(attribute.parser, request.type_code, request.handle)
    start, count = target.element, request.elements
    if count < 1 or start + count > len(attribute):
        raise out_of_range()
    fragmented = isinstance(request, logix.WriteTagFragmented)
    offset = request.offset if fragmented else 0  # type: ignore[union-attr]
    try:
        if incoming.size and incoming is attribute.parser:
            _write_fixed(attribute, start, count, offset, request.data, fragmented)
            return
        if offset:
            raise ServiceError(Status.INVALID_PARAMETER_VALUE, (), "string writes must fit one fragment")
        pieces = incoming.split(request.data, count) if incoming.size is None else [
            request.data[i:i + incoming.size] for i in range(0, len(request.data), incoming.size)]
        if len(pieces) < count or (incoming.size and len(pieces[count - 1]) < incoming.size):
            raise ServiceError(Status.NOT_ENOUGH_DATA, (), f"too little data for {count} elements")
        values = incoming.decode(b"".join(pieces[:count]))
        attribute[start:start + count] = [attribute.parser.coerce(v) for v in values]
    except (CodecError, ValueError) as exc:
        raise ServiceError(Status.INVALID_ATTRIBUTE_VALUE, (), str(exc)) from None


def _write_fixed(attribute: Attribute, start: int, count: int, offset: int, data: bytes,
                 fragmented: bool) -> None:
    """Write ``data`` at byte ``offset`` of the elements start..start+count.  A fragment need
    not align to elements: partial elements at either end merge with the current values."""
    ctype = attribute.parser
    size: int = ctype.size  # type: ignore[assignment]
    total = count * size
    if offset >= total:
        raise out_of_range()
    data = data[:total - offset]  # extra bytes beyond the elements are ignored
    if offset == 0 and len(data) == total:
        attribute[start:start + count] = ctype.decode(data)
        return
    if not fragmented:
        raise ServiceError(Status.NOT_ENOUGH_DATA, (), f"{len(data)} bytes for {count} x {ctype.name}")
    if not data:
        return
    first = start + offset // size
    last = start + (offset + len(data) + size - 1) // size
    image = bytearray(ctype.encode(_values(attribute, first, last - first)))
    within = offset - (first - start) * size
    image[within:within + len(data)] = data
    attribute[first:last] = ctype.decode(bytes(image))


#: the types whose bits Read Modify Write Tag may set and clear
_MASKABLE = frozenset(t.code for t in (SINT, INT, DINT, LINT, USINT, UINT, UDINT, ULINT, DWORD))


def read_modify_write_tag(target: Target, data: bytes) -> None:
    """Read Modify Write Tag: ``(value | OR) & AND`` on one integer element, atomically.

    A mask size that is not 1, 2, 4 or 8 bytes, or is larger than the element, is 0x03 (bad
    parameter); a tag that is not an integer (REAL, BOOL, strings) is 0xFF/0x2107 (type
    mismatch); too few bytes for the masks is 0x13.  Masks narrower than the element apply
    to its low bytes; bytes after the AND mask are ignored (pycomm3 sends 8 AND-mask bytes)."""
    _writable(target)
    attribute = target.attribute
    if attribute.error:
        raise ServiceError(attribute.error, (), f"{attribute.name} is faulted")
    if data[:2] == b"\0\0":
        raise ServiceError(Status.INVALID_PARAMETER_VALUE, (), "0-byte masks")
    try:
        request = logix.ReadModifyWriteTag.decode(data)
    except CodecError as exc:
        raise ServiceError(Status.NOT_ENOUGH_DATA, (), str(exc)) from None
    ctype = attribute.parser
    if ctype.handle is not None or ctype.code not in _MASKABLE or not ctype.size:
        raise bad_type()
    if request.size not in (1, 2, 4, 8) or request.size > ctype.size:
        raise ServiceError(Status.INVALID_PARAMETER_VALUE, (),
                           f"{request.size}-byte masks for a {ctype.size}-byte {ctype.name}")
    bits = 8 * ctype.size
    signed = ctype.low < 0  # type: ignore[attr-defined]

    def change(value: Any) -> int:
        result = request.apply(int(value) & ((1 << bits) - 1))
        return result - (1 << bits) if signed and result >> (bits - 1) else result

    attribute.modify(target.element, change)


# --- Symbol browsing and the STRING template ------------------------------------------------------

#: Symbol Object attribute 10, External Access
_ACCESS_CODE = {"rw": 0, "ro": 2, "none": 3}

#: the symbol type a Logix controller gives its ``Program:<name>`` entries
PROGRAM_SYMBOL_TYPE = 0x1068


def symbol_entries(device: Device, program: str | None = None) -> list[logix.SymbolEntry]:
    """The Symbol Object instances a tag browse of one scope lists, in instance order.

    Controller scope (``program`` None): the controller tags, and one ``Program:<name>``
    entry per program, at the instance of its first tag.  ``Program:<name>``: that
    program's tags, by their names within it.  An unknown program raises ServiceError."""
    entries, programs = [], set()
    wanted = program.casefold() if program else None
    for instance in sorted(device.symbols):
        tag = device.symbols[instance]
        if tag.access == "none":  # External Access None: not listed
            continue
        scope = tag.program
        if wanted is None and scope is not None:
            if scope.casefold() not in programs:
                programs.add(scope.casefold())
                entries.append(logix.SymbolEntry(instance, scope, PROGRAM_SYMBOL_TYPE))
            continue
        if (scope or "").casefold() != (wanted or ""):
            continue
        entries.append(logix.SymbolEntry(instance, tag.local_name, tag.symbol_type, tag.shape,
                                         alias=tag.alias_for is not None, access=_ACCESS_CODE[tag.access]))
    if wanted is not None and not entries:
        raise ServiceError(Status.PATH_DESTINATION_UNKNOWN, (), f"no program {program!r}")
    return entries


def get_instance_attribute_list(device: Device, first: int, data: bytes, room: int,
                                program: str | None = None) -> tuple[int, bytes]:
    try:
        attributes = logix.GetInstanceAttributeList.decode(data).attributes
    except CodecError as exc:
        raise ServiceError(Status.NOT_ENOUGH_DATA, (), str(exc)) from None
    out = bytearray()
    for entry in symbol_entries(device, program):
        if entry.instance < first:
            continue
        try:
            encoded = logix.encode_symbol_entry(entry, attributes)
        except CodecError as exc:
            raise ServiceError(Status.ATTRIBUTE_LIST_ERROR, (), str(exc)) from None
        if len(out) + len(encoded) > room:
            if not out:
                raise ServiceError(Status.RESOURCE_UNAVAILABLE, (), "reply too large")
            return Status.PARTIAL_TRANSFER, bytes(out)
        out += encoded
    return Status.SUCCESS, bytes(out)


def read_template(data: bytes, room: int, template: bytes = STRING_TEMPLATE) -> tuple[int, bytes]:
    """Read Tag (0x4C) at @0x6C/<instance>: offset (UDINT), byte count (UINT) of the template
    (the STRING's, or a structure's ``StructType.template_bytes``)."""
    request = logix.ReadTemplate.decode(data)
    offset, count = request.offset, request.count
    if offset >= len(template):
        raise out_of_range()
    end = min(offset + count, offset + room, len(template))
    done = end >= len(template) or end == offset + count  # all of it, or all that was asked
    status = Status.SUCCESS if done else Status.PARTIAL_TRANSFER
    return status, template[offset:end]


# --- Get/Set Attribute ----------------------------------------------------------------------------

def _object(device: Device, path: tuple[Segment, ...], need_attribute: bool) -> tuple[int, int, int | None]:
    kinds = tuple(seg.kind if isinstance(seg, Logical) else "" for seg in path)
    wanted = ("class", "instance", "attribute") if need_attribute else ("class", "instance")
    if kinds != wanted:
        raise ServiceError(Status.PATH_SEGMENT_ERROR, (), f"expected a path of {'/'.join(wanted)}")
    values = tuple(seg.value for seg in path)  # type: ignore[union-attr]
    if (values[0], values[1]) not in device.objects:
        raise ServiceError(Status.PATH_DESTINATION_UNKNOWN, (), f"no object @{values[0]}/{values[1]}")
    return values[0], values[1], values[2] if need_attribute else None


def _encode_attribute(attribute: Attribute) -> bytes:
    return attribute.parser.encode(_values(attribute, 0, len(attribute)))


def get_attribute_single(device: Device, path: tuple[Segment, ...]) -> bytes:
    cls_id, inst, attr_id = _object(device, path, True)
    attribute = device.objects[(cls_id, inst)].get(attr_id)  # type: ignore[arg-type]
    if attribute is None:
        raise ServiceError(Status.ATTRIBUTE_NOT_SUPPORTED, (), f"no attribute {attr_id}")
    return _encode_attribute(attribute)


def set_attribute_single(device: Device, path: tuple[Segment, ...], data: bytes) -> None:
    cls_id, inst, attr_id = _object(device, path, True)
    attribute = device.objects[(cls_id, inst)].get(attr_id)  # type: ignore[arg-type]
    if attribute is None:
        raise ServiceError(Status.ATTRIBUTE_NOT_SUPPORTED, (), f"no attribute {attr_id}")
    if attribute.mask:
        raise ServiceError(Status.ATTRIBUTE_NOT_SETTABLE, (), f"{attribute.name} is not settable")
    if attribute.error:
        raise ServiceError(attribute.error)
    ctype = attribute.parser
    try:
        if ctype.size and len(data) % ctype.size:
            raise ServiceError(Status.NOT_ENOUGH_DATA, (), f"{len(data)} bytes is not whole {ctype.name}s")
        values = ctype.decode(data)
    except CodecError as exc:
        raise ServiceError(Status.NOT_ENOUGH_DATA, (), str(exc)) from None
    if len(values) > len(attribute):
        raise ServiceError(Status.TOO_MUCH_DATA, (), f"{len(values)} values for {len(attribute)} elements")
    if not values:
        raise ServiceError(Status.NOT_ENOUGH_DATA)
    attribute[0:len(values)] = values


def get_attributes_all(device: Device, path: tuple[Segment, ...]) -> bytes:
    cls_id, inst, _ = _object(device, path, False)
    attrs = device.objects[(cls_id, inst)]
    order = GET_ALL_ATTRIBUTES.get(cls_id) if inst else None
    return b"".join(_encode_attribute(attrs[a]) for a in (order or sorted(attrs)) if a in attrs)


def get_attribute_list(device: Device, path: tuple[Segment, ...], data: bytes) -> bytes:
    cls_id, inst, _ = _object(device, path, False)
    attrs = device.objects[(cls_id, inst)]
    answers = []
    for attr_id in GetAttributeList.decode(data).attributes:
        attribute = attrs.get(attr_id)
        answers.append((attr_id, Status.ATTRIBUTE_NOT_SUPPORTED, b"") if attribute is None
                       else (attr_id, 0, _encode_attribute(attribute)))
    return encode_attribute_list_reply(answers)
