"""The behaviour grammar: ``kind(arg, name=value, ...)``, parsed with ``ast`` and built into
a ``Driver``.

    sine(amplitude=10, period=60, offset=50, phase=n/8, noise=0.5)
    counter(rate=2, high=999)
    steps(values=['IDLE', 'RUN', 'STOP'], dwell=30)
    walk(step=0.5, low=10, high=20, seed=n)
    expr(Pump_Run * 120 + noise(2))
    lag(Speed_SP, tau=5)
    integral(Inflow - Outflow, low=0, high=1000)
    playback('recorded.hst', name='Level', speed=10)

Parameters are expressions of ``n`` (the device's number in its group) and ``i`` (the
element of an array), so that devices and elements do not move in lockstep; the first
argument of ``expr``, ``lag`` and ``integral`` is an expression over the device's other
values, evaluated at each read.  Every kind also takes ``noise`` (standard deviation),
``spike`` (height; negative for a dip), ``spike_rate`` (per second), ``spike_width``
(seconds), ``update`` (seconds between changes: default 0.1, 0 for every read; a walk's
step interval, default 1) and ``seed``.
"""

from __future__ import annotations

import ast
import functools
import math
import threading
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cpppo.behaviour import shapes as sh
from cpppo.behaviour.driver import Driver, Plant, ValueType
from cpppo.behaviour.playback import Playback, load_series

__all__ = ["KINDS", "BehaviourSpec", "build_driver", "check_devices", "parse_behaviour"]

COMMON = ("noise", "spike", "spike_rate", "spike_width", "update", "seed")
NAMES = frozenset({"t", "time", "n", "i", "pi", "e", "true", "false", "True", "False"})


@dataclass(frozen=True)
class Kind:
    positional: tuple[str, ...]
    params: tuple[str, ...]
    dynamic: str | None = None  # the parameter that is an expression over other values


KINDS: dict[str, Kind] = {
    "sine": Kind(("amplitude", "period"), ("amplitude", "period", "offset", "phase")),
    "ramp": Kind(("amplitude", "period"), ("amplitude", "period", "offset", "phase")),
    "triangle": Kind(("amplitude", "period"), ("amplitude", "period", "offset", "phase")),
    "square": Kind(("amplitude", "period"), ("amplitude", "period", "offset", "phase", "duty")),
    "steps": Kind(("values", "dwell"), ("values", "dwell", "phase", "smooth")),
    "counter": Kind(("rate",), ("rate", "start", "low", "high")),
    "walk": Kind(("step",), ("step", "low", "high", "start")),
    "timestamp": Kind((), ()),
    "uptime": Kind((), ()),
    "expr": Kind(("expression",), ("expression",), dynamic="expression"),
    "lag": Kind(("input", "tau"), ("input", "tau", "start"), dynamic="input"),
    "integral": Kind(("input",), ("input", "low", "high", "start"), dynamic="input"),
    "playback": Kind(("file",), ("file", "name", "element", "speed", "loop", "interpolate")),
}
ALIASES = {"sawtooth": "ramp", "toggle": "square", "random": "walk", "sequence": "steps"}
POSITIVE = {"period", "dwell", "tau", "speed", "spike_width"}


@dataclass(frozen=True)
class BehaviourSpec:
    """A parsed behaviour: its kind, and each parameter's expression (unevaluated)."""

    text: str
    kind: str
    params: Mapping[str, ast.expr]

    @functools.cached_property
    def inputs(self) -> frozenset[str]:
        """The names of other values the dynamic parameter reads (tags or registers)."""
        dynamic = KINDS[self.kind].dynamic
        node = self.params.get(dynamic) if dynamic else None
        return _names(node) - NAMES if node is not None else frozenset()

    @functools.cached_property
    def names(self) -> Mapping[str, frozenset[str]]:
        """The names each parameter's expression reads (``n``, ``i``, other values)."""
        return {name: _names(node) for name, node in self.params.items()}

    @functools.cached_property
    def patterned(self) -> bool:
        """Whether a parameter evaluated when the value is built (not the expression read at
        each read) names ``n``: devices of a group then differ, each to be checked."""
        dynamic = KINDS[self.kind].dynamic
        return any("n" in names for name, names in self.names.items() if name != dynamic)


def _names(node: ast.AST) -> frozenset[str]:
    called = {id(n.func) for n in ast.walk(node) if isinstance(n, ast.Call)}
    return frozenset(n.id for n in ast.walk(node) if isinstance(n, ast.Name) and id(n) not in called)


@functools.lru_cache(maxsize=1024)
def parse_behaviour(text: str) -> BehaviourSpec:
    """Parse ``kind(...)``; ValueError naming what is wrong (unknown kind or parameter).
    Cached: the devices of a group share their behaviours' texts."""
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as exc:
        raise ValueError(f"behaviour {text!r}: {exc.msg}") from None
    if isinstance(tree, ast.Name):
        tree = ast.Call(func=tree, args=[], keywords=[])
    if not (isinstance(tree, ast.Call) and isinstance(tree.func, ast.Name)):
        raise ValueError(f"behaviour {text!r}: expected kind(parameter=value, ...), "
                         "e.g. sine(amplitude=10, period=60)")
    kind_name = ALIASES.get(tree.func.id, tree.func.id)
    kind = KINDS.get(kind_name)
    if kind is None:
        known = ", ".join(sorted([*KINDS, *ALIASES]))
        raise ValueError(f"unknown behaviour {tree.func.id!r} (one of {known})")
    if len(tree.args) > len(kind.positional):
        raise ValueError(f"behaviour {text!r}: {kind_name} takes at most {len(kind.positional)} "
                         "positional parameters")
    params: dict[str, ast.expr] = dict(zip(kind.positional, tree.args, strict=False))
    for keyword in tree.keywords:
        if keyword.arg not in (*kind.params, *COMMON):
            raise ValueError(f"behaviour {text!r}: {kind_name} has no parameter {keyword.arg!r} "
                             f"(one of {', '.join((*kind.params, *COMMON))})")
        if keyword.arg in params:
            raise ValueError(f"behaviour {text!r}: {keyword.arg} given twice")
        params[keyword.arg] = keyword.value
    if kind.dynamic and kind.dynamic not in params:
        raise ValueError(f"behaviour {text!r}: {kind_name} needs its {kind.dynamic}")
    if kind_name == "playback" and "file" not in params:
        raise ValueError(f"behaviour {text!r}: playback needs a file")
    return BehaviourSpec(text.strip(), kind_name, params)


_LOCAL = threading.local()


def _evaluator() -> Any:
    """The evaluator of parameters, one per thread (its ``names`` are set at each use)."""
    evaluator = getattr(_LOCAL, "evaluator", None)
    if evaluator is None:
        import simpleeval

        evaluator = simpleeval.EvalWithCompoundTypes(names={}, functions=dict(sh.FUNCTIONS))
        _LOCAL.evaluator = evaluator
    return evaluator


def _static(spec: BehaviourSpec, name: str, node: ast.expr, constants: Mapping[str, Any],
            evaluator: Any = None) -> Any:
    evaluator = evaluator or _evaluator()
    evaluator.names = constants
    try:
        value = evaluator.eval(spec.text, previously_parsed=node)
    except Exception as exc:
        raise ValueError(f"behaviour {spec.text!r}: {name}: {exc}") from None
    if name in POSITIVE or (name in COMMON and name not in ("seed", "spike")):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or (
                value <= 0 if name in POSITIVE else value < 0):
            need = "a number > 0" if name in POSITIVE else "a number >= 0"
            raise ValueError(f"behaviour {spec.text!r}: {name} must be {need}, not {value!r}")
    elif name in ("values",):
        if not isinstance(value, (list, tuple)) or not value:
            raise ValueError(f"behaviour {spec.text!r}: values must be a non-empty list")
    elif name in ("file", "name"):
        if not isinstance(value, str):
            raise ValueError(f"behaviour {spec.text!r}: {name} must be text (quoted)")
    elif name not in ("loop", "interpolate", "smooth", "seed") and (
            isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)):
        raise ValueError(f"behaviour {spec.text!r}: {name} must be a number, not {value!r}")
    return value


def _counter_bounds(vtype: ValueType, params: dict[str, Any]) -> None:
    if "high" in params:
        params.setdefault("low", 0)
    elif vtype.kind == "int":
        params.setdefault("low", vtype.low)
        params["high"] = vtype.high
    elif vtype.kind == "bool":
        params.setdefault("low", 0)
        params["high"] = 1
    else:
        params.setdefault("low", 0)
        params["high"] = 2 ** 24 - 1
    if params["high"] < params["low"]:
        raise ValueError(f"counter high {params['high']} is below low {params['low']}")


def _shape(spec: BehaviourSpec, vtype: ValueType, constants: Mapping[str, Any], known: Collection[str],
           base: Callable[[str], str], what: str, evaluator: Any = None) -> tuple[sh.Shape, dict[str, Any]]:
    kind = KINDS[spec.kind]
    evaluator = evaluator or _evaluator()
    params = {name: _static(spec, name, node, constants, evaluator) for name, node in spec.params.items()
              if name != kind.dynamic}
    common = {name: params.pop(name) for name in COMMON if name in params}
    if kind.dynamic:
        source = ast.unparse(spec.params[kind.dynamic])
        unknown = sorted(name for name in spec.inputs if name not in known)
        if unknown:
            raise ValueError(f"behaviour {spec.text!r}: unknown {what} {unknown[0]!r}")
        expression = sh.Expression(source, spec.inputs, constants)
        if spec.kind == "expr":
            return expression, common
        params["input"] = expression
    if spec.kind == "counter":
        _counter_bounds(vtype, params)
    if spec.kind == "walk" and params.get("low", 0) > params.get("high", 100):
        raise ValueError(f"behaviour {spec.text!r}: low is above high")
    if spec.kind == "walk":
        params["update"] = common.pop("update", 1.0)
        if params["update"] <= 0:
            raise ValueError(f"behaviour {spec.text!r}: a walk's update must be > 0")
        params["seed"] = common.get("seed")
    if spec.kind == "playback":
        file, name = base(params.pop("file")), params.pop("name", None)
        series = load_series(file, name, int(params.pop("element", 0)))
        text = next((value for _, value in series if isinstance(value, str)), None)
        if text is not None and vtype.kind != "str":
            raise ValueError(f"playback file {file}: {text!r} is text, but the value is {vtype.name}")
        shape: sh.Shape = Playback(series, **params)
    else:
        shape = {"sine": sh.Sine, "ramp": sh.Ramp, "triangle": sh.Triangle, "square": sh.Square,
                 "steps": sh.Steps, "counter": sh.Counter, "walk": sh.Walk, "timestamp": sh.Timestamp,
                 "uptime": sh.Uptime, "lag": sh.Lag, "integral": sh.Integral}[spec.kind](**params)
    if spec.kind == "steps" and vtype.kind != "str" and any(isinstance(v, str) for v in shape.values):
        raise ValueError(f"behaviour {spec.text!r}: steps values are text, but the value is {vtype.name}")
    vtype.check(shape.bounds(), f"behaviour {spec.text!r}")
    return shape, common


def build_driver(spec: BehaviourSpec | str, plant: Plant, vtype: ValueType, length: int = 1, *, n: int = 0,
                 known: Collection[str] = (), base: Callable[[str], str] = str, what: str = "tag") -> Driver:
    """The Driver of ``spec`` for a value of type ``vtype`` and ``length`` elements on device
    number ``n``; ``known``: the names expressions may read; ``base``: maps a playback file
    name to its path.  ValueError naming the problem."""
    if isinstance(spec, str):
        spec = parse_behaviour(spec)
    evaluator = _evaluator()
    built = [_shape(spec, vtype, _constants(n, i), known, base, what, evaluator)
             for i in _elements(spec, length)]
    common = built[0][1]
    driver = Driver(plant, [shape for shape, _ in built], vtype, length, kind=spec.kind, **common)
    driver.spec = spec
    return driver


def _constants(n: int, i: int) -> dict[str, Any]:
    return {"n": n, "i": i, "pi": math.pi, "e": math.e, "true": True, "false": False}


def _elements(spec: BehaviourSpec, length: int) -> range:
    """The elements that need a shape of their own: all when a parameter names ``i``."""
    return range(length) if any("i" in names for names in spec.names.values()) else range(1)


def check_devices(text: str, vtype: ValueType, length: int, ns: Iterable[int], *,
                  base: Callable[[str], str] = str, what: str = "tag") -> None:
    """ValueError naming the first device number of ``ns`` on which behaviour ``text`` does not
    fit ``vtype`` (a parameter out of range), when its parameters are patterned on ``n``;
    otherwise every device builds it alike and there is nothing to check.  Cheaper than
    building each device: only the shapes are built (a check of a whole group at validate)."""
    spec = parse_behaviour(text)
    if not spec.patterned:
        return
    evaluator = _evaluator()
    elements = _elements(spec, length)
    for n in ns:
        try:
            for i in elements:
                _shape(spec, vtype, _constants(n, i), spec.inputs, base, what, evaluator)
        except ValueError as exc:
            raise ValueError(f"{exc} (on device n = {n})") from None
