"""Assembly Object (class 0x04) instances mapped onto a device's tags.

An assembly is the byte image an I/O connection carries: the encoded values of its tags,
one after the other.  Reading one reads each tag through its Attribute (so behaviours and
user hooks see the read); writing one decodes the bytes and writes each tag.

Spec syntax (``enip_server --assembly``, the fleet's ``io`` table)::

    <instance>=<kind>[:<tag>[,<tag>...]]

    100=in:Inputs,Status     T->O data a scanner consumes (produced here)
    150=out:Outputs          O->T data a scanner produces (consumed here; one owner at a time)
    151=config:Setup         configuration data a Forward Open may carry
    198=input-only           heartbeat point of input-only connections (no data)
    199=listen-only          heartbeat point of listen-only connections (no data)

``Assemblies.from_specs(device, specs)`` checks the tags exist (and that no ``out`` or
``config`` assembly maps a tag its behaviour drives) and registers each data assembly's
attribute 3 at ``@4/<instance>/3``, so explicit Get/Set Attribute Single reach it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from cpppo.enip.codec.types import USINT
from cpppo.enip.device.model import Attribute, Device, Tag

__all__ = ["ASSEMBLY_CLASS", "KINDS", "Assemblies", "Assembly", "AssemblyData", "parse_assembly_spec"]

ASSEMBLY_CLASS = 0x04
KINDS = ("in", "out", "config", "input-only", "listen-only")
_SPEC = re.compile(r"^\s*(?P<instance>\w+)\s*=\s*(?P<kind>[a-z-]+)\s*(?::\s*(?P<tags>.*))?$")


@dataclass(frozen=True)
class AssemblySpec:
    instance: int
    kind: str
    tags: tuple[str, ...] = ()


def parse_assembly_spec(text: str) -> AssemblySpec:
    """Parse ``<instance>=<kind>[:<tag>,...]``; raise ValueError naming what is wrong.

    >>> parse_assembly_spec("100=in:Inputs,Status")
    AssemblySpec(instance=100, kind='in', tags=('Inputs', 'Status'))
    """
    match = _SPEC.match(text)
    if not match:
        raise ValueError(f"bad assembly {text!r}: expected <instance>=<kind>[:<tag>,...]")
    try:
        instance = int(match["instance"], 0)
    except ValueError:
        raise ValueError(f"bad assembly {text!r}: instance {match['instance']!r} is not a number") from None
    if not 1 <= instance <= 0xFFFF:
        raise ValueError(f"bad assembly {text!r}: instance must be 1-65535")
    kind = match["kind"]
    if kind not in KINDS:
        raise ValueError(f"bad assembly {text!r}: kind {kind!r} is not one of {', '.join(KINDS)}")
    tags = tuple(t.strip() for t in (match["tags"] or "").split(",") if t.strip())
    if kind in ("in", "out") and not tags:
        raise ValueError(f"bad assembly {text!r}: an {kind!r} assembly needs at least one tag")
    if kind in ("input-only", "listen-only") and tags:
        raise ValueError(f"bad assembly {text!r}: a {kind} connection point carries no tags")
    return AssemblySpec(instance, kind, tags)


class Assembly:
    """One assembly instance: ``kind`` (one of KINDS) and the tags it maps, in order."""

    def __init__(self, instance: int, kind: str, tags: Iterable[Tag] = ()) -> None:
        self.instance = instance
        self.kind = kind
        self.tags = tuple(tags)
        self._layout = [(t.attribute, len(t.attribute), _element_size(t)) for t in self.tags]
        self.size = sum(count * size for _attr, count, size in self._layout)

    def __repr__(self) -> str:
        names = ",".join(t.name for t in self.tags)
        return f"<Assembly {self.instance}={self.kind}{':' + names if names else ''} ({self.size} bytes)>"

    def read(self) -> bytes:
        """The assembly's bytes now: each tag read through its Attribute and encoded."""
        if len(self._layout) == 1:
            attr, count, _size = self._layout[0]
            return attr.parser.encode(attr[0:count])
        return b"".join(attr.parser.encode(attr[0:count]) for attr, count, _size in self._layout)

    def write(self, data: bytes) -> None:
        """Decode ``data`` (exactly ``size`` bytes) into the tags."""
        if len(data) != self.size:
            raise ValueError(f"assembly {self.instance} holds {self.size} bytes, not {len(data)}")
        offset = 0
        for attr, count, size in self._layout:
            chunk = data[offset:offset + count * size]
            offset += count * size
            values = attr.parser.decode(chunk)
            if values != attr[0:count]:
                attr[0:count] = values


def _driver(tag: Tag) -> Any:
    """The behaviour driving the tag (or the first of its structure members), or None."""
    attribute = tag.attribute
    members = getattr(attribute, "members", None) or ()
    return getattr(attribute, "driver", None) or (members[0][1] if members else None)


def _element_size(tag: Tag) -> int:
    size = tag.attribute.parser.size
    if size is None:
        raise ValueError(f"tag {tag.name!r} is of variable-size type {tag.attribute.parser.name}; "
                         "an assembly maps fixed-size tags only")
    return size


class AssemblyData(Attribute):
    """Attribute 3 (data) of an assembly instance: USINT[size] over the assembly's tags."""

    def __init__(self, assembly: Assembly) -> None:
        super().__init__(f"@4/{assembly.instance}/3", USINT, length=assembly.size)
        self.assembly = assembly
        self.mask = 0 if assembly.kind in ("out", "config") else 1  # inputs are not settable

    def __getitem__(self, key: int | slice) -> Any:
        self._validate_key(key)
        return list(self.assembly.read())[key]

    def __setitem__(self, key: int | slice, value: Any) -> None:
        self._validate_key(key)
        with self._lock:
            data = bytearray(self.assembly.read())
            if isinstance(key, slice):
                data[key] = bytes(int(v) & 0xFF for v in value)
            else:
                data[key] = int(value) & 0xFF
            self.assembly.write(bytes(data))


class Assemblies:
    """The assembly instances of one device, by instance number."""

    def __init__(self, device: Device, assemblies: Iterable[Assembly] = (), policy: Any = None) -> None:
        self.device = device
        self.policy = policy  # the device.connections.IOPolicy to serve them with (None: the default)
        self.by_instance: dict[int, Assembly] = {}
        for assembly in assemblies:
            self.add(assembly)

    @classmethod
    def from_specs(cls, device: Device, specs: Iterable[str | AssemblySpec],
                   policy: Any = None) -> Assemblies:
        """Assemblies named by spec strings; a bad spec or a missing tag raises ValueError."""
        result = cls(device, policy=policy)
        for spec in specs:
            parsed = parse_assembly_spec(spec) if isinstance(spec, str) else spec
            tags = []
            for name in parsed.tags:
                tag = device.tag(name)
                if tag is None:
                    raise ValueError(f"assembly {parsed.instance}: no tag {name!r} on this device")
                driver = _driver(tag)
                if parsed.kind in ("out", "config") and driver is not None:
                    raise ValueError(f"assembly {parsed.instance}: tag {name!r} is driven by its behaviour "
                                     f"({driver.kind}); an {parsed.kind} assembly's tags are written by "
                                     "the scanner")
                tags.append(tag)
            try:
                result.add(Assembly(parsed.instance, parsed.kind, tags))
            except ValueError as exc:
                raise ValueError(f"assembly {parsed.instance}: {exc}") from None
        return result

    def add(self, assembly: Assembly) -> None:
        if assembly.instance in self.by_instance:
            raise ValueError(f"assembly instance {assembly.instance} is declared twice")
        self.by_instance[assembly.instance] = assembly
        if assembly.kind in ("in", "out", "config"):
            where = (ASSEMBLY_CLASS, assembly.instance)
            self.device.objects.setdefault(where, {})[3] = AssemblyData(assembly)

    def get(self, instance: int) -> Assembly | None:
        return self.by_instance.get(instance)

    def __len__(self) -> int:
        return len(self.by_instance)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.by_instance.values())
