"""Plants imported from Logix exports: an L5X project (or a part of one) exported by
RSLogix 5000 / Studio 5000, read with the standard library's ElementTree.

(The ``l5x`` package on PyPI edits tag values and descriptions of a whole project; it does
not read the ``DataTypes`` definitions, which are what we need most, so it is not used.)

``load_export("line3.L5X")`` reads the controller's user-defined types (members of atomic
types, arrays, STRINGs and other structures, in any order; the hidden BOOL hosts and BIT
members a Logix export lists are laid out again by ``udt.layout``), the controller tags and
each program's tags (as ``Program:<name>.<tag>``), and their initial values from the
``Decorated`` data.  Alias tags, produced/consumed tags' connections and types the simulator
cannot hold (AOIs, predefined structures such as TIMER) are listed in
``Export.unsupported``, never dropped silently.  ``Device.from_specs(..., export=...)``
serves an Export.  A file that does not parse, a member of an
unknown type, a recursive type or a tag whose data type is missing raise ``ExportError``:
one line naming the file and the element.
"""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cpppo.enip.codec.types import STRING_HANDLE, TYPES, CIPType
from cpppo.enip.device.model import TagSpec
from cpppo.enip.device.udt import FIRST_TEMPLATE, StructType, layout

__all__ = ["Export", "ExportError", "load_export"]


#: Logix's predefined structures and module types, which an export does not define
PREDEFINED = frozenset({"TIMER", "COUNTER", "CONTROL", "PID", "MESSAGE", "ALARM_ANALOG", "ALARM_DIGITAL",
                        "AXIS_CIP_DRIVE", "AXIS_VIRTUAL", "MOTION_GROUP", "COORDINATE_SYSTEM", "FBD_TIMER",
                        "PIDE", "SERIAL_PORT_CONTROL", "CAM", "CAM_PROFILE", "MOTION_INSTRUCTION"})


class ExportError(ValueError):
    """A Logix export that cannot be served: ``str()`` is one line naming file and element."""


@dataclass
class Export:
    """What an export describes: structures (upper-case name -> type), tags, initial values
    (tag name -> list of element values), and what is not supported (one line each)."""

    source: str
    types: dict[str, StructType] = field(default_factory=dict)
    specs: list[TagSpec] = field(default_factory=list)
    values: dict[str, list[Any]] = field(default_factory=dict)
    unsupported: list[str] = field(default_factory=list)


def _dims(text: str | None) -> tuple[int, ...]:
    """``"10"`` or ``"2 3"`` or ``"2,3"`` -> dimensions; ``"0"``/None -> ()."""
    parts = [int(p) for p in (text or "0").replace(",", " ").split()]
    return tuple(p for p in parts if p) if any(parts) else ()


def _types(source: str, controller: ET.Element) -> dict[str, StructType]:
    """The controller's DataTypes, each after the types its members use."""
    elements = {dt.get("Name", ""): dt for dt in controller.findall("./DataTypes/DataType")}
    known: dict[str, CIPType] = dict(TYPES)
    types: dict[str, StructType] = {}
    busy: list[str] = []
    handles = {STRING_HANDLE}

    def define(name: str) -> CIPType:
        key = name.upper()
        if key in known:
            return known[key]
        element = next((e for n, e in elements.items() if n.upper() == key), None)
        if element is None:
            raise KeyError(name)
        if key in busy:
            raise ExportError(f"{source}: DataType {name!r}: recursive type "
                              f"({' -> '.join([*busy[busy.index(key):], key])})")
        busy.append(key)
        fields: list[tuple[str, CIPType, int | None]] = []
        for member in element.findall("./Members/Member"):
            mname, mtype = member.get("Name", ""), member.get("DataType", "")
            hidden = member.get("Hidden", "false").lower() == "true"
            if hidden and mtype == "SINT" and mname.startswith("ZZZZZZZZZZ"):
                continue  # a BOOL host: laid out again from the BIT members
            if mtype == "BIT":
                mtype = "BOOL"
            try:
                ctype = define(mtype)
            except KeyError:
                raise ExportError(f"{source}: DataType {element.get('Name')!r} Member {mname!r}: "
                                  f"unknown data type {mtype!r}") from None
            dims = _dims(member.get("Dimension"))
            fields.append((mname, ctype, dims[0] if dims else None))
        busy.pop()
        try:
            udt = layout(element.get("Name", name), fields, FIRST_TEMPLATE + len(types))
        except ValueError as exc:
            raise ExportError(f"{source}: DataType {element.get('Name')!r}: {exc}") from None
        while udt.handle in handles:  # unique within the device
            udt = dataclasses.replace(udt, handle=(udt.handle + 1) & 0xFFFF)  # type: ignore[operator]
        handles.add(udt.handle)  # type: ignore[arg-type]
        known[key] = types[key] = udt
        return udt

    for name in elements:
        define(name)
    return types


def _flat(index: str | None, dims: tuple[int, ...], position: int) -> int:
    """The flat (row-major) element of an ``Index="[1,2]"``; its position if it has none."""
    if not index:
        return position
    flat = 0
    for value, size in zip((int(p) for p in index.strip("[]").split(",")), dims, strict=False):
        flat = flat * size + value
    return flat


def _scalar(ctype: CIPType, text: str | None) -> Any:
    if text is None:
        return ctype.default()
    if ctype.name in ("REAL", "LREAL"):
        return float(text)
    if text.startswith("2#") or text.startswith("16#") or text.startswith("8#"):
        base, digits = text.split("#", 1)
        return ctype.coerce(int(digits.replace("_", ""), int(base)))
    return ctype.coerce(int(float(text)))


def _string(element: ET.Element) -> str:
    """A STRING's text from its Decorated form: DATA holds the quoted characters."""
    for child in element.iter("DataValueMember"):
        if child.get("Name") == "DATA":
            text = (child.text or "").strip()
            return text[1:-1].replace("''", "'").replace("$'", "'") if text[:1] == "'" else text
    return ""


def _value(ctype: CIPType, element: ET.Element) -> Any:
    """The value of one element of ``ctype`` from its Decorated XML."""
    if ctype is TYPES["STRING"]:
        return _string(element)
    if isinstance(ctype, StructType):
        value = ctype.default()
        members = {m.name.casefold(): m for m in ctype.fields}
        for child in element:
            member = members.get((child.get("Name") or "").casefold())
            if member is None:
                continue
            if member.length:
                items = value[member.name]
                for item in child.findall("Element"):
                    index = int((item.get("Index") or "[0]").strip("[]").split(",")[0])
                    if index < len(items):
                        items[index] = _element(member.type, item)
            elif isinstance(member.type, StructType) or member.type is TYPES["STRING"]:
                value[member.name] = _value(member.type, child)
            else:
                value[member.name] = _scalar(member.type, child.get("Value"))
        return value
    return _scalar(ctype, element.get("Value"))


def _element(ctype: CIPType, item: ET.Element) -> Any:
    """An <Element>: a Value attribute, or a <Structure> inside."""
    inner = item.find("Structure")
    return _value(ctype, inner) if inner is not None else _scalar(ctype, item.get("Value"))


def _tags(source: str, scope: ET.Element, prefix: str, types: dict[str, StructType], export: Export) -> None:
    for tag in scope.findall("./Tags/Tag"):
        name = tag.get("Name", "")
        full = f"{prefix}{name}"
        if tag.get("TagType", "Base") == "Alias":
            export.unsupported.append(f"{source}: Tag {full!r}: alias tags are not supported "
                                      f"(alias for {tag.get('AliasFor')!r}); not served")
            continue
        type_name = tag.get("DataType")
        if not type_name:
            raise ExportError(f"{source}: Tag {full!r}: no DataType")
        ctype: CIPType | None = types.get(type_name.upper()) or TYPES.get(type_name.upper())
        if ctype is None and type_name.upper() in PREDEFINED:
            export.unsupported.append(f"{source}: Tag {full!r}: the predefined type {type_name!r} "
                                      "is not supported; not served")
            continue
        if ctype is None:
            raise ExportError(f"{source}: Tag {full!r}: data type {type_name!r} is not defined in the export")
        dims = _dims(tag.get("Dimensions"))
        if len(dims) > 3:
            raise ExportError(f"{source}: Tag {full!r}: more than three dimensions")
        length = None
        if dims:
            length = 1
            for d in dims:
                length *= d
        export.specs.append(TagSpec(full, ctype, length, None, dims=dims if len(dims) > 1 else None))
        data = next((d for d in tag.findall("Data") if d.get("Format") == "Decorated"), None)
        if data is None or not len(data):
            continue
        try:
            top = data[0]
            if top.tag == "Array":
                values = [ctype.default() for _ in range(length or 1)]
                for position, item in enumerate(top.findall("Element")):
                    flat = _flat(item.get("Index"), dims, position)
                    if 0 <= flat < len(values):
                        values[flat] = _element(ctype, item)
            else:
                values = [_value(ctype, top)]
        except ValueError as exc:
            raise ExportError(f"{source}: Tag {full!r}: bad initial value: {exc}") from None
        export.values[full] = values


def load_export(path: str | Path) -> Export:
    """Read an L5X export (raises ExportError, one line)."""
    source = str(path)
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise ExportError(f"{source}: not a valid L5X file: {exc}") from None
    except OSError as exc:
        raise ExportError(f"{source}: cannot read: {exc.strerror}") from None
    controller = root if root.tag == "Controller" else root.find("Controller")
    if root.tag not in ("RSLogix5000Content", "Controller") or controller is None:
        raise ExportError(f"{source}: not an L5X export (no RSLogix5000Content/Controller element)")
    export = Export(source)
    export.types = _types(source, controller)
    _tags(source, controller, "", export.types, export)
    for program in controller.findall("./Programs/Program"):
        _tags(source, program, f"Program:{program.get('Name')}.", export.types, export)
    for aoi in controller.findall("./AddOnInstructionDefinitions/AddOnInstructionDefinition"):
        export.unsupported.append(f"{source}: AddOnInstructionDefinition {aoi.get('Name')!r}: "
                                  "add-on instructions are not supported")
    return export

