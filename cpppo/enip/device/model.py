"""The device model: typed attributes, the tag table, and the CIP objects of one simulated
controller.  Knows nothing of sockets (the server and the service handlers use it).

``Attribute`` is the hook users subclass (spec 2.1.3): every Read/Write Tag [Fragmented] and
Get/Set Attribute goes through ``attribute[key]`` / ``attribute[key] = values``, where ``key``
is an element index (int) or a ``slice``.  The base class guards its values with a lock, so
subclasses and other threads may touch them concurrently.

``Device.from_specs(["SCADA=INT[1000]", "Tag@22/1/1=DINT[4]"], identity={...})`` builds a
device from ``enip_server`` tag specs
(``<name>[@<class>/<instance>/<attribute>]=<TYPE>[<n>][!<access>][=<value>[,...]][~<behaviour>]``).
A tag with a behaviour (:mod:`cpppo.behaviour`) has a ``driver``: its values are produced
when it is read, and a client's write to it is refused with status 0x0F (privilege
violation), as a controller refuses writes to a tag whose external access is read only.
With a ``journal``, every client write is recorded before it is acknowledged.
A tag named ``Program:<program>.<name>`` is scoped to that program (as a Logix controller's
program tags are).  ``BOOL[<n>]`` is held the way Logix holds it: DWORD[<n>/32, rounded up],
listed as a DWORD array (symbol type 0x20D3) of that many elements, element ``i`` of the
wire holding BOOLs 32i..32i+31 (``DWORD[<n>]`` is the same thing, declared by its words).
``!ro`` / ``!none`` after the type give a tag Logix's External Access Read Only (writes are
refused with 0x0F, privilege violation) or None (not listed, not readable: 0x05).
``StringMember`` views the ``LEN`` / ``DATA`` members of a Logix STRING element.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cpppo.enip.codec.epath import Port
from cpppo.enip.codec.types import (
    BOOL,
    DINT,
    DWORD,
    LOGIX_STRING_CHARS,
    SINT,
    STRING_HANDLE,
    STRUCT,
    TYPES,
    CIPType,
)
from cpppo.enip.device.attribute import _LOCK, ACCESS, Attribute, parse_access
from cpppo.faults import FaultState

__all__ = ["ACCESS", "Attribute", "Device", "StringMember", "Tag", "TagSpec", "bool_array", "pack_bits",
           "parse_access", "parse_identity", "parse_tag_spec", "unpack_bits"]


class StringMember(Attribute):
    """A view of one member of one element of a Logix STRING tag: ``LEN`` (a DINT) or
    ``DATA`` (SINT[82]), as clients address ``Text.LEN`` or ``Text[1].DATA[0]``.

    The tag stores each STRING as text, so DATA holds the characters and then NULs: a DATA
    write beyond LEN is not kept (a controller would keep it for a later LEN write), and a
    LEN write cuts the text or pads it with NULs."""

    def __init__(self, parent: Attribute, index: int, member: str) -> None:
        member = member.upper()
        if member not in ("LEN", "DATA"):
            raise ValueError(f"STRING has no member {member!r} (LEN or DATA)")
        length = None if member == "LEN" else LOGIX_STRING_CHARS
        super().__init__(f"{parent.name}[{index}].{member}", DINT if member == "LEN" else SINT,
                         length=length)
        self.parent, self.index, self.member = parent, index, member
        self._lock = parent._lock  # one lock: a member's read-modify-write excludes the tag's

    @property  # type: ignore[override]
    def error(self) -> int:
        return self.parent.error

    @error.setter
    def error(self, value: int) -> None:
        pass  # faults are the parent tag's

    def _raw(self) -> bytes:
        return str(self.parent[self.index]).encode("iso-8859-1", "replace")

    def __getitem__(self, key: int | slice) -> Any:
        self._validate_key(key)
        raw = self._raw()
        if self.member == "LEN":
            values = [len(raw)]
        else:
            values = [b - 256 if b > 127 else b for b in raw.ljust(LOGIX_STRING_CHARS, b"\0")]
        return values[key]

    def __setitem__(self, key: int | slice, value: Any) -> None:
        kind = self._validate_key(key)
        values = list(value) if kind is slice else [value]
        with self._lock:
            raw = self._raw()
            if self.member == "LEN":
                if len(values) != 1 or not 0 <= int(values[0]) <= LOGIX_STRING_CHARS:
                    raise ValueError(f"{self.name} must be 0-{LOGIX_STRING_CHARS}, not {values}")
                raw = raw.ljust(LOGIX_STRING_CHARS, b"\0")[:int(values[0])]
            else:
                data = bytearray(raw.ljust(LOGIX_STRING_CHARS, b"\0"))
                start = (key.start or 0) if isinstance(key, slice) else key
                data[start:start + len(values)] = bytes(int(v) & 0xFF for v in values)
                raw = bytes(data[:len(raw)])
            self.parent[self.index] = raw.decode("iso-8859-1")


@dataclass(frozen=True, repr=False)
class TagSpec:
    """A parsed ``<name>[@<class>/<instance>/<attribute>]=<TYPE>[<length>][!<access>][=<values>]
    [~<behaviour>]``."""

    name: str
    type: CIPType
    length: int | None = None  # None: a scalar
    address: tuple[int, int, int] | None = None
    values: tuple[Any, ...] | None = None  # initial values (repeated to fill an array)
    behaviour: str | None = None  # cpppo.behaviour grammar, e.g. "sine(amplitude=10, period=60)"
    dims: tuple[int, ...] | None = None  # a multi-dimensional array's dimensions (length: their product)
    bools: int | None = None  # a BOOL[n] array (held as DWORD[length]): n
    access: str = "rw"  # Logix External Access: "rw", "ro" (Read Only, or Constant) or "none"

    def __repr__(self) -> str:
        extra = "".join(f", {k}={getattr(self, k)!r}" for k in ("values", "behaviour", "dims", "bools")
                        if getattr(self, k) is not None)
        extra += f", access={self.access!r}" if self.access != "rw" else ""
        return (f"TagSpec(name={self.name!r}, type={self.type.name}, length={self.length!r}, "
                f"address={self.address!r}{extra})")

    @property
    def initial(self) -> Any:
        """The Attribute ``default``: None, a scalar, or a list filling the array."""
        if self.values is None:
            return None
        if self.length is None:
            return self.values[0]
        return [self.values[i % len(self.values)] for i in range(self.length)]


# the whole text (fullmatch: no trailing newline), ASCII names: Logix symbols are ASCII
_SPEC = re.compile(r"""\s*(?P<name>[A-Za-z_][\w:.]*(?:\[[\d,\s]+\][\w:.]*)*)
    (?:@(?P<address>[^=]+))?
    \s*=\s*(?P<type>[A-Za-z_]\w*)\s*(?:\[\s*(?P<length>[^\]]*)\s*\])?\s*
    (?:!\s*(?P<access>[A-Za-z]\w*)\s*)?(?P<rest>.*?)\s*""",
                   re.X | re.S | re.ASCII)
_GRAMMAR = "<name>[@<class>/<instance>/<attribute>]=<TYPE>[<n>][!<access>][=<value>[,...]][~<behaviour>]"

def pack_bits(bits: Sequence[Any], width: int = 32) -> list[int]:
    """BOOLs -> unsigned words of ``width`` bits, BOOL ``i`` in bit ``i % width`` of word
    ``i // width`` (the last word padded with zeros): how Logix holds a BOOL array."""
    words = [0] * -(-len(bits) // width)
    for index, bit in enumerate(bits):
        if bit:
            words[index // width] |= 1 << index % width
    return words


def unpack_bits(words: Sequence[int], count: int, width: int = 32) -> list[bool]:
    """The first ``count`` BOOLs of ``words`` (the inverse of ``pack_bits``)."""
    return [bool(int(words[index // width]) >> index % width & 1) for index in range(count)]


def bool_array(spec: TagSpec, what: str) -> TagSpec:
    """A ``BOOL[n]`` spec as Logix holds it: DWORD[n/32 rounded up], its initial BOOLs (repeated
    to fill n) packed into the words; other specs unchanged.  ValueError naming ``what``."""
    if spec.type is not BOOL or spec.length is None:
        return spec
    if spec.dims:
        raise ValueError(f"{what}: a BOOL array has one dimension")
    if spec.behaviour is not None:
        raise ValueError(f"{what}: a BOOL array takes no behaviour (give it to a BOOL tag)")
    count = spec.length
    values = spec.values
    if values is not None:
        values = tuple(pack_bits([values[index % len(values)] for index in range(count)]))
    return dataclasses.replace(spec, type=DWORD, length=-(-count // 32), values=values, bools=count)


def _split_rest(rest: str) -> tuple[str | None, str | None]:
    """``=<values>~<behaviour>`` -> (values text, behaviour text); a ``~`` inside quotes is text."""
    quote = None
    for index, char in enumerate(rest):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "~":
            head, behaviour = rest[:index].strip(), rest[index + 1:].strip()
            return (head or None), behaviour
    return (rest.strip() or None), None


def _initial_values(text: str, ctype: CIPType) -> tuple[Any, ...]:
    """Parse ``1,2,3`` / ``1.5`` / ``true`` / ``'text', "more"`` for a tag of type ``ctype``."""
    import ast

    textual = not hasattr(ctype, "fmt")
    try:
        literal = ast.literal_eval(f"({text},)")
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        literal = None
    if literal is None:
        if textual:
            return (text,)
        words = [w.strip() for w in text.split(",")]
        literal = tuple({"true": True, "false": False}.get(w.lower(), w) for w in words)
    values = []
    for value in literal:
        if textual:
            if not isinstance(value, str):
                value = str(value)
        elif isinstance(value, str) or not isinstance(value, (int, float)):
            raise ValueError(f"initial value {value!r} is not a number")
        values.append(ctype.coerce(value))
    return tuple(values)


@functools.lru_cache(maxsize=4096)
def _plain_tag_spec(spec: str) -> TagSpec:
    """A spec using no structure, parsed once for the many devices of a group giving it (a
    TagSpec is frozen: devices share it, never its values)."""
    return parse_tag_spec(spec)


def parse_tag_spec(spec: str, types: Mapping[str, CIPType] | None = None) -> TagSpec:
    """Parse one tag spec; raise ValueError naming what is wrong.  The behaviour is checked
    for syntax here; whether the tags it names exist is checked by ``Device.from_specs``.
    ``types``: the device's structures (upper-case name -> type,
    ``cpppo.enip.device.udt.parse_udts``) beside the atomic types.  ``<TYPE>[2,3]`` is a
    two-dimensional array (up to three dimensions); ``BOOL[<n>]`` is held as Logix holds it
    (``bool_array``); ``!ro`` / ``!none`` (or ``!rw``) after the type is its External Access.

    >>> parse_tag_spec("SCADA@22/1/1=INT[1000]")
    TagSpec(name='SCADA', type=INT, length=1000, address=(22, 1, 1))
    >>> parse_tag_spec("Speed=REAL=1500~lag(Speed_SP, tau=5)").behaviour
    'lag(Speed_SP, tau=5)'
    >>> parse_tag_spec("Flags=BOOL[40]!ro=1,0")
    TagSpec(name='Flags', type=DWORD, length=2, address=None, values=(1431655765, 85), bools=40, access='ro')
    """
    match = _SPEC.fullmatch(spec)
    rest = match["rest"] if match else ""
    if not match or (rest and rest[0] not in "=~"):
        raise ValueError(f"bad tag spec {spec!r}: expected {_GRAMMAR}")
    type_name = match["type"].upper()
    known = {**TYPES, **(types or {})}
    if type_name not in known:
        raise ValueError(f"bad tag spec {spec!r}: unknown type {match['type']!r} "
                         f"(one of {', '.join(sorted(known))})")
    length, dims = None, None
    if match["length"] is not None and "," in match["length"]:
        from cpppo.enip.device.udt import parse_dims
        dims = parse_dims(match["length"], f"bad tag spec {spec!r}")
        length = dims[0] * dims[1] * (dims[2] if len(dims) > 2 else 1)
    elif match["length"] is not None:
        try:
            length = int(match["length"], 0)
        except ValueError:
            raise ValueError(f"bad tag spec {spec!r}: array length {match['length']!r} "
                             "is not a number") from None
        if not 1 <= length <= 65535:
            raise ValueError(f"bad tag spec {spec!r}: array length must be 1-65535")
    address = None
    if match["address"] is not None:
        parts = match["address"].strip().split("/")
        try:
            numbers = tuple(int(p, 0) for p in parts)
        except ValueError:
            raise ValueError(f"bad tag spec {spec!r}: address must be "
                             "@<class>/<instance>/<attribute>") from None
        if len(numbers) != 3 or not all(0 < n <= 0xFFFF for n in numbers):
            raise ValueError(f"bad tag spec {spec!r}: address must be three numbers 1-65535")
        address = numbers  # type: ignore[assignment]
    values_text, behaviour = _split_rest(rest)
    values = None
    if values_text is not None:
        if not values_text.startswith("=") or not values_text[1:].strip():
            raise ValueError(f"bad tag spec {spec!r}: expected {_GRAMMAR}")
        try:
            values = _initial_values(values_text[1:].strip(), known[type_name])
        except ValueError as exc:
            raise ValueError(f"bad tag spec {spec!r}: {exc}") from None
        if length is not None and len(values) > length:
            raise ValueError(f"bad tag spec {spec!r}: {len(values)} initial values for {length} elements")
    if behaviour is not None:
        from cpppo.behaviour.spec import parse_behaviour

        try:
            parse_behaviour(behaviour)
        except ValueError as exc:
            raise ValueError(f"bad tag spec {spec!r}: {exc}") from None
    access = "rw"
    if match["access"] is not None:
        try:
            access = parse_access(match["access"])
        except ValueError as exc:
            raise ValueError(f"bad tag spec {spec!r}: {exc}") from None
    return bool_array(TagSpec(match["name"], known[type_name], length, address, values, behaviour, dims,
                              access=access), f"bad tag spec {spec!r}")


def _member_path(name: str, tags: Collection[str]) -> bool:
    """Does ``name`` name a member (or element) of one of ``tags`` (casefolded names), not a
    tag: ``Tank[3].Level``, ``Line.Speed`` (not ``Program:Main.Speed``)?"""
    parts = name.split("[", 1)[0].split(".")
    return "[" in name or any(".".join(parts[:count]).casefold() in tags for count in range(1, len(parts)))


@dataclass
class Tag:
    """A tag in the table: its attribute and its Symbol Object instance id."""

    name: str
    attribute: Attribute
    instance: int
    address: tuple[int, int, int] | None = None
    dims: tuple[int, ...] | None = None  # a multi-dimensional array's dimensions
    alias_for: str | None = None  # an alias tag: the tag (or member) whose values it shares
    bools: int | None = None  # a BOOL[n] array, held as DWORDs: n
    access: str = "rw"  # External Access: "rw", "ro" (writes refused) or "none" (not listed or readable)

    @property
    def shape(self) -> tuple[int, int, int]:
        """The symbol's dimensions (attributes 8), zeros for those it has not."""
        if self.dims:
            return (*self.dims, 0, 0)[:3]  # type: ignore[return-value]
        return (len(self.attribute), 0, 0) if self.attribute.array else (0, 0, 0)

    @property
    def program(self) -> str | None:
        """``Program:<name>`` for a program-scoped tag (named ``Program:<name>.<tag>``)."""
        head, dot, _ = self.name.partition(".")
        return head if dot and head[:8].casefold() == "program:" and len(head) > 8 else None

    @property
    def local_name(self) -> str:
        """The name within its scope: ``Speed`` for ``Program:Main.Speed``."""
        program = self.program
        return self.name[len(program) + 1:] if program else self.name

    @property
    def symbol_type(self) -> int:
        """The Logix symbol type word: type code (or 0x8000|template instance for a structure),
        the number of dimensions in bits 13-14."""
        ctype = self.attribute.parser
        template = getattr(ctype, "template", ctype.handle)
        word = 0x8000 | template if template is not None else ctype.code
        return word | (len(self.dims) if self.dims else 1 if self.attribute.array else 0) << 13


DEFAULT_IDENTITY: dict[str, Any] = {
    "vendor_id": 1,
    "device_type": 14,
    "product_code": 54,
    "revision": (20, 11),
    "status": 0x3160,
    "serial_number": 7079450,
    "product_name": "1756-L61/B LOGIX5561",
    "state": 3,
    "program_name": "cpppo",
}
_IDENTITY_ALIASES = {"product_type": "device_type", "vendor": "vendor_id", "serial": "serial_number",
                     "name": "product_name", "status_word": "status", "product_revision": "revision"}

DEFAULT_TCPIP: dict[str, Any] = {
    "status": 2,
    "configuration_capability": 0x30,
    "configuration_control": 0,
    "ip_address": "0.0.0.0",
    "network_mask": "255.255.255.0",
    "gateway_address": "0.0.0.0",
    "dns_primary": "0.0.0.0",
    "dns_secondary": "0.0.0.0",
    "domain_name": "",
    "host_name": "",
    "mac_address": "02:00:00:00:00:01",
    "interface_speed": 100,
}


def parse_identity(values: Mapping[str, Any] | None) -> dict[str, Any]:
    """The identity ``values`` over the defaults, checked against their CIP sizes; ValueError
    naming the field.  Aliases (``product_type``, ``serial``, ...) name the same fields.

    >>> parse_identity({"product_type": "0x0E", "serial": 7})["device_type"]
    14
    """
    result = dict(DEFAULT_IDENTITY)
    for key, value in (values or {}).items():
        key = _IDENTITY_ALIASES.get(key, key)
        if key not in DEFAULT_IDENTITY:
            raise ValueError(f"unknown identity field {key!r} (one of {', '.join(DEFAULT_IDENTITY)})")
        if key == "revision":
            if isinstance(value, str) and "." in value:
                try:
                    value = tuple(int(p, 0) for p in value.split(".", 1))
                except ValueError:
                    raise ValueError(f"identity revision must be 'major.minor', not {value!r}") from None
            elif isinstance(value, int):
                value = (value & 0xFF, value >> 8)
            if not (isinstance(value, (tuple, list)) and len(value) == 2):
                raise ValueError(f"identity revision must be 'major.minor', not {value!r}")
            value = (int(value[0]), int(value[1]))
        elif key in ("product_name", "program_name"):
            value = str(value)
            if len(value) > 32:
                raise ValueError(f"identity {key} must be at most 32 characters: {value!r}")
            if not all(ord(c) < 256 for c in value):  # sent as ISO-8859-1 (SHORT_STRING)
                raise ValueError(f"identity {key} must be ISO-8859-1 (Latin-1) text: {value!r}")
        else:
            try:
                value = int(value, 0) if isinstance(value, str) else int(value)
            except (TypeError, ValueError):
                raise ValueError(f"identity {key}: {value!r} is not a number") from None
            limit = {"serial_number": 0xFFFFFFFF, "state": 0xFF}.get(key, 0xFFFF)
            if not 0 <= value <= limit:
                raise ValueError(f"identity {key}: {value} is outside 0-{limit}")
        if key == "revision" and not all(0 <= part <= 255 for part in value):
            raise ValueError(f"identity revision {value} must be two numbers 0-255")
        result[key] = value
    return result


@dataclass
class Device:
    """One simulated controller: identity, interface settings, tags, and CIP objects.

    ``objects[(class, instance)][attribute]`` holds every numerically addressable Attribute
    (the standard objects and tags given an ``@class/instance/attribute``).  A device built by
    :meth:`from_specs` with the default interface settings makes its standard objects at the
    first look at ``objects``: a fleet's devices mostly answer tag reads and List Identity,
    and forty Attributes each are most of what 100,000 of them would cost to start."""

    identity: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_IDENTITY))
    tcpip: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_TCPIP))
    route_path: tuple[Port, ...] | bool | None = None
    tags: dict[str, Tag] = field(default_factory=dict)
    _objects: dict[tuple[int, int], dict[int, Attribute]] = field(default_factory=dict, init=False,
                                                                  repr=False)
    symbols: dict[int, Tag] = field(default_factory=dict)
    attribute_class: type[Attribute] = Attribute
    plant: Any = None  # cpppo.behaviour.Plant: the clock and drivers of the tags' behaviours
    journal: Any = None  # cpppo.behaviour.Journal: retained writes
    faults: FaultState = field(default_factory=FaultState, repr=False)  # injected faults (cpppo.faults)
    io: Any = field(default=None, repr=False)  # a Class 1 adapter's device.assembly.Assemblies, if any
    types: dict[str, Any] = field(default_factory=dict)  # structures: upper-case name -> StructType (udt.py)
    _standard: bool = field(default=False, init=False, repr=False)  # standard objects not made yet

    @property
    def objects(self) -> dict[tuple[int, int], dict[int, Attribute]]:
        if self._standard:
            with _LOCK:  # threaded servers: one thread makes them, the others wait for them
                if self._standard:
                    from cpppo.enip.device.objects import standard_objects
                    self._objects.update(standard_objects(self))
                    self._standard = False
        return self._objects

    def product_name(self) -> str:
        """The Identity's Product Name (attribute 7, which clients may set), as List Identity
        answers it: without making the standard objects just for it."""
        if self._standard:
            return str(self.identity["product_name"])
        return str(self.objects[(1, 1)][7][0])

    @classmethod
    def from_specs(cls, specs: Iterable[str], identity: Mapping[str, Any] | None = None, *,
                   tcpip: Mapping[str, Any] | None = None, route_path: Any = None, simple: bool = False,
                   attribute_class: type[Attribute] = Attribute, n: int = 0, clock: Any = None,
                   retain: str | None = None, base: Callable[[str], str] = str, udts: Iterable[str] = (),
                   export: Any = None) -> Device:
        """Build a device from tag specs; a bad spec or identity value raises ValueError naming it.

        ``udts``: structure definitions ``Name={Member:TYPE[n],...}`` the tag specs may use;
        ``export``: a Logix export (``cpppo.enip.device.l5x.load_export``, given the ``udts``
        itself) whose structures, tags with their initial values and aliases the device serves
        first (what it cannot serve is logged as a warning).

        ``route_path``: None accepts any Unconnected Send route; False (or ``simple``) accepts
        only an empty one; a tuple of ``Port`` segments (or a ``--route-path`` string) must match.
        Behaviours: ``n`` is the device's number in its group, ``clock`` a
        :class:`cpppo.behaviour.Clock` (the system's by default), ``base`` resolves playback
        file names; ``retain``: the path of a journal keeping client writes across restarts."""
        if isinstance(route_path, str):
            from cpppo.enip.codec.epath import parse_route_path
            route_path = parse_route_path(route_path)
        elif isinstance(route_path, list):
            route_path = tuple(route_path)
        unknown_tcpip = set(tcpip or {}) - set(DEFAULT_TCPIP)
        if unknown_tcpip:
            raise ValueError(f"unknown TCPIP field(s): {', '.join(sorted(unknown_tcpip))}")
        device = cls(identity=parse_identity(identity), tcpip={**DEFAULT_TCPIP, **(tcpip or {})},
                     route_path=False if simple else route_path, attribute_class=attribute_class)
        if tcpip:  # checked now (a bad address or MAC is the spec's error, not a served fault)
            from cpppo.enip.device.objects import install_standard_objects
            install_standard_objects(device)
        else:
            device._standard = True
        udts = list(udts)
        if export is not None:
            if udts:
                raise ValueError("with an export, give the structures to load_export(..., udts=...)")
            export.install(device)
        elif udts:
            from cpppo.enip.device.udt import install_types, parse_udts
            install_types(device, parse_udts(udts))
        parse = functools.partial(parse_tag_spec, types=device.types) if device.types else _plain_tag_spec
        parsed = [parse(spec) if isinstance(spec, str) else spec for spec in specs]
        declared = {spec.name.casefold() for spec in parsed} | set(device.tags)
        members = [spec for spec in parsed if _member_path(spec.name, declared)]
        for spec in parsed:
            if spec not in members:
                device.add_tag(spec)
        for spec in members:
            device.set_member(spec)
        from cpppo.enip.device.living import attach_behaviours, attach_journal
        device.plant = attach_behaviours(device, parsed, n=n, clock=clock, base=base)
        if retain is not None:
            device.journal = attach_journal(device, retain)
        return device

    def add_tag(self, spec: TagSpec, attribute: Attribute | None = None) -> Tag:
        """Add a tag (a TagSpec, optionally with a ready-made Attribute)."""
        key = spec.name.casefold()
        if key in self.tags:
            raise ValueError(f"duplicate tag {spec.name!r}")
        if spec.address is not None:
            cls_id, inst, attr_id = spec.address
            if attr_id in self.objects.get((cls_id, inst), {}):
                raise ValueError(f"tag {spec.name!r}: address @{cls_id}/{inst}/{attr_id} is already in use")
        if attribute is None and spec.type.code == STRUCT and spec.type.handle != STRING_HANDLE:
            count = spec.length or 1  # one value (a dict) per element, never shared
            defaults = [spec.type.default() for _ in range(count)]
            attribute = self.attribute_class(spec.name, spec.type, default=defaults)
            attribute.array = spec.length is not None
        elif attribute is None:
            attribute = self.attribute_class(spec.name, spec.type, default=spec.initial, length=spec.length)
        tag = Tag(spec.name, attribute, len(self.symbols) + 1, spec.address, spec.dims, bools=spec.bools,
                  access=spec.access)
        self.tags[key] = tag
        self.symbols[tag.instance] = tag
        if spec.address is not None:
            self.objects.setdefault(spec.address[:2], {})[spec.address[2]] = attribute
        return tag

    def set_member(self, spec: TagSpec) -> None:
        """A spec naming a member of a structure tag (``Tank[3].Level=REAL=5~sine(...)``): its
        type checked against the member's, its initial values stored (its behaviour is
        attached with the others'); ValueError naming the problem."""
        from cpppo.enip.device.udt import MemberView, member_target

        try:
            _, view, element = member_target(self, spec.name)
        except ValueError as exc:
            raise ValueError(f"bad tag spec {spec.name!r}: {exc}") from None
        if not isinstance(view, MemberView) or element is not None:
            raise ValueError(f"bad tag spec {spec.name!r}: names an element, not a structure member")
        length = view.member.length
        if view.parser is not spec.type or length != spec.length:
            shape = f"[{length}]" if length else ""
            raise ValueError(f"bad tag spec {spec.name!r}: the member is a {view.parser.name}{shape}")
        if spec.address is not None:
            raise ValueError(f"bad tag spec {spec.name!r}: a member has no @class/instance/attribute")
        if spec.values is not None:
            initial = spec.initial
            view[0:len(view)] = initial if length else [initial]

    def tag(self, name: str) -> Tag | None:
        return self.tags.get(name.casefold())

    def attribute(self, cls_id: int, instance: int, attr_id: int) -> Attribute | None:
        return self.objects.get((cls_id, instance), {}).get(attr_id)

    def describe(self) -> Sequence[str]:
        """One line per tag, as the CLI prints them."""
        lines = []
        for tag in self.tags.values():
            attr = tag.attribute
            dims = tag.dims or ((len(attr),) if attr.array else ())
            shape = f"[{','.join(map(str, dims))}]" if dims else ""
            where = f"@0x{tag.address[0]:X}/{tag.address[1]}/{tag.address[2]}" if tag.address else ""
            kind = f"{attr.parser.name}{shape}"
            kind = f"BOOL[{tag.bools}] (as {kind})" if tag.bools else kind
            access = {"ro": " read-only", "none": " no-external-access"}.get(tag.access, "")
            lines.append(f"{tag.name:<24} {kind} {where}{access}".rstrip())
        return lines
