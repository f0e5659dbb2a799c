"""``enip_format``: a decoded EtherNet/IP reply (a ``cpppo.dotdict`` or plain nested dict) as
readable text, one dotted key per line (spec 2.1.5, ``list_identity_simple``)::

    from cpppo.server import enip
    print(enip.enip_format(response))

The text is a Python dict literal: nested dicts and lists of dicts are flattened to dotted keys
(``item[0].identity_object.product_name``), values are shown with ``repr`` (byte arrays as
``bytes``), so ``ast.literal_eval`` reads it back.

>>> print(enip_format({"enip": {"status": 0, "input": bytearray(b"ab")}, "peer": ("10.0.0.1", 44818)}))
{
    'enip.status':                  0,
    'enip.input':                   b'ab',
    'peer':                         ('10.0.0.1', 44818),
}
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

__all__ = ["enip_format", "flatten"]


def flatten(data: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, value) pairs of a nested mapping; lists of mappings become ``key[i]``."""
    for key, value in dict.items(data) if isinstance(data, dict) else data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from flatten(value, name + ".")
        elif isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
            for index, item in enumerate(value):
                yield from flatten(item, f"{name}[{index}].")
        else:
            yield name, value


def _literal(value: Any) -> str:
    if isinstance(value, (bytearray, memoryview)):
        value = bytes(value)
    return repr(value)


def enip_format(data: Mapping[str, Any], sort_keys: bool = False, indent: int = 4) -> str:
    """``data`` as a dict literal with one flattened key per line (see the module docstring)."""
    if not isinstance(data, Mapping):
        raise TypeError(f"enip_format needs a dict, not {type(data).__name__}")
    pairs = list(flatten(data))
    if sort_keys:
        pairs.sort(key=lambda pair: pair[0])
    prefix = " " * indent
    lines = [f"{prefix}{repr(key) + ': ':<32}{_literal(value)}," for key, value in pairs]
    return "\n".join(["{", *lines, "}"])
