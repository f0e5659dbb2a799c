"""Typed access to one table of fleet.toml, and the one-line error it raises.

Every check of a fleet.toml value goes through :class:`Table`, so every problem is a
:class:`ConfigError` whose message is one line naming the file, the table (``fleet``,
``device[2]``) and the key.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A problem in fleet.toml; ``str()`` is one line: ``file: table: key 'k': what``."""

    def __init__(self, source: str, table: str, key: str | None, message: str) -> None:
        self.source, self.table, self.key, self.message = source, table, key, message
        where = f"{source}: {table}" + (f": key {key!r}" if key is not None else "")
        super().__init__(f"{where}: {message}")


class Table:
    """One TOML table (``data``) named ``name`` in file ``src``; keys outside ``allowed`` are
    refused at once, naming the key and listing the allowed ones."""

    def __init__(self, src: str, name: str, data: dict[str, Any], allowed: Iterable[str]) -> None:
        self.src, self.name, self.data = src, name, data
        allowed = set(allowed)
        for key in data:
            if key not in allowed:
                self.fail(key, f"unknown key (allowed: {', '.join(sorted(allowed))})")

    def fail(self, key: str | None, message: str) -> None:
        raise ConfigError(self.src, self.name, key, message)

    def checked(self, key: str, check: Callable[[], T]) -> T:
        """``check()``, its ValueError (one line) reported against ``key``."""
        try:
            return check()
        except ValueError as exc:
            self.fail(key, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            raise  # unreachable: fail() raises

    def get(self, key: str, kinds: type | tuple[type, ...], default: Any = None, what: str = "") -> Any:
        if key not in self.data:
            return default
        value = self.data[key]
        kinds = kinds if isinstance(kinds, tuple) else (kinds,)
        if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
            self.fail(key, f"must be {what or ' or '.join(k.__name__ for k in kinds)}, got {value!r}")
        return value

    def positive(self, key: str, default: Any, kinds: tuple[type, ...] = (int,), zero: bool = False) -> Any:
        value = self.get(key, kinds, default, what="a number" if float in kinds else "an integer")
        if isinstance(value, float) and not math.isfinite(value):
            self.fail(key, f"must be a finite number, got {value!r}")
        if value < 0 or (value == 0 and not zero):
            self.fail(key, f"must be {'>= 0' if zero else '> 0'}, got {value!r}")
        return value

    def choice(self, key: str, choices: Iterable[str], default: str) -> str:
        choices = tuple(choices)
        value = self.get(key, str, default, what="a string")
        if value not in choices:
            self.fail(key, f"must be one of {', '.join(choices)}, got {value!r}")
        return value

    def strings(self, key: str) -> tuple[str, ...] | None:
        value = self.get(key, (list, str), None, what="a string or a list of strings")
        if value is None:
            return None
        value = [value] if isinstance(value, str) else value
        if not all(isinstance(v, str) for v in value):
            self.fail(key, "must be a list of strings")
        return tuple(value)

    def specs(self, key: str, parse: Callable[[str], T], needed: str) -> tuple[tuple[str, T], ...]:
        """A non-empty list of spec strings (``needed`` says what when empty), each parsed by
        ``parse``: (text, parsed) pairs; the first ValueError names the key."""
        texts = self.strings(key)
        if not texts:
            self.fail(key, needed)
        return tuple((text, self.checked(key, lambda text=text: parse(text))) for text in texts or ())
