"""Get/Set Attribute operations and device proxies (spec 2.1.6).

``attribute_operations`` turns ``@class/instance[/attribute]`` strings into Get Attributes
All / Get Attribute Single / Set Attribute Single operations.  ``proxy`` (a routing *Logix
controller) and ``proxy_simple`` (a non-routing device such as a MicroLogix or PowerFlex) keep
a gateway connection to a device, translate named parameters (``PARAMETERS``) to CIP
addresses and types, and deliver values converted to those types::

    via = proxy_simple(host="10.0.1.2")
    with via:
        value, = via.read(via.parameter_substitution("Product Name"))

The connection (and a List Identity, unless ``identity_default`` is given) is made by the
first ``.read`` or ``with via``; any exception while using its results closes the gateway, so
that the next access reconnects.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections import namedtuple
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from cpppo.dotdict import dotdict
from cpppo.enip.client import connector as client
from cpppo.enip.client import wire
from cpppo.enip.client.operations import CIP_TYPES, parse_operations
from cpppo.enip.codec.tcpip import decode_tcpip

__all__ = ["attribute_operations", "parameter", "proxy", "proxy_simple"]

log = logging.getLogger("enip.get")

parameter = namedtuple("parameter", ["attribute", "types", "units"])


def attribute_operations(paths: Iterable[Any], int_type: str | None = None, **kwds: Any) -> Iterator[dict]:
    """Operations for Get Attributes All (``@class/instance``), Get Attribute Single
    (``@class/instance/attribute``) and Set Attribute Single (``...=(TYPE)values``; plain
    integers are USINT bytes).  Symbolic tags pass through as Read/Write Tag."""
    for op in parse_operations(paths, int_type=int_type or "USINT", **kwds):
        path = op["path"]
        if not path or "symbolic" in path[0]:
            yield op
            continue
        if op.get("method") == "write":
            op["method"] = "set_attribute_single"
        elif "attribute" in path[-1] or len(path) > 2:
            op["method"] = "get_attribute_single"
        else:
            op["method"] = "get_attributes_all"
        yield op


def _decode_typed(raw: Sequence[int], types: Any) -> list[Any]:
    """Raw attribute bytes to values of ``types`` (one name, or a sequence of names)."""
    data = bytes(raw)
    if types is None:
        return list(data)
    if callable(types):  # a decoder of the whole reply, eg. codec.tcpip.decode_tcpip
        return types(data)
    if isinstance(types, str):
        info = CIP_TYPES.get(types.upper())
        if info is None:
            raise ValueError(f"unknown CIP type {types!r}")
        return wire.decode_values(info.code, data)
    values: list[Any] = []
    at = 0
    for name in types:
        name = name.upper()
        if name == "IPADDR":
            values.append(".".join(str(b) for b in data[at:at + 4][::-1]))
            at += 4
            continue
        info = CIP_TYPES.get(name)
        if info is None:
            raise ValueError(f"unknown CIP type {name!r}")
        if info.size is None:  # SSTRING, STRING: the codec's length-prefixed text
            try:
                (piece,) = info.split(data[at:], limit=1)
            except ValueError:  # CodecError, or no piece at all
                raise ValueError(f"reply of {len(data)} bytes ends within its {name} at offset {at} "
                                 f"(decoding {list(types)})") from None
            values.extend(info.decode(piece))
            at += len(piece)
            continue
        if at + info.size > len(data):
            raise ValueError(f"reply of {len(data)} bytes ends before its {name} at offset {at} "
                             f"(decoding {list(types)})")
        values.append(wire.decode_values(info.code, data[at:at + info.size])[0])
        at += info.size
    return values


class proxy:  # noqa: N801 - the spec's public name
    """Access a (routing) EtherNet/IP CIP device by parameter names; see the module docstring."""

    parameter = parameter
    PARAMETERS: dict[str, parameter] = dict(
        product_name=parameter("@1/1/7", "SSTRING", None),
        identity=parameter("@1/1", ["INT", "INT", "INT", "INT", "INT", "DINT", "SSTRING", "USINT"],
                           "Identity"),
        tcpip=parameter("@0xF5/1", decode_tcpip, "TCPIP"),
    )

    def __init__(self, host: str, port: int = 44818, timeout: float | None = None, depth: int | None = None,
                 multiple: int | None = None, gateway_class: Callable[..., Any] | None = None,
                 route_path: Any = None, send_path: Any = None, identity_default: Any = None,
                 dialect: Any = None, operations_hook: Callable[..., Any] | None = None,
                 **gateway_kwds: Any) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.depth = 2 if depth is None else depth
        self.multiple = 0 if multiple is None else multiple
        self.route_path, self.send_path = route_path, send_path
        self.gateway_class = client.connector if gateway_class is None else gateway_class
        self.gateway_kwds = dict(gateway_kwds, dialect=dialect) if dialect else gateway_kwds
        self.operations_hook = operations_hook
        self.gateway: Any = None
        self.lock = threading.RLock()   # held by each poll when threads share one proxy
        if isinstance(identity_default, str):
            identity_default = dotdict(product_name=identity_default)
        self.identity_default = identity_default
        self.instance: dotdict | None = identity_default

    def __str__(self) -> str:
        name = self.instance.get("product_name") if self.instance else None
        where = f"{self.gateway}[{self.gateway.session}]" if self.gateway is not None else None
        return f"{name} at {where}"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self}>"

    # --- the gateway --------------------------------------------------------------------------
    def __enter__(self) -> proxy:
        self.open_gateway()
        return self

    def __exit__(self, typ: Any, val: Any, tbk: Any) -> bool:
        if val is not None:
            self.close_gateway(exc=val)
        return False

    def open_gateway(self) -> Any:
        """Connect and register (and learn the identity), unless already open."""
        if self.gateway is None:
            self.gateway = self.gateway_class(host=self.host, port=self.port, timeout=self.timeout,
                                              **self.gateway_kwds)
            log.info("Connected to %s", self.gateway)
            if self.instance is None:
                try:
                    self.instance = self.list_identity()
                except BaseException as exc:
                    self.close_gateway(exc=exc)
                    raise
        return self.gateway

    def close_gateway(self, exc: BaseException | None = None) -> None:
        """Drop the gateway (after an error), so the next access reconnects."""
        if exc is not None:
            log.info("Closing gateway %s after: %s", self, exc)
        gateway, self.gateway = self.gateway, None
        if gateway is not None:
            gateway.close()

    def list_identity(self) -> dotdict:
        """List Identity over the open gateway: the device's identity record."""
        ident = client.identity(self.gateway, timeout=self.timeout)
        if ident is None:
            raise client.ENIPTimeout("Failed to receive any response")
        return ident

    # --- parameters ---------------------------------------------------------------------------
    @staticmethod
    def normalize(name: str) -> str:
        """'A Sensor Parameter' -> 'a_sensor_parameter'."""
        return "_".join(name.strip().lower().replace("-", " ").split())

    def parameter_substitution(self, iterable: Any, parameters: dict | None = None,
                               pass_thru: bool | None = None) -> list[tuple[str, Any, Any]]:
        """Names (with an optional '= value') to (attribute, types, units); a str is one name.
        Unknown names pass through as tags unless ``pass_thru`` is False (KeyError)."""
        parameters = self.PARAMETERS if parameters is None else parameters
        pass_thru = True if pass_thru is None else pass_thru
        items = [iterable] if isinstance(iterable, str) else list(iterable)
        out = []
        for item in items:
            if not isinstance(item, str):
                out.append(tuple(item) + (None,) * (3 - len(item)))
                continue
            name, eq, value = item.partition("=")
            par = parameters.get(self.normalize(name))
            if par is None:
                if not pass_thru:
                    raise KeyError(f"unrecognized parameter name {name.strip()!r}")
                out.append((item.strip(), None, None))
                continue
            value = value.strip()
            if eq and not value.startswith("(") and isinstance(par.types, str):
                value = f"({par.types}){value}"
            out.append((par.attribute.replace(" ", "") + (f"={value}" if eq else ""), par.types, par.units))
        return out

    # --- I/O ------------------------------------------------------------------------------------
    def _operations(self, attributes: list[tuple[str, Any, Any]]) -> list[dict]:
        ops = []
        for attribute, _types, _units in attributes:
            (op,) = attribute_operations([attribute])
            ops.append(op)
        return self.operations_hook(ops) if self.operations_hook else ops

    def read(self, attributes: Any, printing: bool = False, checking: bool = False) -> Iterator[Any]:
        """Values of ``attributes`` (names, '@c/i/a[=(TYPE)v]' strings or (attribute, types)
        tuples) as a generator; None for an error status (an exception with ``checking``).
        The gateway is opened now; errors while consuming the generator close it."""
        attributes = self.parameter_substitution(attributes)
        try:
            self.open_gateway()
            operations = self._operations(attributes)
        except BaseException as exc:
            self.close_gateway(exc=exc)
            raise
        return self._results(attributes, operations, printing, checking)

    write = read

    def _results(self, attributes: list, operations: list, printing: bool, checking: bool) -> Iterator[Any]:
        try:
            harvested = self.gateway.operate(
                operations, depth=self.depth, multiple=self.multiple, timeout=self.timeout,
                route_path=self.route_path, send_path=self.send_path)
            for (attribute, types, units), (_idx, _dsc, _req, _rpy, sts, val) in zip(
                    attributes, harvested, strict=True):
                if val is not None and val is not True and _req.get("method", "").startswith("get_attr"):
                    val = _decode_typed(val, types)
                if printing:
                    print(f"{attribute:<32} == {val!r} {units or ''}".rstrip())
                if val is None and checking:
                    raise client.ENIPStatusError(
                        f"Reading {attribute} failed: {wire.status_text(sts)}", sts)
                yield val
        except GeneratorExit:
            raise
        except BaseException as exc:
            self.close_gateway(exc=exc)
            raise

    def read_details(self, attributes: Any) -> Iterator[tuple[Any, tuple[Any, tuple]]]:
        """Like read, but yields (value, (status, (attribute, types, units)))."""
        attributes = self.parameter_substitution(attributes)
        self.open_gateway()
        operations = self._operations(attributes)
        harvested = self.gateway.operate(operations, depth=self.depth, multiple=self.multiple,
                                         timeout=self.timeout, route_path=self.route_path,
                                         send_path=self.send_path)
        for att, (_i, _d, req, _r, sts, val) in zip(attributes, harvested, strict=True):
            if val not in (None, True) and req.get("method", "").startswith("get_attr"):
                val = _decode_typed(val, att[1])
            yield val, (sts, att)


class proxy_simple(proxy):  # noqa: N801 - the spec's public name
    """A simple, non-routing CIP device (MicroLogix, PowerFlex, ...): no Unconnected Send."""

    def __init__(self, host: str, route_path: Any = None, send_path: Any = None, **kwds: Any) -> None:
        super().__init__(host, route_path=False if route_path is None else route_path,
                         send_path="" if send_path is None else send_path, **kwds)


def maintain_gateway(function: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a proxy method so that any exception closes the gateway (and is re-raised)."""
    @functools.wraps(function)
    def wrapper(inst: proxy, *args: Any, **kwds: Any) -> Any:
        try:
            return function(inst, *args, **kwds)
        except BaseException as exc:
            inst.close_gateway(exc=exc)
            raise
    return wrapper

