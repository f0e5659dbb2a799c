"""Drivers and plants: what turns shapes into typed values of a tag or register range.

A ``Driver`` produces the values of one tag (or register range) at a moment: one shape per
element (or one for all), noise and spikes added, sampled every ``update`` seconds, and
coerced to the value's type (a ``ValueType``: REAL floats, INT integers clamped, BOOL
toggles, STRING text).  A ``Plant`` holds a device's clock, its drivers and the ``frozen``
switch, resolves the names expressions read and refuses dependency cycles.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cpppo.behaviour.clock import Clock, SystemClock
from cpppo.behaviour.shapes import Moment, Shape, Timestamp

__all__ = ["DEFAULT_UPDATE", "Driver", "Plant", "ValueType"]

DEFAULT_UPDATE = 0.1  # seconds between recomputations of a value (a controller's update rate)


@dataclass(frozen=True)
class ValueType:
    """The type of the values a driver produces: ``kind`` float, int, bool or str."""

    name: str
    kind: str
    low: float = -math.inf
    high: float = math.inf
    capacity: int = 255  # characters, for str

    @property
    def numeric(self) -> bool:
        return self.kind in ("int", "float")

    def coerce(self, raw: Any) -> Any:
        kind = self.kind
        if kind == "str":
            text = raw if isinstance(raw, str) else f"{raw:g}" if isinstance(raw, float) else str(raw)
            return text[:self.capacity]
        if isinstance(raw, str):
            raise ValueError(f"{raw!r} is text, not a {self.name}")
        if kind == "bool":
            return bool(raw >= 0.5)
        if raw != raw:  # NaN
            raw = 0.0
        if raw < self.low:
            raw = self.low
        elif raw > self.high:
            raw = self.high
        return float(raw) if kind == "float" else round(raw)

    def check(self, bounds: tuple[float, float] | None, what: str) -> None:
        """ValueError if ``bounds`` (a shape's lowest and highest value) do not fit the type."""
        if bounds is None or not self.numeric:
            return
        low, high = bounds
        if low < self.low or high > self.high:
            raise ValueError(f"{what} reaches {low:g}..{high:g}, outside {self.name}'s "
                             f"{self.low:g}..{self.high:g}")


def _hash01(*numbers: int) -> float:
    """A repeatable uniform 0 <= x < 1 from integers (splitmix64), for spikes."""
    x = 0x9E3779B97F4A7C15
    for number in numbers:
        x = (x ^ (number & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        x = (x ^ (x >> 31)) * 0x94D049BB133111EB & 0xFFFFFFFFFFFFFFFF
    return (x >> 11) / float(1 << 53)


class Driver:
    """The values of one tag or register range: ``values(start, stop)`` at the plant's now.

    ``shapes``: one per element, or a single shape for every element.  ``noise``: the
    standard deviation of gaussian noise added to each read; ``spike`` / ``spike_rate``: a
    spike (negative: a dip) of that height lasting ``spike_width`` seconds, ``spike_rate``
    times a second on average; ``update``: the value is recomputed at most every ``update``
    seconds (held between; 0: at every read).  The default, ``DEFAULT_UPDATE``, is a
    controller's analog update rate: a fleet polled thousands of times a second computes
    each value ten times a second, not at every read."""

    def __init__(self, plant: Plant, shapes: Sequence[Shape], vtype: ValueType, length: int, *,
                 kind: str = "", noise: float = 0.0, spike: float = 0.0, spike_rate: float = 0.0,
                 spike_width: float = 1.0, update: float = DEFAULT_UPDATE, seed: int | None = None) -> None:
        self.plant, self.shapes, self.vtype, self.length, self.kind = plant, list(shapes), vtype, length, kind
        self.noise, self.spike, self.spike_rate, self.spike_width = noise, spike, spike_rate, spike_width
        self.update, self.seed = update, seed if seed is not None else 0
        self.spec: Any = None  # the BehaviourSpec it was built from (cpppo.behaviour.spec.build_driver)
        self.rng = random.Random(seed)
        self.inputs = frozenset().union(*(s.inputs for s in self.shapes))
        self._held: tuple[float, float, int, list[Any], bool, int] | None = None
        self._text = isinstance(self.shapes[0], Timestamp) and vtype.kind == "str"

    def _raw(self, shape: Shape, moment: Moment, element: int) -> Any:
        raw = shape.value(moment)
        if isinstance(raw, str) or (isinstance(raw, bool) and not self.vtype.numeric):
            return raw
        if self._text:
            return datetime.fromtimestamp(raw, UTC).isoformat(timespec="milliseconds")
        if self.noise:
            raw += moment.rng.gauss(0.0, self.noise)
        if self.spike_rate:
            bucket = int(moment.elapsed // self.spike_width)
            if _hash01(self.seed, bucket, element) < self.spike_rate * self.spike_width:
                raw += self.spike
        return raw

    def _compute(self, moment: Moment, start: int, stop: int) -> list[Any]:
        coerce = self.vtype.coerce
        if len(self.shapes) > 1:
            return [coerce(self._raw(self.shapes[i], moment, i)) for i in range(start, stop)]
        if self.noise or self.spike_rate:
            return [coerce(self._raw(self.shapes[0], moment, i)) for i in range(start, stop)]
        return [coerce(self._raw(self.shapes[0], moment, start))] * (stop - start)

    def values(self, start: int = 0, stop: int | None = None) -> list[Any]:
        """The typed values of elements ``start..stop-1`` now.  With ``update``, values are
        computed once per update period (and again after a client write to the device, which
        may have changed what they follow), element by element as they are first read.
        Called with the owner's lock held (the attribute's, the Modbus device's)."""
        if stop is None:
            stop = self.length
        held = self.current()  # the fast path: this period's values, already computed
        if held is not None:
            part = held[3][start:stop]
            if held[4] or None not in part:
                return part
        return self._refresh(start, stop)

    def current(self) -> tuple | None:
        """The values held for the current update period (a new tuple each period, or after a
        client write), or None when they must be computed again."""
        held = self._held
        if held is None or held[2] != self.plant.version:
            return None
        return held if held[0] <= self.plant.clock.elapsed() < held[1] else None

    def _refresh(self, start: int, stop: int) -> list[Any]:
        clock, update = self.plant.clock, self.update
        if not update:
            moment = Moment(clock.elapsed(), clock.wall(), self.plant.names, self.rng)
            return self._compute(moment, start, stop)
        bucket = math.floor(clock.elapsed() / update + 1e-9)
        version = self.plant.version
        held = self._held
        if held is not None and held[5] == bucket and held[2] == version:
            cache = held[3]
        else:
            cache = [None] * self.length
        wall = math.floor(clock.wall() / update + 1e-9) * update
        moment = Moment(bucket * update, wall, self.plant.names, self.rng)
        complete = len(self.shapes) == 1 and not (self.noise or self.spike_rate)
        if complete:
            cache[:] = self._compute(moment, 0, self.length)
        else:
            for i in range(start, stop):
                if cache[i] is None:
                    cache[i] = self._compute(moment, i, i + 1)[0]
        # (from, until, version, values, all computed, period number): until the period ends
        until = (bucket + 1 - 1e-9) * update
        self._held = ((bucket - 1e-9) * update, until, version, cache, complete, bucket)
        return cache[start:stop]


class _PlantNames(Mapping[str, Any]):
    def __init__(self, plant: Plant) -> None:
        self.plant = plant

    def __getitem__(self, name: str) -> Any:
        return self.plant.resolve(name)

    def __iter__(self):  # pragma: no cover
        return iter(())

    def __len__(self) -> int:  # pragma: no cover
        return 0


class Plant:
    """A device's behaviours: its clock, drivers by name and the ``frozen`` switch.

    ``resolve``: a function from a name in an expression to the current value (the
    integration sets it: the ENIP model reads a tag, the Modbus device a register).
    ``owner``: the device, whose ``faults`` (a :class:`cpppo.faults.FaultState`, which the
    fleet's worker may replace after building the device) is consulted at each read: values
    stop moving while a ``freeze`` fault is active, as when ``freeze()`` is called."""

    def __init__(self, clock: Clock | None = None, owner: Any = None) -> None:
        self.clock = clock or SystemClock()
        self._frozen = False
        self.owner = owner
        self.version = 0  # counts client writes to the device: held values are recomputed after one
        self.drivers: dict[str, Driver] = {}
        self.names = _PlantNames(self)
        self.resolve: Callable[[str], Any] = self._unresolved

    @staticmethod
    def _unresolved(name: str) -> Any:
        raise KeyError(name)

    def __bool__(self) -> bool:
        return bool(self.drivers)

    @property
    def frozen(self) -> bool:
        """Whether values hold still now (``freeze()``, or an active freeze fault)."""
        if self._frozen:
            return True
        try:
            faults = self.owner.faults
        except AttributeError:  # no owner, or one without a fault slot
            return False
        return faults is not None and faults.active is not None and bool(faults.frozen())

    def freeze(self, frozen: bool = True) -> None:
        """Stop (or restart) every value moving: reads return the last values produced."""
        self._frozen = frozen

    def add(self, name: str, driver: Driver) -> None:
        self.drivers[name] = driver

    def check_cycles(self, key: Callable[[str], str] = str) -> None:
        """ValueError naming the cycle if driven values depend on one another in a loop."""
        canon = {key(name): name for name in self.drivers}
        graph = {name: {canon.get(key(i), i) for i in d.inputs} for name, d in self.drivers.items()}
        state: dict[str, int] = {}

        def visit(node: str, path: list[str]) -> None:
            state[node] = 1
            for nxt in sorted(graph.get(node, ())):
                if state.get(nxt) == 1:
                    cycle = [*path[path.index(nxt):], nxt] if nxt in path else [node, nxt]
                    raise ValueError(f"expressions form a cycle: {' -> '.join(cycle)}")
                if nxt not in state and nxt in graph:
                    visit(nxt, [*path, nxt])
            state[node] = 2

        for node in sorted(graph):
            if node not in state:
                visit(node, [node])
