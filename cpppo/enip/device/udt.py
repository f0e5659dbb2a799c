"""Logix structures (user-defined types, UDTs): their layout, their template, and views of
their members.

``parse_udt("Motor={Speed:REAL,Running:BOOL,Faults:DINT[4],Name:STRING}", known)`` defines
a ``StructType``: a CIP type (code 0xA0, a structure handle) whose values are dicts
``{"Speed": 0.0, "Running": False, "Faults": [0, 0, 0, 0], "Name": ""}``.  Members lie out
as Logix lays them out: each at its natural alignment (arrays, strings and structures on
4 bytes, 8 for 64-bit members), consecutive BOOLs packed into the bits of a hidden SINT
host (``ZZZZZZZZZZMotor0``), a BOOL[n] member held as DWORD[n/32 rounded up] (a list of
words), the size rounded to the structure's alignment.

The template (what Read Template at @0x6C/<instance> serves) lists every member (hosts
too) as info UINT (array length, or the bit of a BOOL), type UINT (the atomic code, or
0x8000|template instance of a structure), offset UDINT; then ``"<name>;n"`` and the member
names, NUL-terminated.  Logix's structure handle is a CRC of the member definitions whose
exact algorithm Rockwell does not publish; clients treat it as opaque and echo it in
writes, so ours is a CRC-16 (CCITT) of the definition, unique within the device.

``MemberView`` is an Attribute over one member of one element of a structure tag (or of a
member of it): ``Tank[3].Level``, ``Line.Motors[2].Speed``.
"""

from __future__ import annotations

import binascii
import copy
import dataclasses
import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cpppo.enip.codec.cip import ServiceError, Status
from cpppo.enip.codec.logix import encode_template, template_words
from cpppo.enip.codec.types import BOOL, DWORD, LOGIX_STRING, STRING_HANDLE, STRUCT, TYPES, CIPType
from cpppo.enip.device.attribute import Attribute, parse_access

__all__ = ["Member", "MemberView", "StructType", "member_target", "member_view", "parse_dims", "parse_udt",
           "parse_udts"]

FIRST_TEMPLATE = 0x100  # Logix gives user-defined templates instances 0x100-0xEFF
HOST_PREFIX = "ZZZZZZZZZZ"


@dataclass(frozen=True)
class Member:
    """One member of a structure: hidden hosts of BOOLs too (``host`` True)."""

    name: str
    type: CIPType
    offset: int
    length: int | None = None  # an array member's element count
    bit: int | None = None  # a BOOL member: its bit in the host SINT at ``offset``
    host: bool = False
    bools: int | None = None  # a BOOL[n] member, held (as Logix holds it) as DWORD[length]: n
    access: str = "rw"  # External Access: "rw", "ro" or "none" (model.parse_access)

    @property
    def type_word(self) -> int:
        """The template's type word: 0x8000|instance for a structure, bit 13 for an array."""
        array = 0x2000 if self.length else 0
        if self.type is LOGIX_STRING:
            return 0x8000 | array | STRING_HANDLE
        if isinstance(self.type, StructType):
            return 0x8000 | array | self.type.template
        return array | self.type.code


@dataclass(frozen=True, eq=False)
class StructType(CIPType):
    """A user-defined structure; values are dicts of member name -> value."""

    members: tuple[Member, ...] = ()
    template: int = 0  # the Template Object instance
    alignment: int = 4
    template_bytes: bytes = field(default=b"", repr=False)

    def __hash__(self) -> int:
        return id(self)

    def __eq__(self, other: object) -> bool:
        return self is other

    @functools.cached_property
    def access(self) -> str:
        """The most restricted External Access of any member (nested ones too): a whole
        value is read only if "rw", written only if "rw" (Logix refuses with 0x0F)."""
        levels = [m.access for m in self.fields]
        levels += [m.type.access for m in self.fields if isinstance(m.type, StructType)]
        return "none" if "none" in levels else "ro" if "ro" in levels else "rw"

    @functools.cached_property
    def fields(self) -> tuple[Member, ...]:
        """The members a value holds (not the BOOL hosts)."""
        return tuple(m for m in self.members if not m.host)

    @functools.cached_property
    def _blank(self) -> tuple[dict[str, Any], tuple[tuple[str, Any, int | None, bool], ...]]:
        """A default value's immutable members (in member order) and how to make each of the
        others: (name, default or structure, length or None, structure?)."""
        blank: dict[str, Any] = {}
        fresh = []
        for m in self.fields:
            nested = isinstance(m.type, StructType)
            blank[m.name] = None if nested or m.length else m.type.default()
            if nested or m.length:
                fresh.append((m.name, m.type if nested else m.type.default(), m.length, nested))
        return blank, tuple(fresh)

    @property
    def template_words(self) -> int:
        """The object definition size (attribute 4), in 32-bit words."""
        return template_words(self.template_bytes)

    def default(self) -> Any:
        blank, fresh = self._blank
        value = dict(blank)  # a device builds thousands: copy, then make the mutable members anew
        for name, item, length, nested in fresh:
            if nested:
                value[name] = [item.default() for _ in range(length)] if length else item.default()
            else:
                value[name] = [item] * length
        return value

    def coerce(self, value: Any) -> Any:
        if not isinstance(value, Mapping):
            raise ValueError(f"a {self.name} value is a mapping of its members, not {value!r}")
        names = {m.name.casefold(): m for m in self.fields}
        result = self.default()
        for key, item in value.items():
            member = names.get(str(key).casefold())
            if member is None:
                raise ValueError(f"{self.name} has no member {key!r}")
            if member.length:
                items = list(item)
                if len(items) > member.length:
                    raise ValueError(f"{self.name}.{member.name} holds {member.length} elements, "
                                     f"not {len(items)}")
                result[member.name][:len(items)] = [member.type.coerce(v) for v in items]
            else:
                result[member.name] = member.type.coerce(item)
        return result

    def encode(self, values: Sequence[Any]) -> bytes:
        out = bytearray()
        size: int = self.size  # type: ignore[assignment]
        for value in values:
            image = bytearray(size)
            for m in self.fields:
                item = value[m.name]
                if m.bit is not None:
                    if item:
                        image[m.offset] |= 1 << m.bit
                    continue
                raw = m.type.encode(item if m.length else [item])
                image[m.offset:m.offset + len(raw)] = raw
            out += image
        return bytes(out)

    def decode(self, data: bytes) -> list[Any]:
        out = []
        for piece in self.split(data):
            value: dict[str, Any] = {}
            for m in self.fields:
                if m.bit is not None:
                    value[m.name] = bool(piece[m.offset] >> m.bit & 1)
                    continue
                count = m.length or 1
                items = m.type.decode(piece[m.offset:m.offset + count * m.type.size])  # type: ignore[operator]
                value[m.name] = items if m.length else items[0]
            out.append(value)
        return out


_MEMBER = re.compile(r"\s*(?P<name>[A-Za-z_]\w*)\s*:\s*(?P<type>[A-Za-z_]\w*)\s*(?:\[(?P<dims>[^\]]*)\])?\s*"
                     r"(?:!\s*(?P<access>[A-Za-z]\w*)\s*)?", re.ASCII)
_UDT = re.compile(r"\s*(?P<name>[A-Za-z_]\w*)\s*=\s*\{(?P<body>.*)\}\s*", re.ASCII | re.S)


def parse_dims(text: str, what: str) -> tuple[int, ...]:
    """``"2,3"`` -> (2, 3): one to three dimensions of 1-65535 each; ValueError naming ``what``."""
    try:
        dims = tuple(int(part, 0) for part in text.split(","))
    except ValueError:
        raise ValueError(f"{what}: array dimensions {text!r} are not numbers") from None
    if not 1 <= len(dims) <= 3 or not all(1 <= d <= 65535 for d in dims):
        raise ValueError(f"{what}: an array has 1-3 dimensions of 1-65535 elements, not [{text}]")
    return dims


def _align(ctype: CIPType, array: bool) -> int:
    if isinstance(ctype, StructType):
        return ctype.alignment
    if ctype is LOGIX_STRING:
        return 4
    natural = min(ctype.size or 1, 8)
    return max(natural, 4) if array else natural


def layout(name: str, fields: Sequence[tuple[Any, ...]], template: int) -> StructType:
    """The StructType of ``fields`` (name, type, array length or None[, access]), laid out as
    Logix does."""
    if not fields:
        raise ValueError(f"structure {name!r} has no members")
    members: list[Member] = []
    offset, host, bits, hosts, alignment = 0, -1, 8, 0, 4
    seen: set[str] = set()
    for member, ctype, length, *more in fields:
        access = more[0] if more else "rw"
        if member.casefold() in seen:
            raise ValueError(f"structure {name!r}: duplicate member {member!r}")
        seen.add(member.casefold())
        if ctype is BOOL and length is None:
            if bits == 8:  # a new hidden host SINT
                host, bits = offset, 0
                members.append(Member(f"{HOST_PREFIX}{name}{hosts}", TYPES["SINT"], host, host=True))
                hosts += 1
                offset += 1
            members.append(Member(member, BOOL, host, bit=bits, access=access))
            bits += 1
            continue
        bools = None
        if ctype is BOOL:  # a BOOL array: DWORDs of 32 BOOLs, as Logix holds one
            ctype, bools, length = DWORD, length, -(-length // 32)  # type: ignore[operator]
        bits = 8  # a BOOL after another member starts a new host
        align = _align(ctype, length is not None)
        alignment = max(alignment, align)
        offset = -(-offset // align) * align
        members.append(Member(member, ctype, offset, length, bools=bools, access=access))
        offset += (length or 1) * ctype.size  # type: ignore[operator]
    size = -(-offset // alignment) * alignment
    names = b"".join(m.name.encode("ascii") + b"\0" for m in members)
    # after "<name>;n", two bytes a member that pylogix reads: low two bits of the second are
    # its access (3: read/write; 0: internal, the hidden BOOL hosts and External Access None
    # members; a Read Only member is listed 3, the value Logix uses for it being unconfirmed)
    scopes = b"".join(b"\x04\x04" if m.host or m.access == "none" else b"\x04\x07" for m in members)
    raw = encode_template([(m.length or (m.bit or 0), m.type_word, m.offset) for m in members],
                          f"{name};n".encode("ascii") + scopes + b"\0" + names)
    handle = binascii.crc_hqx(raw[:len(members) * 8] + names, 0)
    return StructType(name, STRUCT, size, handle, members=tuple(members), template=template,
                      alignment=alignment, template_bytes=raw)


def parse_udt(text: str, known: Mapping[str, CIPType], template: int) -> StructType:
    """One ``Name={Member:TYPE[dims],...}`` definition over the ``known`` types (by upper-case
    name); ValueError naming what is wrong."""
    match = _UDT.fullmatch(text)
    if not match:
        raise ValueError(f"bad structure {text!r}: expected <Name>={{<member>:<TYPE>[<n>],...}}")
    name = match["name"]
    fields: list[tuple[str, CIPType, int | None, str]] = []
    for piece in re.split(r",(?![^\[]*\])", match["body"]):  # not the commas of [2,3]
        if not piece.strip():
            continue
        part = _MEMBER.fullmatch(piece)
        if not part:
            raise ValueError(f"structure {name!r}: bad member {piece.strip()!r} "
                             "(expected <member>:<TYPE>[<n>])")
        ctype = known.get(part["type"].upper())
        if ctype is None:
            raise ValueError(f"structure {name!r}: member {part['name']!r} has unknown type {part['type']!r}")
        length = None
        if part["dims"] is not None:
            dims = parse_dims(part["dims"], f"structure {name!r} member {part['name']!r}")
            if len(dims) != 1:
                raise ValueError(f"structure {name!r} member {part['name']!r}: members have one dimension")
            length = dims[0]
        access = "rw"
        if part["access"] is not None:
            try:
                access = parse_access(part["access"])
            except ValueError as exc:
                raise ValueError(f"structure {name!r} member {part['name']!r}: {exc}") from None
        fields.append((part["name"], ctype, length, access))
    return layout(name, fields, template)


def parse_udts(texts: Sequence[str], first: int = FIRST_TEMPLATE) -> dict[str, StructType]:
    """Definitions in order (each may use the ones before it): upper-case name -> StructType."""
    known: dict[str, CIPType] = dict(TYPES)
    types: dict[str, StructType] = {}
    handles = {STRING_HANDLE}
    for number, text in enumerate(texts):
        udt = parse_udt(text, known, first + number)
        key = udt.name.upper()
        if key in known:
            raise ValueError(f"structure {udt.name!r} is already defined (or is an atomic type)")
        while udt.handle in handles:  # keep handles unique within the device
            udt = dataclasses.replace(udt, handle=(udt.handle + 1) & 0xFFFF)  # type: ignore[operator]
        handles.add(udt.handle)  # type: ignore[arg-type]
        known[key] = types[key] = udt
    return types


class MemberView(Attribute):
    """One member of one element of a structure tag, as an Attribute: reads and writes go to
    the tag's stored dicts (under the tag's lock).  ``path`` alternates element indices and
    member names: ``(3, "Level")`` is ``Tank[3].Level``."""

    def __init__(self, root: Attribute, path: tuple[int | str, ...], member: Member) -> None:
        super().__init__(f"{root.name}" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path),
                         member.type, length=member.length)
        self.value = []  # never used: the values live in the root tag
        self.root, self.path, self.member = root, path, member
        self.access = member.access  # member_view narrows it to its parents'
        self._lock = root._lock

    @property  # type: ignore[override]
    def error(self) -> int:
        return self.root.error

    @error.setter
    def error(self, value: int) -> None:
        pass  # faults are the tag's

    def __len__(self) -> int:
        return self.member.length or 1

    def _container(self) -> dict[str, Any]:
        value: Any = self.root[self.path[0]]  # type: ignore[index]
        for step in self.path[1:-1]:
            value = value[step]
        return value  # type: ignore[no-any-return]

    def _validate_key(self, key: int | slice) -> type:
        size = len(self)
        if isinstance(key, slice):
            start, stop = key.start or 0, size if key.stop is None else key.stop
            if key.step not in (None, 1) or not 0 <= start <= stop <= size:
                raise IndexError(f"{self.name}[{key.start}:{key.stop}] is outside 0-{size}")
            return slice
        if not isinstance(key, int) or not 0 <= key < size:
            raise IndexError(f"{self.name}[{key}] is outside 0-{size - 1}")
        return int

    def __getitem__(self, key: int | slice) -> Any:
        self._validate_key(key)
        with self._lock:
            value = self._container()[self.path[-1]]  # type: ignore[index]
            values = value if self.member.length else [value]
            return copy.deepcopy(values[key])  # type: ignore[index]

    def __setitem__(self, key: int | slice, value: Any) -> None:
        kind = self._validate_key(key)
        for view, driver in self.root.members or ():
            if view.path == self.path:
                raise ServiceError(Status.PRIVILEGE_VIOLATION, (), f"{self.name} is driven by its behaviour "
                                   f"({driver.kind}); it cannot be written")
        with self._lock:
            container = self._container()
            name = self.path[-1]
            if self.member.length:
                items = container[name]  # type: ignore[index]
                if kind is slice:
                    values = list(value)
                    if len(values) != len(range(*key.indices(len(items)))):  # type: ignore[union-attr]
                        raise ValueError(f"{self.name}: {len(values)} values for {key}")
                    items[key] = values
                else:
                    items[key] = value
            else:
                container[name] = value[0] if kind is slice else value  # type: ignore[index]
            if self.root.plant is not None:
                self.root.plant.version += 1  # values following this member move
            if self.root.journal is not None:  # retained as the member's own write
                start = (key.start or 0) if isinstance(key, slice) else key
                self.root.journal.record(self.name, start, list(value) if kind is slice else [value])

    def store(self, values: list[Any]) -> None:
        """Put a behaviour's values in (its tag's lock held; no write checks)."""
        self._container()[self.path[-1]] = values if self.member.length else values[0]  # type: ignore[index]


def member_view(parent: Attribute, element: int, name: str) -> MemberView:
    """The view of member ``name`` of element ``element`` of ``parent`` (a structure tag or a
    structure member view); ValueError if the structure has no such member."""
    ctype = parent.parser
    if not isinstance(ctype, StructType):
        raise ValueError(f"{parent.name} is not a structure")
    wanted = name.casefold()
    for m in ctype.fields:
        if m.name.casefold() == wanted:
            break
    else:
        raise ValueError(f"{ctype.name} has no member {name!r}")
    if isinstance(parent, MemberView):
        path = (*parent.path, *((element,) if parent.member.length else ()), m.name)
        view = MemberView(parent.root, path, m)
        if parent.access != "rw" and view.access != "none":
            view.access = parent.access  # a member of a Read Only (or None) member is so too
        return view
    return MemberView(parent, (element, m.name), m)


_STEP = re.compile(r"\[\s*(\d+(?:\s*,\s*\d+)*)\s*\]|\.\s*([A-Za-z_]\w*)", re.ASCII)


def _tag_of(device: Any, text: str) -> tuple[Any, str]:
    """The tag a member path starts with (the longest dotted name before any index that
    names one: ``Program:Main.Tank``) and the rest of the path; None if none does."""
    head = text.split("[", 1)[0]
    parts = head.split(".")
    for count in range(len(parts), 0, -1):
        name = ".".join(parts[:count])
        tag = device.tag(name)
        if tag is not None:
            return tag, text[len(name):]
    return None, text


def member_target(device: Any, text: str) -> tuple[Any, Attribute, int | None]:
    """What a member path names: ``Tank[3].Level`` -> (the tag ``Tank``, the Attribute of
    the member, None), ``Counts[1,2]`` -> (the tag, its Attribute, the flat element 5).
    An array must be indexed before a member of its elements; ValueError naming the problem."""
    tag, rest = _tag_of(device, text)
    if tag is None:
        raise ValueError(f"{text!r}: no tag named {text.split('[', 1)[0].split('.', 1)[0]!r}")
    attribute: Attribute = tag.attribute
    dims: tuple[int, ...] | None = tag.dims
    element: int | None = None
    position = 0
    while position < len(rest):
        step = _STEP.match(rest, position)
        if step is None:
            raise ValueError(f"{text!r}: expected [<index>] or .<member> at {rest[position:]!r}")
        if step[1] is not None:
            if element is not None or not attribute.array:
                raise ValueError(f"{text!r}: {attribute.name} is not an array (or is indexed twice)")
            indices = [int(part) for part in step[1].split(",")]
            shape = (dims if len(indices) > 1 else None) or (len(attribute),)
            if len(indices) != len(shape) or any(i >= n for i, n in zip(indices, shape, strict=True)):
                raise ValueError(f"{text!r}: index [{step[1]}] is outside {attribute.name}")
            element = 0
            for index, size in zip(indices, shape, strict=True):
                element = element * size + index
        else:
            if attribute.array and element is None:
                raise ValueError(f"{text!r}: {attribute.name} is an array: index it before .{step[2]}")
            attribute = member_view(attribute, element or 0, step[2])
            element, dims = None, None
        position = step.end()
    return tag, attribute, element


def install_types(device: Any, types: Mapping[str, StructType]) -> None:
    """Give ``device`` the structures ``types``, each with its Template Object instance
    (attributes 1 handle, 2 member count, 3 CRC, 4 definition size in words, 5 size)."""
    from cpppo.enip.codec.logix import TEMPLATE_CLASS
    from cpppo.enip.codec.types import UDINT, UINT
    for udt in types.values():
        device.types[udt.name.upper()] = udt
        attrs = device.objects.setdefault((TEMPLATE_CLASS, udt.template), {})
        for attr_id, name, ctype, value in ((1, "Structure Handle", UINT, udt.handle),
                                            (2, "Member Count", UINT, len(udt.members)),
                                            (3, "Template CRC", UINT, udt.handle),
                                            (4, "Object Definition Size", UDINT, udt.template_words),
                                            (5, "Structure Size", UDINT, udt.size)):
            attrs[attr_id] = Attribute(name, ctype, default=value, mask=1)


def template_bytes(device: Any, instance: int) -> bytes | None:
    """The Read Template data of the device's template ``instance`` (None: no such template)."""
    for udt in device.types.values():
        if udt.template == instance:
            return udt.template_bytes  # type: ignore[no-any-return]
    return None
