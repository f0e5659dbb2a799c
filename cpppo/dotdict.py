"""A dict whose keys may be dotted paths into nested layers, readable as attributes.

    >>> d = dotdict()
    >>> d["enip.CIP.send_data.interface"] = 0
    >>> d.enip.CIP.send_data.interface
    0
    >>> d["enip.CIP.send_data.CPF.item"] = [dotdict(type_id=0), dotdict(type_id=178)]
    >>> d["enip.CIP.send_data.CPF.item[1].type_id"]
    178
    >>> len(list(d)), sorted(d)[-1]
    (3, 'enip.CIP.send_data.interface')

Iterating a dotdict yields the dotted keys of its leaf values (lists of dotdicts are
indexed as ``key[i]``), which is how the spec's reply dumps are printed.  ``'a' in d``
is true for a partial key (a layer), so ``setdefault`` never wipes out a layer.  A
``..`` in a key backs up one level, as in a file system path.

Indexes inside keys are plain integers (``item[1]``); nothing in a key is evaluated.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from functools import lru_cache
from typing import Any

__all__ = ["dotdict"]

_INDEXED = re.compile(r"^([^\[\]]+)\[(-?\d+)\]$")


@lru_cache(maxsize=4096)
def _split(key: str) -> tuple[str, str | None]:
    """Split ``key`` into its first segment and the rest, resolving ``..`` back-tracking."""
    path = key
    while ".." in path:
        front, back = path.split("..", 1)
        trunc = front[: max(0, front.rfind("."))]
        path = trunc + ("." if trunc and back else "") + back
    path = path.lstrip(".")
    if not path:
        raise KeyError(f"empty key segment in {key!r}")
    first, dot, rest = path.partition(".")
    if not first:
        raise KeyError(f"empty key segment in {key!r}")
    return first, (rest if dot else None)


class dotdict(dict):  # noqa: N801 - the spec's public name
    """A dict supporting dotted keys into nested dotdicts (and lists of dotdicts)."""

    __slots__ = ()

    def __init__(self, *args: Any, **kwds: Any) -> None:
        dict.__init__(self)
        self.update(*args, **kwds)

    def update(self, *args: Any, **kwds: Any) -> None:  # type: ignore[override]
        for key, val in dict(*args, **kwds).items():
            self[key] = val

    # --- resolution -----------------------------------------------------------------
    def _get_segment(self, seg: str) -> Any:
        m = _INDEXED.match(seg)
        if m:
            return dict.__getitem__(self, m.group(1))[int(m.group(2))]
        return dict.__getitem__(self, seg)

    def __getitem__(self, key: str) -> Any:
        first, rest = _split(key)
        target = self._get_segment(first)
        if rest is None:
            return target
        if not isinstance(target, Mapping):
            raise KeyError(f"cannot get {rest!r} in {first!r}: {target!r} is not a layer")
        return target[rest]

    def __setitem__(self, key: str, value: Any) -> None:
        first, rest = _split(key)
        if rest is not None:
            m = _INDEXED.match(first)
            if m:
                target = dict.__getitem__(self, m.group(1))[int(m.group(2))]
            else:
                target = dict.get(self, first)
                if target is None:
                    target = dotdict()
                    dict.__setitem__(self, first, target)
            if not isinstance(target, dotdict):
                raise KeyError(f"cannot set {rest!r} in {first!r}: {target!r} is not a layer")
            target[rest] = value
            return
        if isinstance(value, Mapping) and not isinstance(value, dotdict):
            value = dotdict(value)
        m = _INDEXED.match(first)
        if m:
            dict.__getitem__(self, m.group(1))[int(m.group(2))] = value
        else:
            dict.__setitem__(self, first, value)

    def __delitem__(self, key: str) -> None:
        first, rest = _split(key)
        if rest is not None:
            del self._get_segment(first)[rest]
            return
        target = self._get_segment(first)
        if isinstance(target, dotdict) and len(target):
            raise KeyError(f"cannot del {first!r} (partial key)")
        dict.__delitem__(self, first)

    def __contains__(self, key: object) -> bool:
        try:
            self[key]  # type: ignore[index]
        except (KeyError, IndexError, TypeError):
            return False
        return True

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError as exc:
            raise AttributeError(str(exc)) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __delattr__(self, name: str) -> None:
        try:
            del self[name]
        except KeyError as exc:
            raise AttributeError(str(exc)) from None

    def __dir__(self) -> list[str]:
        return sorted(set(dir(dict)) | set(dict.keys(self)))

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        try:
            return self[key]
        except (KeyError, IndexError):
            return default

    def setdefault(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        if key not in self:
            self[key] = default
        return self[key]

    def pop(self, key: str, *default: Any) -> Any:  # type: ignore[override]
        first, rest = _split(key)
        if rest is None:
            return dict.pop(self, first, *default)
        try:
            target = self._get_segment(first)
        except (KeyError, IndexError):
            if default:
                return default[0]
            raise
        if not isinstance(target, dotdict):
            raise KeyError(f"cannot pop {rest!r} in {first!r}: {target!r} is not a layer")
        return target.pop(rest, *default)

    # --- flattened views ------------------------------------------------------------
    def items(self) -> Iterator[tuple[str, Any]]:  # type: ignore[override]
        """Yield ``(dotted_key, value)`` for every leaf value."""
        for key, val in dict.items(self):
            if isinstance(val, dotdict):
                for sub, subval in val.items():
                    yield f"{key}.{sub}", subval
            elif isinstance(val, list) and val and all(isinstance(e, dotdict) for e in val):
                for i, elem in enumerate(val):
                    for sub, subval in elem.items():
                        yield f"{key}[{i}].{sub}", subval
            else:
                yield key, val

    def keys(self) -> Iterator[str]:  # type: ignore[override]
        return (k for k, _ in self.items())

    def values(self) -> Iterator[Any]:  # type: ignore[override]
        return (v for _, v in self.items())

    __iter__ = keys  # type: ignore[assignment]

    def __repr__(self) -> str:
        return "dotdict({" + ", ".join(f"{k!r}: {v!r}" for k, v in dict.items(self)) + "})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (dotdict, (dict(dict.items(self)),))

    def copy(self) -> dotdict:  # type: ignore[override]
        return dotdict(dict.items(self))
