"""``python -m cpppo.server.enip.historize <file> <enip_server args...>``: a simulated controller
that records every tag read, write and error to a ``cpppo.history`` file (spec 2.1.3).

Each record's name is ``[<tag>, [<first>, <last>]]`` (the element range) and its value is
``{"read": [...]}``, ``{"write": [...]}`` or ``{"error": "<message>"}``::

    # cpppo history v1: ...
    # Started recording Tag: Tag_Name
    2014-07-15 22:03:44.186	["Tag_Name", [0, 3]]	{"write": [0, 1, 2, 3]}

It is also the example of a custom ``device.Attribute``: override ``__getitem__`` /
``__setitem__``, call ``super()`` for the stored values, and pass the class to
``cpppo.enip.cli.server.main(attribute_class=...)``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from cpppo.enip.cli.server import main as enip_main
from cpppo.enip.device.model import Attribute
from cpppo.history import HistoryWriter

__all__ = ["historizing_attribute", "main"]


def _range(attribute: Attribute, key: int | slice) -> list[int]:
    if isinstance(key, slice):
        start = key.start or 0
        stop = len(attribute) if key.stop is None else key.stop
        return [start, stop - 1]
    return [key, key]


def historizing_attribute(writer: HistoryWriter, base: type[Attribute] = Attribute) -> type[Attribute]:
    """An Attribute subclass recording every access of its tags to ``writer``."""

    class HistorizingAttribute(base):  # type: ignore[valid-type, misc]
        def __init__(self, *args: Any, **kwds: Any) -> None:
            super().__init__(*args, **kwds)
            writer.comment(f"Started recording Tag: {self.name}")

        def _record(self, key: int | slice, what: str, value: Any) -> None:
            if what != "error":
                value = list(value) if isinstance(value, (list, tuple)) else [value]
            writer.write(None, [self.name, _range(self, key)], {what: value})

        def __getitem__(self, key: int | slice) -> Any:
            try:
                value = super().__getitem__(key)
            except Exception as exc:
                self._record(key, "error", str(exc))
                raise
            self._record(key, "read", value)
            return value

        def __setitem__(self, key: int | slice, value: Any) -> None:
            try:
                super().__setitem__(key, value)
            except Exception as exc:
                self._record(key, "error", str(exc))
                raise
            self._record(key, "write", value)

    return HistorizingAttribute


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0].startswith("-"):
        print("usage: python -m cpppo.server.enip.historize <file> [enip_server options] <tag> ...",
              file=sys.stderr)
        return 2
    path, rest = args[0], args[1:]
    try:
        writer = HistoryWriter(path)
    except (OSError, ValueError) as exc:
        print(f"historize: error: cannot record to {path}: {exc}", file=sys.stderr)
        return 2
    with writer:
        return enip_main(rest, attribute_class=historizing_attribute(writer), prog="historize")


if __name__ == "__main__":
    raise SystemExit(main())
