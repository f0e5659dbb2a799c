"""Plants imported from Logix exports: an L5X project (or a part of one) exported by
RSLogix 5000 / Studio 5000, read with the standard library's ElementTree, and the tag CSV
export (Tools > Export > Tags and Logic Comments; a tab-separated .TXT alike), read with the
standard library's csv.

(The ``l5x`` package on PyPI edits tag values and descriptions of a whole project; it does
not read the ``DataTypes`` definitions, which are what we need most, so it is not used.)

``load_export("line3.L5X")`` reads the controller's user-defined types (members of atomic
types, arrays, STRINGs and other structures, in any order; the hidden BOOL hosts and BIT
members a Logix export lists are laid out again by ``udt.layout``), the controller tags and
each program's tags (as ``Program:<name>.<tag>``), and their initial values from the
``Decorated`` data.

A tag CSV holds ``remark`` lines, a version line, ``TYPE,SCOPE,NAME,DESCRIPTION,DATATYPE,
SPECIFIER,ATTRIBUTES`` headers and one record a line: ``TAG`` (SCOPE empty for a controller
tag, else the program; DATATYPE such as ``DINT``, ``DINT[10]``, ``REAL[2,3]``, ``Motor[4]``,
read with the tag-spec grammar of ``model.parse_tag_spec``), ``ALIAS`` (SPECIFIER: the tag
it aliases), and ``COMMENT`` / ``RCOMMENT`` / ``TEXTBOX`` (descriptions and logic comments,
which hold no data: skipped).  It defines no structures and no values: its structures come
from ``udts`` (``Name={Member:TYPE,...}``) or from an L5X export listed before it
(``load_export(["types.L5X", "tags.CSV"])``); its tags start at zero.

Alias tags (of both formats) are served when they alias a tag or a member of one
(``Fillers[0].Speed``): listed in the tag list as aliases (software control without bit
26) with the type of what they alias, and sharing its values.  Aliases of an element or a
bit (``Counts[3]``, ``Word.3``) or of a tag the export does not have (a module's I/O tag),
produced/consumed tags' connections and types the simulator cannot hold (AOIs, predefined
structures such as TIMER, module types) are listed in ``Export.unsupported`` (or logged when
the device is built), never dropped silently.  ``Device.from_specs(..., export=...)`` serves
an Export.  A file that does not parse, a member of an unknown type, a recursive type or a
tag whose data type is missing raise ``ExportError``: one line naming the file and the
element (a CSV's line).
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import logging
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cpppo.enip.client.operations import OperationError, parse_path
from cpppo.enip.codec.cip import ServiceError
from cpppo.enip.codec.epath import Logical, Segment, Symbolic
from cpppo.enip.codec.types import STRING_HANDLE, TYPES, CIPType
from cpppo.enip.device.model import Device, TagSpec, bool_array, pack_bits, parse_access, parse_tag_spec
from cpppo.enip.device.services import resolve
from cpppo.enip.device.udt import FIRST_TEMPLATE, StructType, install_types, layout, parse_udts

__all__ = ["Export", "ExportError", "load_export", "shared_export"]


#: Logix's predefined structures and module types, which an export does not define
PREDEFINED = frozenset({"TIMER", "COUNTER", "CONTROL", "PID", "MESSAGE", "ALARM_ANALOG", "ALARM_DIGITAL",
                        "AXIS_CIP_DRIVE", "AXIS_VIRTUAL", "MOTION_GROUP", "COORDINATE_SYSTEM", "FBD_TIMER",
                        "PIDE", "SERIAL_PORT_CONTROL", "CAM", "CAM_PROFILE", "MOTION_INSTRUCTION"})


class ExportError(ValueError):
    """A Logix export that cannot be served: ``str()`` is one line naming file and element."""


@dataclass
class Export:
    """What an export describes: structures (upper-case name -> type), tags, initial values
    (tag name -> list of element values), aliases (full name, what it aliases, where it was
    read), and what is not supported (one line each)."""

    source: str
    types: dict[str, StructType] = field(default_factory=dict)
    specs: list[TagSpec] = field(default_factory=list)
    values: dict[str, list[Any]] = field(default_factory=dict)
    unsupported: list[str] = field(default_factory=list)
    # name, target, where, scope, access
    aliases: list[tuple[str, str, str, str, str]] = field(default_factory=list)
    warned: bool = False  # the unsupported lines were logged

    def install(self, device: Device) -> None:
        """Give ``device`` the export's structures, tags (with their initial values) and
        aliases; log a warning for each thing not served."""
        log = logging.getLogger(__name__)
        if not self.warned:  # once per export, not once per device built of it
            self.warned = True
            for line in self.unsupported:
                log.warning("%s", line)
        install_types(device, self.types)
        for spec in self.specs:
            tag = device.add_tag(spec)
            values = self.values.get(spec.name)
            if values:  # copies: devices built of one export share none of their values
                tag.attribute[0:len(values)] = copy.deepcopy(values)
        for name, target, where, prefix, access in self.aliases:
            problem = _add_alias(device, name, target, prefix, access)
            if problem:
                log.warning("%s: alias for %r: %s; not served", where, target, problem)


def _alias_path(target: str) -> tuple[Segment, ...]:
    """``Fillers[0].Speed`` -> the segments a client sends (ValueError if it is no tag path)."""
    if re.search(r"\.\s*\d+\s*$", target):
        raise ValueError("aliases of a bit are not supported (only of a tag or a member)")
    try:
        items = parse_path(target)
    except OperationError as exc:
        raise ValueError(f"not a tag path ({exc})") from None
    return tuple(Symbolic(item["symbolic"]) if "symbolic" in item else Logical("element", item["element"])
                 for item in items)


def _add_alias(device: Device, name: str, target: str, prefix: str, access: str = "rw") -> str | None:
    """Add alias tag ``name`` sharing the values of ``target``, a tag of the program
    ``prefix`` first; what is wrong, if anything."""
    path = _alias_path(target)
    head = path[0].name  # type: ignore[union-attr]
    if prefix and device.tag(f"{prefix}{head}") is not None:
        path = (Symbolic(f"{prefix}{head}"), *path[1:])
    try:
        found = resolve(device, path)
    except ServiceError as exc:
        return f"the export has no such tag or member ({exc})"
    base = found.tag if found.tag is not None and len(path) == 1 else None
    spec = TagSpec(name, found.attribute.parser, len(found.attribute) if found.attribute.array else None,
                   dims=None if base is None else base.dims, bools=None if base is None else base.bools,
                   access=access)
    try:
        tag = device.add_tag(spec, attribute=found.attribute)
    except ValueError as exc:
        return str(exc)
    tag.alias_for = target
    return None


def _dims(text: str | None) -> tuple[int, ...]:
    """``"10"`` or ``"2 3"`` or ``"2,3"`` -> dimensions; ``"0"``/None -> ()."""
    parts = [int(p) for p in (text or "0").replace(",", " ").split()]
    return tuple(p for p in parts if p) if any(parts) else ()


def _types(source: str, controller: ET.Element, given: Mapping[str, StructType]) -> dict[str, StructType]:
    """The controller's DataTypes, each after the types its members use (which may be the
    ``given`` ones, defined before); template instances and handles follow the given ones'."""
    elements = {dt.get("Name", ""): dt for dt in controller.findall("./DataTypes/DataType")}
    for name in elements:
        if name.upper() in given:
            raise ExportError(f"{source}: DataType {name!r}: defined twice "
                              "(in udts or an earlier export too)")
    known: dict[str, CIPType] = {**TYPES, **given}
    types: dict[str, StructType] = {}
    busy: list[str] = []
    handles = {STRING_HANDLE, *(t.handle for t in given.values())}
    first = max((t.template + 1 for t in given.values()), default=FIRST_TEMPLATE)

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
        fields: list[tuple[str, CIPType, int | None, str]] = []
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
            access = _access(f"{source}: DataType {element.get('Name')!r} Member {mname!r}",
                             member.get("ExternalAccess"), None)
            fields.append((mname, ctype, dims[0] if dims else None, access))
        busy.pop()
        try:
            udt = layout(element.get("Name", name), fields, first + len(types))
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
            if member.bools:  # a BOOL array member: its BOOLs packed into DWORDs
                bits = [False] * member.bools
                for item in child.findall("Element"):
                    index = int((item.get("Index") or "[0]").strip("[]").split(",")[0])
                    if index < len(bits):
                        bits[index] = bool(_scalar(TYPES["BOOL"], item.get("Value")))
                value[member.name] = pack_bits(bits)
            elif member.length:
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


def _access(where: str, external: str | None, constant: str | None) -> str:
    """A tag's access from its ExternalAccess and Constant: "rw", "ro" or "none"."""
    try:
        access = parse_access(external) if external else "rw"
    except ValueError as exc:
        raise ExportError(f"{where}: {exc}") from None
    if (constant or "").strip().casefold() in ("true", "1") and access == "rw":
        access = "ro"  # a Constant is read only to clients
    return access


def _tags(source: str, scope: ET.Element, prefix: str, types: dict[str, StructType], export: Export) -> None:
    for tag in scope.findall("./Tags/Tag"):
        name = tag.get("Name", "")
        full = f"{prefix}{name}"
        access = _access(f"{source}: Tag {full!r}", tag.get("ExternalAccess"), tag.get("Constant"))
        if tag.get("TagType", "Base") == "Alias":
            _alias(export, f"{source}: Tag {full!r}", prefix, full, tag.get("AliasFor") or "", access)
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
        try:
            spec = bool_array(TagSpec(full, ctype, length, None, dims=dims if len(dims) > 1 else None,
                                      access=access), f"{source}: Tag {full!r}")
        except ValueError as exc:
            raise ExportError(str(exc)) from None
        export.specs.append(spec)
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
        export.values[full] = pack_bits(values) if spec.bools else values


def _alias(export: Export, where: str, prefix: str, name: str, target: str, access: str = "rw") -> None:
    """Record alias ``name`` of ``target`` (a tag of the program ``prefix`` first, if it has
    one, else a controller tag), or why it is not served."""
    target = target.strip()
    if not target:
        raise ExportError(f"{where}: an alias without the tag it aliases")
    try:
        path = _alias_path(target)
    except ValueError as exc:
        export.unsupported.append(f"{where}: alias for {target!r}: {exc}; not served")
        return
    if not isinstance(path[-1], Symbolic):
        export.unsupported.append(f"{where}: alias for {target!r}: aliases of an element are not "
                                  "supported (only of a tag or a member); not served")
        return
    export.aliases.append((name, target, where, prefix, access))


def _load_l5x(source: str, data: bytes, export: Export) -> None:
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise ExportError(f"{source}: not a valid L5X file: {exc}") from None
    controller = root if root.tag == "Controller" else root.find("Controller")
    if root.tag not in ("RSLogix5000Content", "Controller") or controller is None:
        raise ExportError(f"{source}: not an L5X export (no RSLogix5000Content/Controller element)")
    export.types.update(_types(source, controller, export.types))
    _tags(source, controller, "", export.types, export)
    for program in controller.findall("./Programs/Program"):
        _tags(source, program, f"Program:{program.get('Name')}.", export.types, export)
    for aoi in controller.findall("./AddOnInstructionDefinitions/AddOnInstructionDefinition"):
        export.unsupported.append(f"{source}: AddOnInstructionDefinition {aoi.get('Name')!r}: "
                                  "add-on instructions are not supported")


#: a tag CSV's record types: those holding no data are skipped
CSV_SKIPPED = frozenset({"COMMENT", "RCOMMENT", "TEXTBOX", "REMARK"})
CSV_COLUMNS = ("TYPE", "SCOPE", "NAME", "DESCRIPTION", "DATATYPE", "SPECIFIER", "ATTRIBUTES")


def _load_csv(source: str, data: bytes, export: Export) -> None:
    """The TAG and ALIAS records of a tag CSV (or tab-separated TXT) export."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("cp1252", errors="replace")  # what older RSLogix versions write
    lines = text.splitlines()
    header = next((line for line in lines if line.lstrip().upper().startswith("TYPE")), None)
    if header is None:
        raise ExportError(f"{source}: not a Logix tag export (no {','.join(CSV_COLUMNS[:6])} header)")
    delimiter = "\t" if "\t" in header and "," not in header else ","
    columns = {name: index for index, name in enumerate(CSV_COLUMNS)}
    known: dict[str, CIPType] = {**TYPES, **export.types}
    try:
        rows = list(enumerate(csv.reader(lines, delimiter=delimiter, skipinitialspace=True), 1))
    except csv.Error as exc:
        raise ExportError(f"{source}: not a valid tag export: {exc}") from None
    for number, row in rows:
        fields = [f.strip() for f in row]
        kind = fields[0].upper() if fields else ""
        if not kind or kind in CSV_SKIPPED or (len([f for f in fields if f]) == 1 and kind[:1].isdigit()):
            continue  # blank, remark, comment or the version line ("0.3")
        if kind == "TYPE":  # a header: its columns
            columns = {name.upper(): index for index, name in enumerate(fields)}
            if not {"TYPE", "SCOPE", "NAME", "DATATYPE"} <= set(columns):
                raise ExportError(f"{source}: line {number}: a header needs "
                                  "TYPE, SCOPE, NAME and DATATYPE columns")
            continue

        def field_(name: str, fields: list[str] = fields, columns: dict[str, int] = columns) -> str:
            index = columns.get(name)
            return fields[index] if index is not None and index < len(fields) else ""

        if kind not in ("TAG", "ALIAS"):
            raise ExportError(f"{source}: line {number}: unknown record type {fields[0]!r} "
                              "(TAG, ALIAS, COMMENT, RCOMMENT, TEXTBOX or remark)")
        name, scope = field_("NAME"), field_("SCOPE")
        if not name:
            raise ExportError(f"{source}: line {number}: a {kind} record without a NAME")
        prefix = f"Program:{scope}." if scope else ""
        full = f"{prefix}{name}"
        where = f"{source}: line {number}: {kind} {full!r}"
        access = _csv_access(where, field_("ATTRIBUTES"))
        if kind == "ALIAS":
            _alias(export, where, prefix, full, field_("SPECIFIER"), access)
            continue
        datatype = field_("DATATYPE")
        if not datatype:
            raise ExportError(f"{where}: no DATATYPE")
        type_name = datatype.split("[", 1)[0].strip()
        if type_name.upper() not in known:
            if type_name.upper() in PREDEFINED or ":" in type_name:
                export.unsupported.append(f"{where}: the predefined or module type {type_name!r} "
                                          "is not supported; not served")
                continue
            raise ExportError(f"{where}: data type {type_name!r} is not defined (give its structure "
                              "in udts / --udt, or an L5X export listed before this file)")
        try:
            spec = parse_tag_spec(f"{full}={datatype}", known)
        except ValueError as exc:
            raise ExportError(f"{where}: {exc}") from None
        export.specs.append(dataclasses.replace(spec, access=access))


def _csv_access(where: str, attributes: str) -> str:
    """The access an ATTRIBUTES column gives: ``(RADIX := Decimal, Constant := false,
    ExternalAccess := Read Only)``."""
    pairs = {key.casefold(): value.strip() for key, value in
             re.findall(r"(\w+)\s*:=\s*([^,)]*)", attributes)}
    return _access(where, pairs.get("externalaccess"), pairs.get("constant"))


def load_export(paths: str | Path | Sequence[str | Path], udts: Sequence[str] = ()) -> Export:
    """Read one Logix export, or several in order (L5X or tag CSV, told apart by their
    content), as one Export whose structures are the ``udts`` (``Name={Member:TYPE,...}``)
    and those of each L5X; each file may use the structures defined before it.  Raises
    ExportError, one line."""
    names = [paths] if isinstance(paths, (str, Path)) else list(paths)
    export = Export(", ".join(str(p) for p in names))
    try:
        export.types.update(parse_udts(list(udts)))
    except ValueError as exc:
        raise ExportError(f"udts: {exc}") from None
    for path in names:
        source = str(path)
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise ExportError(f"{source}: cannot read: {exc.strerror}") from None
        if data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"<":
            _load_l5x(source, data, export)
        else:
            _load_csv(source, data, export)
    return export


_SHARED: dict[tuple[Any, ...], Export] = {}


def shared_export(paths: Sequence[str | Path], udts: Sequence[str] = ()) -> Export:
    """``load_export(paths, udts)``, read once per process while the files are unchanged: a
    fleet worker builds many devices of one export (their values are copied at install)."""
    try:
        stats = tuple((s.st_mtime_ns, s.st_size) for s in (Path(p).stat() for p in paths))
    except OSError:
        return load_export(paths, udts)  # which says what is wrong, in one line
    key = (tuple(str(p) for p in paths), tuple(udts), stats)
    export = _SHARED.get(key)
    if export is None:
        if len(_SHARED) >= 16:  # bounded: a worker serves few exports
            _SHARED.pop(next(iter(_SHARED)))
        export = _SHARED[key] = load_export(paths, udts)
    return export
