"""The shapes a value can follow: one element's source of raw values at a moment.

Pure functions of time (``Sine``, ``Ramp``, ``Triangle``, ``Square``, ``Steps``,
``Counter``, ``Timestamp``, ``Uptime``) are computed when read and hold no state.  Stateful
ones (``Walk``, ``Lag``, ``Integral``) step lazily: a read advances them from their last
read to now in one cheap step (a walk in at most ``MAX_STEPS`` steps), so an idle plant
costs nothing.  Linked shapes (``Expression``, ``Lag``, ``Integral``) read other values of
the same device through ``Moment.names``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Counter", "Expression", "Integral", "Lag", "Moment", "Ramp", "Shape", "Sine", "Square",
           "Steps", "Timestamp", "Triangle", "Uptime", "Walk"]

MAX_STEPS = 1000  # a random walk read after a long idle catches up in at most this many steps


@dataclass
class Moment:
    """One read: the times, the device's other values (``names[tag]``), and a random source."""

    elapsed: float
    wall: float
    names: Mapping[str, Any] = field(default_factory=dict)
    rng: random.Random = field(default_factory=random.Random)


class Shape:
    """The interface.  ``inputs``: names of other values the shape reads."""

    inputs: frozenset[str] = frozenset()

    def value(self, moment: Moment) -> Any:  # pragma: no cover - interface
        raise NotImplementedError

    def bounds(self) -> tuple[float, float] | None:
        """The (lowest, highest) raw value the shape produces, if known and numeric."""
        return None


def _phase(wall: float, period: float, phase: float) -> float:
    """The fraction 0 <= f < 1 of the period at ``wall`` (``phase`` is a fraction too)."""
    return (wall / period + phase) % 1.0


@dataclass
class Sine(Shape):
    amplitude: float = 1.0
    period: float = 60.0
    offset: float = 0.0
    phase: float = 0.0

    def value(self, moment: Moment) -> float:
        turn = _phase(moment.wall, self.period, self.phase)
        return self.offset + self.amplitude * math.sin(2 * math.pi * turn)

    def bounds(self) -> tuple[float, float]:
        a = abs(self.amplitude)
        return self.offset - a, self.offset + a


@dataclass
class Ramp(Shape):
    """A sawtooth: from ``offset`` up to ``offset + amplitude`` over each period."""

    amplitude: float = 1.0
    period: float = 60.0
    offset: float = 0.0
    phase: float = 0.0

    def value(self, moment: Moment) -> float:
        return self.offset + self.amplitude * _phase(moment.wall, self.period, self.phase)

    def bounds(self) -> tuple[float, float]:
        return tuple(sorted((self.offset, self.offset + self.amplitude)))  # type: ignore[return-value]


@dataclass
class Triangle(Ramp):
    """Up from ``offset`` to ``offset + amplitude`` in half a period, and down again."""

    def value(self, moment: Moment) -> float:
        f = _phase(moment.wall, self.period, self.phase)
        return self.offset + self.amplitude * (2 * f if f < 0.5 else 2 - 2 * f)


@dataclass
class Square(Ramp):
    """``offset + amplitude`` for the first ``duty`` of each period, then ``offset``."""

    duty: float = 0.5

    def value(self, moment: Moment) -> float:
        high = _phase(moment.wall, self.period, self.phase) < self.duty
        return self.offset + self.amplitude if high else self.offset


@dataclass
class Steps(Shape):
    """Each of ``values`` in turn for ``dwell`` seconds, looping; ``smooth`` interpolates
    linearly from one value to the next (a daily load curve: 24 values, dwell 3600)."""

    values: Sequence[Any] = (0,)
    dwell: float = 1.0
    phase: float = 0.0
    smooth: bool = False

    def value(self, moment: Moment) -> Any:
        count = len(self.values)
        position = (moment.wall / self.dwell + self.phase * count) % count
        index = int(position) % count
        here = self.values[index]
        if not self.smooth or isinstance(here, str):
            return here
        after = self.values[(index + 1) % len(self.values)]
        return here + (after - here) * (position - int(position))

    def bounds(self) -> tuple[float, float] | None:
        if any(isinstance(v, str) for v in self.values):
            return None
        return min(self.values), max(self.values)


@dataclass
class Counter(Shape):
    """``start + rate * elapsed`` whole counts, wrapping from ``high`` to ``low``."""

    rate: float = 1.0
    start: float = 0.0
    low: float = 0.0
    high: float = 65535.0

    def value(self, moment: Moment) -> int:
        count = int(self.start + math.floor(self.rate * moment.elapsed))
        span = int(self.high - self.low + 1)
        return int(self.low + (count - self.low) % span)

    def bounds(self) -> tuple[float, float]:
        return self.low, self.high


@dataclass
class Timestamp(Shape):
    """Seconds since the epoch (UTC): whole seconds in an integer, text in a string."""

    def value(self, moment: Moment) -> float:
        return moment.wall


@dataclass
class Uptime(Shape):
    """Seconds since the device started."""

    def value(self, moment: Moment) -> float:
        return moment.elapsed


@dataclass
class Walk(Shape):
    """A bounded random walk: every ``update`` seconds a step uniform in +-``step``,
    reflected at ``low`` / ``high``; ``seed`` makes it repeatable."""

    step: float = 1.0
    low: float = 0.0
    high: float = 100.0
    start: float | None = None
    update: float = 1.0
    seed: int | None = None
    _value: float = field(init=False, default=0.0)
    _last: float = field(init=False, default=0.0)
    _rng: random.Random = field(init=False, repr=False, default_factory=random.Random)

    def __post_init__(self) -> None:
        self._value = (self.low + self.high) / 2 if self.start is None else self.start
        self._rng = random.Random(self.seed)

    def value(self, moment: Moment) -> float:
        steps = int((moment.elapsed - self._last) // self.update)
        if steps > 0:
            self._last += steps * self.update
            value, low, high, uniform = self._value, self.low, self.high, self._rng.uniform
            for _ in range(min(steps, MAX_STEPS)):
                value += uniform(-self.step, self.step)
                if value > high:
                    value = max(low, 2 * high - value)
                elif value < low:
                    value = min(high, 2 * low - value)
            self._value = value
        return self._value

    def bounds(self) -> tuple[float, float]:
        return self.low, self.high


class Expression(Shape):
    """An expression over the device's other values (``Pump_Run * 120 + noise(2)``),
    evaluated with ``simpleeval`` (never ``eval``).  Names: the device's values, ``t``
    (elapsed seconds), ``time`` (epoch seconds), ``n``, ``i``, ``pi``, ``e``; functions: the
    math ones, ``noise(sd)``, ``uniform(a, b)``, ``clamp(x, lo, hi)``."""

    def __init__(self, source: str, inputs: frozenset[str], constants: Mapping[str, Any]) -> None:
        import simpleeval

        self.source = source
        self.inputs = inputs
        self._moment: Moment | None = None
        self._evaluator = simpleeval.EvalWithCompoundTypes(functions=dict(FUNCTIONS),
                                                           names=_Names(self, constants))
        self._evaluator.functions.update(noise=self._noise, uniform=self._uniform)
        self._parsed = self._evaluator.parse(source)

    def _noise(self, sd: float = 1.0) -> float:
        return self._moment.rng.gauss(0.0, sd) if self._moment else 0.0

    def _uniform(self, a: float = 0.0, b: float = 1.0) -> float:
        return self._moment.rng.uniform(a, b) if self._moment else a

    def value(self, moment: Moment) -> Any:
        self._moment = moment
        try:
            return self._evaluator.eval(self.source, previously_parsed=self._parsed)
        except ZeroDivisionError:
            return 0.0
        except Exception as exc:  # simpleeval raises many kinds; a read must still answer
            raise ValueError(f"expression {self.source!r}: {exc}") from None
        finally:
            self._moment = None


class _Names(Mapping[str, Any]):
    """The names an Expression sees at the moment it is evaluated."""

    def __init__(self, owner: Expression, constants: Mapping[str, Any]) -> None:
        self.owner, self.constants = owner, constants

    def __getitem__(self, name: str) -> Any:
        moment = self.owner._moment
        if name == "t":
            return moment.elapsed if moment else 0.0
        if name == "time":
            return moment.wall if moment else 0.0
        if name in self.constants:
            return self.constants[name]
        if moment is None:
            raise KeyError(name)
        return moment.names[name]

    def __iter__(self):  # pragma: no cover - not used by simpleeval
        return iter(self.constants)

    def __len__(self) -> int:  # pragma: no cover
        return len(self.constants)


def _clamp(x: float, lo: float, hi: float) -> float:
    return lo if x < lo else hi if x > hi else x


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "sin": math.sin, "cos": math.cos, "tan": math.tan, "exp": math.exp, "log": math.log,
    "sqrt": math.sqrt, "floor": math.floor, "ceil": math.ceil, "abs": abs, "min": min, "max": max,
    "round": round, "int": int, "float": float, "bool": bool, "clamp": _clamp,
}


@dataclass
class _Stepped(Shape):
    """A stateful shape driven by ``input`` (an Expression), stepped from its previous read."""

    input: Expression
    _value: float = field(init=False, default=0.0)
    _last: float | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self._value = self.start  # type: ignore[attr-defined]
        self.inputs = self.input.inputs

    def step(self, current: float, driven: float, seconds: float) -> float:
        raise NotImplementedError

    def value(self, moment: Moment) -> float:
        driven = float(self.input.value(moment))
        if self._last is not None and moment.elapsed > self._last:
            self._value = self.step(self._value, driven, moment.elapsed - self._last)
        self._last = moment.elapsed
        return self._value


@dataclass
class Lag(_Stepped):
    """A first-order lag: moves toward ``input`` (an Expression) with time constant ``tau``."""

    tau: float = 5.0
    start: float = 0.0

    def step(self, current: float, driven: float, seconds: float) -> float:
        return current + (driven - current) * (1.0 - math.exp(-seconds / self.tau))


@dataclass
class Integral(_Stepped):
    """The integral of ``input`` (an Expression) over elapsed time, clamped to low..high."""

    low: float = 0.0
    high: float = 100.0
    start: float = 0.0

    def step(self, current: float, driven: float, seconds: float) -> float:
        return _clamp(current + driven * seconds, self.low, self.high)

    def bounds(self) -> tuple[float, float]:
        return self.low, self.high
