"""``Attribute``: a named, typed value of a simulated device, the hook users subclass (spec
2.1.3).  The device model (``model``) and the standard CIP objects (``objects``) both build
on it, so it lives below them both; so does ``parse_access``, the External Access of tags
(``model``) and structure members (``udt``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from cpppo.enip.codec.cip import ServiceError, Status
from cpppo.enip.codec.types import TYPES, CIPType

__all__ = ["ACCESS", "Attribute", "parse_access"]

#: Logix External Access (and Constant), as tag specs, L5X and tag CSV exports spell them
ACCESS = {"rw": "rw", "readwrite": "rw", "ro": "ro", "readonly": "ro", "const": "ro", "constant": "ro",
          "none": "none"}


def parse_access(text: str) -> str:
    """``"Read Only"`` / ``"ro"`` / ``"constant"`` -> "ro", ``"Read/Write"`` / ``"rw"`` -> "rw",
    ``"None"`` -> "none"; ValueError for anything else."""
    key = "".join(c for c in text.casefold() if c.isalpha())
    if key not in ACCESS:
        raise ValueError(f"unknown external access {text!r} (rw, ro or none)")
    return ACCESS[key]

# One lock for every attribute of the process: reads and writes are short and never wait on
# another thread while holding it, and a lock per attribute costs a fleet of 100,000 devices
# millions of locks.  A member view shares its tag's lock (a read-modify-write excludes both).
_LOCK = threading.RLock()


class Attribute:
    """A named, typed value: a scalar, or an array of ``length`` elements.

    ``attr[i]`` is one element; ``attr[a:b]`` a list.  Override ``__getitem__`` /
    ``__setitem__`` to intercept I/O (call ``super()`` to reach the stored values).
    ``driver`` (a :class:`cpppo.behaviour.Driver`) produces the values at each read;
    ``journal`` (a :class:`cpppo.behaviour.Journal`) records each write.
    """

    # slots: a device carries dozens of attributes (its tags and its standard objects), a
    # fleet of 100,000 devices millions; subclasses may add a __dict__ of their own
    __slots__ = ("_driving", "_lock", "array", "driver", "error", "journal", "mask", "members", "name",
                 "parser", "plant", "value")

    def __init__(self, name: str, type_cls: CIPType | str, default: Any = None, error: int = 0x00,
                 mask: int = 0, length: int | None = None) -> None:
        self.name = name
        self.parser: CIPType = TYPES[type_cls.upper()] if isinstance(type_cls, str) else type_cls
        self.error = error  # a nonzero CIP status returned for every access (simulated faults)
        self.mask = mask  # nonzero: not settable via Set Attribute
        if isinstance(default, (list, tuple)):
            values = list(default)
            self.array = True
        else:
            count = 1 if length is None else length
            self.array = length is not None
            values = [self.parser.default() if default is None else default] * count
        self.value: list[Any] = values
        self.driver: Any = None
        self.journal: Any = None
        self.plant: Any = None  # the device's Plant, told of each write (values following this one move)
        self.members: Any = None  # a structure's driven members: [(udt.MemberView, Driver)], read live
        self._driving = False
        self._lock = _LOCK

    def __len__(self) -> int:
        return len(self.value)

    def __repr__(self) -> str:
        shape = f"[{len(self)}]" if self.array else ""
        return f"<{type(self).__name__} {self.name}={self.parser.name}{shape}>"

    def _validate_key(self, key: int | slice) -> type:
        """``slice`` or ``int``: the kind of key, after checking it is within the value."""
        if isinstance(key, slice):
            size = len(self.value)
            start = 0 if key.start is None else key.start
            stop = size if key.stop is None else key.stop
            if key.step not in (None, 1) or not 0 <= start <= stop <= size:
                raise IndexError(f"{self.name}[{key.start}:{key.stop}] is outside 0-{size}")
            return slice
        if not isinstance(key, int) or not 0 <= key < len(self.value):
            raise IndexError(f"{self.name}[{key}] is outside 0-{len(self.value) - 1}")
        return int

    def __getitem__(self, key: int | slice) -> Any:
        kind = self._validate_key(key)
        with self._lock:
            if self.members is not None:
                self._drive_members()
            driver = self.driver
            if driver is not None and not driver.plant.frozen:
                if kind is slice:
                    start, stop, _ = key.indices(len(self.value))  # type: ignore[union-attr]
                    values = driver.values(start, stop)
                    self.value[start:stop] = values
                    return values
                value = self.value[key] = driver.values(key, key + 1)[0]  # type: ignore[operator]
                return value
            return self.value[key]

    def _drive_members(self) -> None:
        """Store the driven members' values of now (lock held; the expressions of followers,
        which read this tag, see the stored values: no recursion)."""
        if self._driving or self.members[0][1].plant.frozen:
            return
        self._driving = True
        try:
            for view, driver in self.members:
                view.store(driver.values(0, driver.length))
        finally:
            self._driving = False

    def drive(self, view: Any, driver: Any) -> None:
        """Produce member ``view`` (of this structure tag) by ``driver`` from now on: those
        without inputs first, so that a member following another sees its value of now."""
        self.members = sorted([*(self.members or ()), (view, driver)], key=lambda pair: bool(pair[1].inputs))

    def __setitem__(self, key: int | slice, value: Any) -> None:
        kind = self._validate_key(key)
        if self.driver is not None:
            raise ServiceError(Status.PRIVILEGE_VIOLATION, (), f"{self.name} is driven by its behaviour "
                               f"({self.driver.kind}); it cannot be written")
        with self._lock:
            if kind is slice:
                values = list(value)
                if len(values) != len(range(*key.indices(len(self.value)))):  # type: ignore[union-attr]
                    raise ValueError(f"{self.name}: {len(values)} values for {key}")
                self.value[key] = values
                start = key.indices(len(self.value))[0]  # type: ignore[union-attr]
            else:
                values, start = [value], key
                self.value[key] = value
            if self.journal is not None:
                self.journal.record(self.name, start, values)
            if self.plant is not None:
                self.plant.version += 1

    def modify(self, key: int, change: Callable[[Any], Any]) -> Any:
        """Replace element ``key`` by ``change(current)`` under the lock, so that no other
        access comes between the read and the write (Read Modify Write Tag); returns the
        new value.  Goes through ``__getitem__`` / ``__setitem__``, so subclass hooks see it."""
        with self._lock:
            value = change(self[key])
            self[key] = value
            return value
