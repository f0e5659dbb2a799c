"""Behaviours and retained writes on an ENIP device model: the glue between
:mod:`cpppo.behaviour` and :mod:`cpppo.enip.device.model` (no sockets).

``attach_behaviours`` gives every tag spec with a ``~<behaviour>`` a driver (its values are
then produced when read) and checks that expressions name existing tags and form no cycle;
``attach_journal`` replays a retain journal into the tags and records every later write.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from cpppo.behaviour import Clock, Journal, Plant, ValueType, build_driver
from cpppo.enip.codec.cip import ServiceError
from cpppo.enip.codec.types import LOGIX_STRING_CHARS, CIPType, LogixStringType, StringType
from cpppo.enip.device.udt import StructType, member_target

__all__ = ["attach_behaviours", "attach_journal", "value_type"]


def value_type(ctype: CIPType) -> ValueType:
    """The behaviour value type of a CIP type: REAL/LREAL floats, BOOL, integers, text."""
    if isinstance(ctype, LogixStringType):
        return ValueType(ctype.name, "str", capacity=LOGIX_STRING_CHARS)
    if isinstance(ctype, StringType):
        return ValueType(ctype.name, "str", capacity=ctype.capacity)
    fmt = getattr(ctype, "fmt", "")
    if fmt == "?":
        return ValueType(ctype.name, "bool", 0, 1)
    if fmt == "f":
        return ValueType(ctype.name, "float", -3.4028234e38, 3.4028234e38)
    if fmt == "d":
        return ValueType(ctype.name, "float")
    return ValueType(ctype.name, "int", ctype.low, ctype.high)  # type: ignore[attr-defined]


class _Caseless(frozenset):
    """Tag names, compared as a controller does: without regard to case."""

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and frozenset.__contains__(self, name.casefold())


def attach_behaviours(device: Any, specs: Iterable[Any], *, n: int = 0, clock: Clock | None = None,
                      base: Callable[[str], str] = str) -> Plant:
    """Give the device's tags named by ``specs`` (TagSpecs with a behaviour) their drivers;
    ``n``: the device's number in its group; ``base``: resolves playback file names.
    Returns the device's Plant; ValueError naming the tag and the problem."""
    from cpppo.enip.device.attribute import Attribute

    plant = Plant(clock, owner=device)
    specs = [spec for spec in specs if spec.behaviour is not None]
    known = _Caseless(tag.name.casefold() for tag in device.tags.values()
                      if specs and tag.name.isidentifier())  # (none needed without behaviours)

    def resolve(name: str) -> Any:
        tag = device.tag(name)
        if tag is None:
            raise KeyError(name)
        values = Attribute.__getitem__(tag.attribute, slice(None))
        return values if tag.attribute.array else values[0]

    plant.resolve = resolve
    for spec in specs:
        if spec.behaviour is None:
            continue
        if isinstance(spec.type, StructType):
            example = f"{spec.name}{'[0]' if spec.length else ''}.<member>=<TYPE>~..."
            raise ValueError(f"tag {spec.name!r}: a structure has no behaviour of its own; give its "
                             f"members theirs ({example!r})")
        tag = device.tag(spec.name)
        view = member_target(device, spec.name)[1] if tag is None else tag.attribute  # a member
        try:
            driver = build_driver(spec.behaviour, plant, value_type(spec.type), len(view), n=n,
                                  known=known, base=base)
        except ValueError as exc:
            raise ValueError(f"tag {spec.name!r}: {exc}") from None
        if tag is None:
            view.root.drive(view, driver)
        else:
            tag.attribute.driver = driver
        plant.add(spec.name, driver)
    plant.check_cycles(str.casefold)
    if plant:
        for tag in device.tags.values():
            tag.attribute.plant = plant
    return plant


def attach_journal(device: Any, path: str | Path) -> Journal:
    """Restore the writes retained in the journal at ``path`` into the device's tags, then
    record every later write to a tag there (before its reply is sent)."""
    journal = Journal(path)

    def apply(name: Any, start: int, values: list[Any]) -> None:
        tag = device.tag(str(name))
        if tag is None:  # a structure member's write: Tank[3].Level
            try:
                attribute = member_target(device, str(name))[1]
            except ValueError:
                raise KeyError(f"no tag {name!r}") from None
        else:
            attribute = tag.attribute
        if attribute.driver is not None:
            raise ValueError("it is driven by a behaviour now")
        try:
            attribute[start:start + len(values)] = [attribute.parser.coerce(v) for v in values]
        except ServiceError as exc:  # a member driven by a behaviour now
            raise ValueError(exc.reason) from None

    journal.replay(apply)
    for tag in device.tags.values():
        if tag.attribute.driver is None:
            tag.attribute.journal = journal
    return journal
