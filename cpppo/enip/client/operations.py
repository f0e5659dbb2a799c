"""The operation strings of ``enip_client`` and ``client.parse_operations``.

An operation names a target, optionally an element range, count and byte offset, and for a
write an optional cast and the values::

    Tag  Tag[3]  Tag[1-10]  Tag[1].Sub[0-9]  Tag[0]*10  Tag[0-9]+16
    Tag=1  Tag[1-2]=(REAL)111,222  Tag=9.9  TEXT[1]=(SSTRING)"Hello, world!"
    TEXT[0]=(STRING)"hi"  TEXT[0-1]="a","b"
    @1/1/7  @0x1FF/01/0x1A[99]=1  @4/5/{"connection":100}  @{"class":4}/5/{"connection":100}

Text written to a tag (``(STRING)``, or quoted values without a cast) is a Logix STRING
structure write (type 0x02A0, see :data:`LOGIX_STRING_TYPE`), as Logix clients send it; to an
``@class/instance/attribute`` it is a CIP STRING (0xD0).  Values that do not fit the type
(``(INT)99999``, ``(REAL)1e400``) are refused here, before anything is sent.

>>> op = parse_operation("A_Tag[1-2]=(REAL)111,222")
>>> op["path"], op["elements"], op["method"], op["data"], op["tag_type"]
([{'symbolic': 'A_Tag'}, {'element': 1}], 2, 'write', [111.0, 222.0], 202)
>>> parse_operation("@0x1FF/01/0x1A")
{'path': [{'class': 511}, {'instance': 1}, {'attribute': 26}], 'elements': 1, 'method': 'read'}

A malformed operation raises :class:`OperationError` naming the text and the position.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Iterator
from typing import Any

from cpppo.enip.codec.types import ELEMENTARY, REAL, CIPType

__all__ = [
    "CIP_TYPES", "LOGIX_STRING_TYPE", "OperationError", "format_path", "parse_int",
    "parse_operation", "parse_operations", "parse_path", "parse_route_path", "parse_send_path",
    "parse_values",
]


class OperationError(ValueError):
    """A malformed operation string; the message names the text and the position."""

    def __init__(self, text: str, position: int, why: str) -> None:
        self.text, self.position, self.why = text, position, why
        super().__init__(f"bad operation {text!r} at position {position}: {why}")


#: the type names an operation may cast to: the codec's one table of elementary CIP types
CIP_TYPES: dict[str, CIPType] = ELEMENTARY
#: the ``tag_type`` of a Logix STRING structure write/read: type 0xA0 0x02 (then the handle)
LOGIX_STRING_TYPE = 0x02A0

_NUMBER = re.compile(r"[+-]?(0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+|\d+)$")
_SYMBOL = re.compile(r"[A-Za-z_:$][A-Za-z0-9_:$]*")
_INDEX = re.compile(r"\[\s*(\d+)\s*(?:-\s*(\d+)\s*)?\]")
_DEFAULT_SEGMENTS = ("class", "instance", "attribute", "element")
_SEGMENT_KINDS = {"class", "instance", "attribute", "element", "connection", "symbolic", "port",
                  "link"}


def parse_int(text: str) -> int:
    """An integer in decimal (leading zeros allowed), 0x hex, 0o octal or 0b binary.

    >>> [parse_int(t) for t in ("26", "0x1A", "0o32", "0b11010", "026")]
    [26, 26, 26, 26, 26]
    """
    text = text.strip()
    if not _NUMBER.match(text):
        raise ValueError(f"not an integer: {text!r}")
    body = text.lstrip("+-")
    value = int(body, 0) if body[:2].lower() in ("0x", "0o", "0b") else int(body, 10)
    return -value if text.startswith("-") else value


def _split_top(text: str, sep: str) -> list[tuple[int, str]]:
    """Split ``text`` at ``sep`` outside of {...}, [...] and "...", keeping start offsets."""
    parts: list[tuple[int, str]] = []
    depth, quoted, start = 0, False, 0
    for i, ch in enumerate(text):
        if quoted:
            if ch == "\\":
                continue
            if ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append((start, text[start:i]))
            start = i + 1
    parts.append((start, text[start:]))
    return parts


def _numeric_path(text: str, base: int, whole: str) -> list[dict[str, Any]]:
    """``@class/instance/attribute/element`` with JSON segments; ``text`` excludes the '@'."""
    path: list[dict[str, Any]] = []
    for number, (offset, seg) in enumerate(_split_top(text, "/")):
        pos = base + offset
        seg = seg.strip()
        if not seg:
            raise OperationError(whole, pos, "empty path segment")
        if seg.startswith("{"):
            try:
                item = json.loads(seg)
            except json.JSONDecodeError as exc:
                raise OperationError(whole, pos + exc.pos, f"bad JSON segment: {exc.msg}") from None
            if not isinstance(item, dict) or not item or set(item) - _SEGMENT_KINDS:
                raise OperationError(whole, pos, f"unknown path segment {seg}")
            path.append(item)
            continue
        if number >= len(_DEFAULT_SEGMENTS):
            raise OperationError(whole, pos, f"too many numeric segments at {seg!r}")
        try:
            path.append({_DEFAULT_SEGMENTS[number]: parse_int(seg)})
        except ValueError:
            raise OperationError(whole, pos, f"expected a number, found {seg!r}") from None
    return path


def parse_path(text: str, whole: str | None = None, base: int = 0) -> list[dict[str, Any]]:
    """A CIP path: ``@1/1/7`` style numeric, or ``Tag[1].Sub`` symbolic (without ranges).

    >>> parse_path("@6/1")
    [{'class': 6}, {'instance': 1}]
    >>> parse_path("Tag[1].Sub")
    [{'symbolic': 'Tag'}, {'element': 1}, {'symbolic': 'Sub'}]
    """
    path, _, _ = _parse_target(text, whole or text, base)
    return path


def _parse_target(text: str, whole: str, base: int) -> tuple[list[dict[str, Any]], int | None, int]:
    """Returns (path, elements-from-range or None, length consumed)."""
    if text.startswith("@"):
        body = text[1:]
        element: int | None = None
        elements: int | None = None
        m = re.search(r"\[\s*(\d+)\s*(?:-\s*(\d+)\s*)?\]\s*$", body)
        if m:
            element, last = int(m.group(1)), m.group(2)
            elements = int(last) - element + 1 if last is not None else None
            body = body[: m.start()]
        path = _numeric_path(body, base + 1, whole)
        if element is not None:
            if any("element" in seg for seg in path):
                raise OperationError(whole, base + 1 + len(body), "element given twice")
            path.append({"element": element})
        if elements is not None and elements < 1:
            raise OperationError(whole, base + 1 + len(body), "empty element range")
        return path, elements, len(text)
    path = []
    elements = None
    pos = 0
    while True:
        m = _SYMBOL.match(text, pos)
        if not m:
            raise OperationError(whole, base + pos, "expected a tag name" if pos < len(text)
                                 else "missing tag name")
        path.append({"symbolic": m.group(0)})
        pos = m.end()
        while pos < len(text) and text[pos] == "[":
            idx = _INDEX.match(text, pos)
            if not idx:
                raise OperationError(whole, base + pos, "expected [<index>] or [<first>-<last>]")
            first, last = int(idx.group(1)), idx.group(2)
            path.append({"element": first})
            if last is not None:
                if int(last) < first:
                    raise OperationError(whole, base + pos, f"empty element range {idx.group(0)}")
                elements = int(last) - first + 1
            pos = idx.end()
        if pos < len(text) and text[pos] == ".":
            pos += 1
            continue
        break
    if pos != len(text):
        raise OperationError(whole, base + pos, f"unexpected {text[pos:]!r}")
    return path, elements, pos


def parse_values(text: str, cast: CIPType | None, whole: str = "",
                 base: int = 0) -> tuple[list[Any], CIPType]:
    """The comma-separated values of a write; unless cast: STRING if the first is quoted,
    else REAL if any has a '.', else INT.  A value outside the type's range is refused.

    >>> values, cast = parse_values("1,2,3", None); values, cast.name
    ([1, 2, 3], 'INT')
    >>> values, cast = parse_values('"Hello, world!",x', CIP_TYPES["SSTRING"]); values, cast.name
    (['Hello, world!', 'x'], 'SSTRING')
    >>> values, cast = parse_values('"hi"', None); values, cast.name
    (['hi'], 'STRING')
    """
    whole = whole or text
    raw = _split_top(text, ",")
    if cast is None:
        cast = CIP_TYPES["STRING" if text.lstrip().startswith('"') else "REAL" if "." in text else "INT"]
    values: list[Any] = []
    for offset, item in raw:
        pos, token = base + offset, item.strip()
        if cast.size is None:
            if token.startswith('"'):
                try:
                    token = json.loads(token)
                except json.JSONDecodeError:
                    raise OperationError(whole, pos, f"bad quoted string {token}") from None
            values.append(token)
            continue
        if not token:
            raise OperationError(whole, pos, "missing value")
        if cast.name in ("REAL", "LREAL"):
            values.append(_float(token, cast.name, whole, pos))
            continue
        try:
            if cast.name == "BOOL" and token.lower() in ("true", "false"):
                values.append(int(token.lower() == "true"))
                continue
            value = parse_int(token)
        except ValueError:
            raise OperationError(whole, pos, f"{token!r} is not a {cast.name} value") from None
        if not cast.low <= value <= cast.high:  # type: ignore[attr-defined]
            raise OperationError(whole, pos, f"{value} is out of range for {cast.name}")
        values.append(value)
    return values, cast


def _float(token: str, name: str, whole: str, pos: int) -> float:
    """A REAL/LREAL value: a number that fits (or an explicit inf/nan)."""
    try:
        number = float(token)
    except ValueError:
        raise OperationError(whole, pos, f"{token!r} is not a {name} value") from None
    if any(word in token.lower() for word in ("inf", "nan")):
        return number
    try:
        if math.isinf(number) or (name == "REAL" and math.isinf(REAL.decode(REAL.encode([number]))[0])):
            raise OverflowError
    except OverflowError:
        raise OperationError(whole, pos, f"{token} is out of range for {name}") from None
    return number


def parse_operation(text: str, int_type: str | None = None, **kwds: Any) -> dict[str, Any]:
    """One operation string to an operation dict (see the module docstring)."""
    if not isinstance(text, str) or not text.strip():
        raise OperationError(str(text), 0, "empty operation")
    target, eq, value_text = _split_eq(text)
    target_s = target.rstrip()
    offset: int | None = None
    count: int | None = None
    m = re.search(r"(?:\*\s*(\w+))?\s*(?:\+\s*(\w+))?$", target_s)
    if m and (m.group(1) or m.group(2)):
        try:
            count = parse_int(m.group(1)) if m.group(1) else None
            offset = parse_int(m.group(2)) if m.group(2) else None
        except ValueError:
            raise OperationError(text, m.start(), f"bad count/offset {m.group(0)!r}") from None
        target_s = target_s[: m.start()].rstrip()
    lead = len(target_s) - len(target_s.lstrip())
    path, ranged, _ = _parse_target(target_s.strip(), text, lead)
    op: dict[str, Any] = {"path": path}
    elements = count if count is not None else ranged
    if not eq:
        op["elements"] = elements or 1
        op["method"] = "read"
    else:
        base = len(target) + 1
        cast = None
        vtext = value_text
        cm = re.match(r"\s*\(\s*([A-Za-z]+)\s*\)", vtext)
        if cm:
            cast = CIP_TYPES.get(cm.group(1).upper())
            if cast is None:
                raise OperationError(text, base + cm.start(1), f"unknown type {cm.group(1)!r}; "
                                     f"use one of {', '.join(CIP_TYPES)}")
            base += cm.end()
            vtext = vtext[cm.end():]
        elif int_type and "." not in vtext and not vtext.lstrip().startswith('"'):
            cast = CIP_TYPES[int_type]
        values, cast = parse_values(vtext, cast, text, base)
        tag_type = cast.code
        if cast.name == "STRING" and "symbolic" in path[0]:
            tag_type = LOGIX_STRING_TYPE  # a tag: the Logix STRING structure, as Logix clients write
        room = {LOGIX_STRING_TYPE: 82, 0xDA: 255}.get(tag_type)
        for value in values if room else ():
            if len(value.encode("iso-8859-1", "replace")) > room:
                raise OperationError(text, base, f"{value[:20]!r}... is longer than {room} characters "
                                     f"for {'a Logix STRING' if room == 82 else 'SSTRING'}")
        if elements is None:
            elements = len(values)
        elif offset is None and len(values) != elements:
            raise OperationError(text, base, f"{len(values)} values given for {elements} elements")
        op["elements"] = elements
        op["method"] = "write"
        op["data"] = values
        op["tag_type"] = tag_type
    if offset is not None:
        op["offset"] = offset
    op.update(kwds)
    return op


def _split_eq(text: str) -> tuple[str, bool, str]:
    """Split at the first '=' outside of JSON segments."""
    parts = _split_top(text, "=")
    if len(parts) == 1:
        return text, False, ""
    start = parts[1][0]
    return text[: start - 1], True, text[start:]


def parse_operations(tags: Iterable[str | dict[str, Any]], fragment: bool = False,
                     int_type: str | None = None, **kwds: Any) -> Iterator[dict[str, Any]]:
    """Operation strings (or ready-made operation dicts) to operation dicts, lazily.

    ``fragment`` asks for Read/Write Tag Fragmented; ``int_type`` is the default integer
    type of writes (INT); other keywords are added to every operation."""
    for tag in tags:
        op = dict(tag, **kwds) if isinstance(tag, dict) else parse_operation(tag, int_type=int_type, **kwds)
        if fragment:
            op.setdefault("fragment", True)
        yield op


def format_path(path: Any, count: int | None = None) -> str:
    """A path back to text: ``Tag[1].Sub`` or ``@0x0001/1/7``; with ``count``, a range.

    >>> format_path([{'symbolic': 'Tag'}, {'element': 3}], 4)
    'Tag[3-6]'
    >>> format_path([{'class': 1}, {'instance': 1}, {'attribute': 7}])
    '@0x0001/1/7'
    """
    if isinstance(path, str):
        return path
    out = ""
    numeric = [seg for seg in path if "symbolic" not in seg]
    if path and "symbolic" not in path[0]:
        parts = []
        for seg in numeric:
            (kind, val), = seg.items()
            if kind == "class":
                parts.append(f"0x{val:04X}")
            elif kind in ("instance", "attribute"):
                parts.append(str(val))
            elif kind == "element" and seg is numeric[-1]:
                continue
            else:
                parts.append(json.dumps(seg))
        out = "@" + "/".join(parts)
        last = path[-1]
        if "element" in last:
            first = last["element"]
            out += f"[{first}-{first + count - 1}]" if count and count > 1 else f"[{first}]"
        return out
    for i, seg in enumerate(path):
        if "symbolic" in seg:
            out += ("." if out else "") + seg["symbolic"]
        elif "element" in seg:
            first = seg["element"]
            last_element = i == len(path) - 1
            out += f"[{first}-{first + count - 1}]" if last_element and count and count > 1 \
                else f"[{first}]"
        else:
            out += json.dumps(seg)
    return out


def parse_route_path(text: Any) -> list[dict[str, Any]] | bool | None:
    """``--route-path``: '1/0', JSON dict or list ('["1/3", {"port":2,"link":"1.2.3.4"}]'),
    or 0/false for none (returns False).

    >>> parse_route_path('["1/3", "2/1.2.3.4"]')
    [{'port': 1, 'link': 3}, {'port': 2, 'link': '1.2.3.4'}]
    >>> parse_route_path("false")
    False
    """
    if text is None:
        return None
    if text is False or text == [] or (isinstance(text, str) and text.strip().lower() in
                                       ("0", "false", "none", "null", "[]", "")):
        return False
    value = text
    if isinstance(text, str):
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
    if isinstance(value, (str, dict)):
        value = [value]
    if not isinstance(value, list):
        raise ValueError(f"bad route path {text!r}: expected <port>/<link> or JSON")
    route: list[dict[str, Any]] = []
    for item in value:
        if isinstance(item, str):
            port, sep, link = item.partition("/")
            if not sep:
                raise ValueError(f"bad route path segment {item!r}: expected <port>/<link>")
            try:
                item = {"port": parse_int(port), "link": link.strip()}
                if _NUMBER.match(item["link"]):
                    item["link"] = parse_int(item["link"])
            except ValueError:
                raise ValueError(f"bad route path segment {item!r}") from None
        if not isinstance(item, dict) or set(item) != {"port", "link"}:
            raise ValueError(f"bad route path segment {item!r}: needs a port and a link")
        route.append(item)
    return route


def parse_send_path(text: Any) -> list[dict[str, Any]]:
    """``--send-path``: the Message Router's ``@<class>/<instance>`` (numeric or JSON
    segments, as ``@6/1`` or ``@{"class":6}/1``), or '' for none (no Unconnected Send).
    Raises ValueError for anything else (a tag name is no send path).

    >>> parse_send_path("@6/1"), parse_send_path("")
    ([{'class': 6}, {'instance': 1}], [])
    """
    if isinstance(text, list):
        path = text
    elif not isinstance(text, str):
        raise ValueError(f"bad --send-path {text!r}: expected @<class>/<instance>, eg. @6/1")
    elif not text.strip():
        return []
    elif not text.strip().startswith("@"):
        raise ValueError(f"bad --send-path {text!r}: expected @<class>/<instance> (eg. @6/1), or '' for none")
    else:
        try:
            path = parse_path(text.strip())
        except OperationError as exc:
            raise ValueError(f"bad --send-path {text!r}: {exc.why} at position {exc.position}") from None
    numeric = _SEGMENT_KINDS - {"symbolic"}
    if not path or not all(isinstance(seg, dict) and len(seg) == 1 and set(seg) <= numeric for seg in path):
        raise ValueError(f"bad --send-path {text!r}: expected @<class>/<instance>, eg. @6/1")
    return path
