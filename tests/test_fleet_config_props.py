"""Properties of fleet.toml loading: whatever the text, ``load`` either returns a config whose
plan keeps its invariants, or raises ConfigError with one line naming the file (and, for a
problem in a table, the table and the key).

Valid files come from a strategy of realistic tables; each mutation breaks one thing in one
table (a wrong type, an unknown or missing key, a duplicate name, an overlapping or exhausted
pool, a bad tag or register spec, a port clash, a huge count, a bad pattern, a non-finite
number) or the file itself (invalid TOML, bytes that are not UTF-8).  Nothing is started.
"""

from __future__ import annotations

import contextlib
import copy
import ipaddress
import json
import math
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleet.config import ConfigError, FleetConfig, load, load_for_backend, pool_addresses
from fleet.plan import Plan, expand

EXAMPLES = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NAME_OK = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
TABLE = re.compile(r"device\[(\d+)\]")

# -- rendering a dict as TOML (tomllib reads; nothing in the stdlib writes) -----------------------


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # JSON string escapes are TOML basic-string escapes
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(type(value))


def toml_text(doc: dict[str, Any]) -> str:
    """The document as TOML; a key whose value is None is left out (a missing key)."""
    lines: list[str] = []
    for name, table in doc.items():
        if isinstance(table, list) and table and all(isinstance(t, dict) for t in table):
            for item in table:
                lines.append(f"[[{name}]]")
                lines += [f"{json.dumps(k)} = {toml_value(v)}" for k, v in item.items() if v is not None]
        elif isinstance(table, dict):
            lines.append(f"[{name}]")
            lines += [f"{json.dumps(k)} = {toml_value(v)}" for k, v in table.items() if v is not None]
        else:
            lines.insert(0, f"{json.dumps(name)} = {toml_value(table)}")
    return "\n".join(lines) + "\n"


# -- valid documents --------------------------------------------------------------------------
VALID_TAGS = ["SCADA=INT[100]", "Speed=REAL", "Count=DINT", "Flags=BOOL[16]", "Text=SSTRING",
              "Velocity@0x93/3/10=REAL", "Level=LREAL", "Bits=DWORD[4]"]
VALID_REGISTERS = ["40001-40100=99", "1-16=0", "30001-30010=1,2,3", "10001-10008", "400001-400010=5"]


@st.composite
def device_table(draw: st.DrawFn, index: int, octet: int) -> dict[str, Any]:
    kind = draw(st.sampled_from(["enip", "modbus"]))
    pattern = draw(st.sampled_from(["{n}", "{n:03}", "-{n}", "_{n:02}"]))
    table: dict[str, Any] = {"kind": kind, "count": draw(st.integers(1, 12)),
                             "name": f"g{index}x{pattern}"}
    if draw(st.booleans()):
        table["first"] = draw(st.integers(0, 500))
    where = draw(st.sampled_from(["fleet pool", "own pool", "fixed address"]))
    if where == "own pool":
        table["address_pool"] = f"127.90.{octet}.0/27"  # 30 addresses, one /24 per group
    elif where == "fixed address":
        table["address"] = f"127.91.{octet}.1"
        table["port"] = 20000 + 100 * index
        table["port_step"] = 1
    elif draw(st.booleans()):
        table["port"] = draw(st.integers(1, 65000))
    if draw(st.booleans()):
        table["delay"] = draw(st.one_of(st.floats(0, 0.5),
                                        st.tuples(st.floats(0, 0.1), st.floats(0.1, 0.5)).map(list)))
    if kind == "enip":
        tags = draw(st.lists(st.sampled_from(VALID_TAGS), min_size=1, max_size=4, unique=True))
        table["tags"] = tags
        if draw(st.booleans()):
            table["identity"] = {"product_name": "1756-L61 {n}", "serial_number": "0x51{n:04}",
                                 "vendor_id": draw(st.integers(0, 65535))}
        if draw(st.booleans()):
            table["route_path"] = draw(st.sampled_from(["1/0", "1/3", False]))
        if draw(st.booleans()):
            table["simple"] = draw(st.booleans())
        if draw(st.booleans()):
            table["health_tag"] = tags[-1].split("@")[0].split("=")[0]
    else:
        registers = draw(st.lists(st.sampled_from(VALID_REGISTERS), min_size=1, max_size=3, unique=True))
        table["registers"] = registers
        if draw(st.booleans()):
            table["identity"] = {"vendor_name": "cpppo", "product_name": "pump {n}"}
        if draw(st.booleans()):
            table["unit_ids"] = draw(st.lists(st.integers(0, 255), min_size=1, max_size=3))
        if draw(st.booleans()):
            table["health_register"] = int(registers[-1].split("-")[0].split("=")[0])
    return table


@st.composite
def valid_doc(draw: st.DrawFn) -> dict[str, Any]:
    octet = draw(st.integers(0, 255))
    pool = draw(st.sampled_from([
        f"127.89.{octet}.0/24",
        f"127.89.{octet}.10-127.89.{octet}.200",
        [f"127.89.{octet}.0/26", f"127.89.{octet}.128/26"],
    ]))
    fleet: dict[str, Any] = {"name": draw(st.sampled_from(["plant", "t", "line-2", "a.b_c"])),
                             "address_pool": pool}
    for key, strategy in [("devices_per_worker", st.integers(1, 10)),
                          ("health_interval", st.floats(0.1, 60)),
                          ("health_timeout", st.integers(1, 5)),
                          ("health_retention", st.integers(1, 1000)),
                          ("health_concurrency", st.integers(1, 500))]:
        if draw(st.booleans()):
            fleet[key] = draw(strategy)
    groups = draw(st.integers(1, 4))
    octets = draw(st.lists(st.integers(0, 255), min_size=groups, max_size=groups, unique=True))
    return {"fleet": fleet, "device": [draw(device_table(i, octets[i])) for i in range(groups)]}


# -- mutations: (doc, draw) -> (doc', expected table, acceptable keys) -----------------------
# The expected table is None when any table may be named (a file-level problem names "file").
Expectation = tuple[str | None, set[str | None] | None]

WRONG_TYPES: dict[str, list[Any]] = {
    "count": ["5", 1.5, True, [1]], "first": ["1", -1, False], "name": [5, ["a{n}"], True],
    "port": ["502", -1, 70000, 1.0], "port_step": ["1", -2], "address": [1, "127.0.0", "::1"],
    "address_pool": [5, [1], "127.0.0.0/40", "10.0.0.9-10.0.0.1", "nowhere"],
    "identity": [5, "x", {"colour": 1}, {"product_name": 1.5}, {"product_name": True}],
    "delay": ["1", -1, [1], [0.5, 0.1], [True, 1], {}],
    "tags": [5, [], [1], "nonsense"], "route_path": [True, 1, "1/x", "1/0\n"],
    "simple": [1, "yes"], "health_tag": [1, "Nope"],
    "registers": [5, [], [40001], "99999999"], "unit_ids": [[], [256], [True], "1", [-1]],
    "health_register": ["1", 50000 * 1000, True],
    "kind": [None, "bacnet", 1, ["enip"]],
}
FLEET_WRONG_TYPES: dict[str, list[Any]] = {
    "name": [1, "", "a b", "x/y", "plant\n"], "backend": ["kubernetes", 1], "addressing": ["nat", True],
    "address_pool": [1, ["127.0.0.0/8", "127.0.0.0/16"], "300.0.0.0/8"],
    "health_interval": [0, -1, "5", math.nan, math.inf], "health_timeout": [math.nan, -0.5, True],
    "health_concurrency": [0, 1.5], "health_retention": [-1, "9"], "devices_per_worker": [0, []],
    "prefix_length": [7, 33, "32"], "interface": [5], "docker_network": ["host"],
    "docker_subnet": ["10.0.0.0/99", 5], "docker_memory": ["lots", 64],
    "docker_bridge_prefix": [21, 29, "27", True],
}
BAD_TAGS = ["Speed=FLOAT", "X@1/2=INT", "1X=INT", "X=INT[0]", "X=INT[70000]", "", "X", "=INT",
            "SCADA=INT[100]\nY=INT", "X@a/b/c=INT"]
BAD_REGISTERS = ["20001-20010", "40010-40001", "9990-10010", "40001=x", "", "abc", "0", "40001-40002=1,,2"]
BAD_NAMES = ["{n[0]}", "{n.real.x}", "{m}", "{", "}", "a b{n}", "{n:c}", "{n:099999999999}", "{0}",
             "{n!z}", "{n:>100000000}", "same", "{n}\n", "\u00e9{n}"]
# (identity, first n): each is wrong for the first device or for the second
BAD_IDENTITY = [({"product_name": "x" * 40 + "{n}"}, 1), ({"product_name": "x" * 31 + "{n}"}, 9),
                ({"serial_number": "0x{n:08}"}, 99999999), ({"product_name": "{n.x}"}, 1),
                ({"serial_number": "{n[1]}"}, 1), ({"vendor_id": -1}, 1), ({"vendor_id": 2**40}, 1),
                ({"serial_number": "x{n}"}, 1), ({"product_name": "{n:0999999999}"}, 1)]


def pick_group(doc: dict, draw: st.DrawFn) -> tuple[int, dict]:
    index = draw(st.integers(0, len(doc["device"]) - 1))
    return index, doc["device"][index]


def m_wrong_type(doc: dict, draw: st.DrawFn) -> Expectation:
    if draw(st.booleans()):
        key = draw(st.sampled_from(sorted(FLEET_WRONG_TYPES)))
        doc["fleet"][key] = draw(st.sampled_from(FLEET_WRONG_TYPES[key]))
        if key == "docker_network":
            doc["fleet"]["backend"] = "docker"
        return "fleet", {key}
    index, group = pick_group(doc, draw)
    keys = sorted(k for k in WRONG_TYPES if k in ("kind", "count", "first", "name", "port", "port_step",
                                                     "address", "address_pool", "identity", "delay")
                  or (k in ("tags", "route_path", "simple", "health_tag") and group["kind"] == "enip")
                  or (k in ("registers", "unit_ids", "health_register") and group["kind"] == "modbus"))
    key = draw(st.sampled_from(keys))
    group[key] = draw(st.sampled_from(WRONG_TYPES[key]))
    if key == "address_pool":
        group.pop("address", None)
    accept = {key}
    if key == "address":
        group.pop("address_pool", None)
    if key in ("tags", "registers"):
        accept |= {"health_tag", "health_register"}
    return f"device[{index}]", accept


def m_unknown_key(doc: dict, draw: st.DrawFn) -> Expectation:
    where = draw(st.sampled_from(["fleet", "device", "top"]))
    key = draw(st.sampled_from(["colour", "Count", "tag", "a\nb", "registers_", ""]))
    if where == "fleet":
        doc["fleet"][key] = 1
        return "fleet", {key}
    if where == "top":
        doc["zz" + key.replace("\n", "")] = {"x": 1}
        return "top level", None
    index, group = pick_group(doc, draw)
    if group["kind"] == "enip" and key == "registers_":
        key = "registers"  # a Modbus key in an ENIP table
    group[key] = 1
    return f"device[{index}]", {key}


def m_missing_key(doc: dict, draw: st.DrawFn) -> Expectation:
    choice = draw(st.sampled_from(["fleet.name", "fleet", "device", "name", "kind", "specs"]))
    if choice == "fleet.name":
        del doc["fleet"]["name"]
        return "fleet", {"name"}
    if choice in ("fleet", "device"):
        del doc[choice]
        return choice, {None}
    index, group = pick_group(doc, draw)
    specs = "tags" if group["kind"] == "enip" else "registers"
    key = {"name": "name", "kind": "kind", "specs": specs}[choice]
    del group[key]
    return f"device[{index}]", {key} | ({"unit_ids", "health_register"} if key == "kind" else set())


def m_duplicate_group(doc: dict, draw: st.DrawFn) -> Expectation:
    _, group = pick_group(doc, draw)
    doc["device"].append(copy.deepcopy(group))
    return f"device[{len(doc['device']) - 1}]", {"name", "count", "address_pool", "port"}


def m_pools(doc: dict, draw: st.DrawFn) -> Expectation:
    choice = draw(st.sampled_from(["fleet overlap", "group overlap", "fleet exhausted", "group exhausted"]))
    first_pool = doc["fleet"]["address_pool"]
    first_pool = first_pool[0] if isinstance(first_pool, list) else first_pool
    if choice == "fleet overlap":
        base = str(ipaddress.IPv4Address(pool_addresses(first_pool)[0]))
        doc["fleet"]["address_pool"] = [first_pool, f"{base}/32"]
        return "fleet", {"address_pool"}
    index, group = pick_group(doc, draw)
    group.pop("address", None)
    group.pop("port_step", None)
    if choice == "group overlap":
        group["address_pool"] = first_pool
        return f"device[{index}]", {"address_pool"}
    if choice == "group exhausted":
        group["address_pool"] = "127.92.0.0/30"
        group["count"] = draw(st.integers(3, 50))
        return f"device[{index}]", {"address_pool"}
    doc["fleet"]["address_pool"] = "127.89.255.252/30"
    for g in doc["device"]:
        g.pop("address_pool", None)
    group.pop("address_pool", None)
    group["count"] = 3
    return None, {"count"}


def m_bad_spec(doc: dict, draw: st.DrawFn) -> Expectation:
    index, group = pick_group(doc, draw)
    if group["kind"] == "enip":
        bad = draw(st.sampled_from(BAD_TAGS))
        group["tags"] = [*group["tags"], bad] if draw(st.booleans()) else [bad]
        group.pop("health_tag", None)
        return f"device[{index}]", {"tags"}
    bad = draw(st.sampled_from(BAD_REGISTERS))
    group["registers"] = [*group["registers"], bad] if draw(st.booleans()) else [bad]
    group.pop("health_register", None)
    return f"device[{index}]", {"registers"}


def m_port_clash(doc: dict, draw: st.DrawFn) -> Expectation:
    index, group = pick_group(doc, draw)
    group.pop("address_pool", None)
    group["address"] = "127.93.0.1"
    group["port"] = 1502
    group["port_step"] = 0
    if group["count"] == 1:
        clone = copy.deepcopy(group)
        clone["name"] = "clone{n}"
        doc["device"].append(clone)
        return f"device[{len(doc['device']) - 1}]", {"port"}
    return f"device[{index}]", {"port"}


def m_huge_count(doc: dict, draw: st.DrawFn) -> Expectation:
    index, group = pick_group(doc, draw)
    group["count"] = draw(st.sampled_from([10**6, 10**9, 2**62, 2**63 - 1]))
    return f"device[{index}]", {"count", "address_pool", "port", "port_step", "identity", "name"}


def m_bad_name(doc: dict, draw: st.DrawFn) -> Expectation:
    index, group = pick_group(doc, draw)
    group["name"] = draw(st.sampled_from(BAD_NAMES))
    group["count"] = max(group["count"], 2)
    group["first"] = draw(st.sampled_from([1, 0, 90, 250]))
    return f"device[{index}]", {"name", "address_pool", "count"}


def m_bad_identity(doc: dict, draw: st.DrawFn) -> Expectation:
    index, group = pick_group(doc, draw)
    group["kind"] = "enip"
    group.pop("registers", None)
    group.pop("unit_ids", None)
    group.pop("health_register", None)
    group["tags"] = ["SCADA=INT[10]"]
    group.pop("health_tag", None)
    group["identity"], group["first"] = draw(st.sampled_from(BAD_IDENTITY))
    group["count"] = max(group["count"], 2)
    return f"device[{index}]", {"identity", "address_pool", "count", "name"}


def m_non_finite(doc: dict, draw: st.DrawFn) -> Expectation:
    value = draw(st.sampled_from([math.nan, math.inf, -math.inf]))
    if draw(st.booleans()):
        key = draw(st.sampled_from(["health_interval", "health_timeout"]))
        doc["fleet"][key] = value
        return "fleet", {key}
    index, group = pick_group(doc, draw)
    group["delay"] = value if draw(st.booleans()) else [0.0, value]
    return f"device[{index}]", {"delay"}


MUTATIONS: list[Callable[[dict, st.DrawFn], Expectation]] = [
    m_wrong_type, m_unknown_key, m_missing_key, m_duplicate_group, m_pools, m_bad_spec,
    m_port_clash, m_huge_count, m_bad_name, m_bad_identity, m_non_finite,
]


# -- loading and the properties ----------------------------------------------------------------


@contextlib.contextmanager
def written(data: bytes) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="fleetprop-") as folder:
        path = Path(folder) / "fleet.toml"
        path.write_bytes(data)
        yield path


def check_error(path: Path, exc: ConfigError) -> None:
    message = str(exc)
    assert "\n" not in message and "\r" not in message, message
    assert message.startswith(f"{path}: "), message
    assert exc.table in ("file", "top level", "fleet", "device") or TABLE.fullmatch(exc.table), message
    assert f"{path}: {exc.table}" in message
    if TABLE.fullmatch(exc.table) or (exc.table == "fleet" and "missing [fleet]" not in message):
        assert exc.key is not None, message
    if exc.key is not None:
        assert f"key {exc.key!r}" in message
    assert len(message) < 2000, message


def check_plan(config: FleetConfig, plan: Plan) -> None:
    names = [d.name for d in plan.devices]
    assert len(set(names)) == len(names)
    assert all(NAME_OK.fullmatch(n) for n in names), names
    endpoints = [(d.host, d.port) for d in plan.devices]
    assert len(set(endpoints)) == len(endpoints)
    assert all(1 <= d.port <= 65535 for d in plan.devices)
    in_workers = [n for w in plan.workers for n in w.devices]
    assert sorted(in_workers) == sorted(names)
    assert all(len(w.devices) <= plan.fleet.devices_per_worker for w in plan.workers)
    workers = {n: w.name for w in plan.workers for n in w.devices}
    assert all(workers[d.name] == d.worker for d in plan.devices)
    assert len(plan.devices) == sum(g.count for g in config.groups)
    for device in plan.devices:
        group = config.groups[device.group]
        if group.address is not None:
            assert device.host == group.address
            continue
        host = int(ipaddress.IPv4Address(device.host))
        assert any(host in pool_addresses(p) for p in group.address_pool or plan.fleet.address_pool), device
    assert Plan.from_json(json.loads(plan.dumps())) == plan


def load_and_expand(path: Path, backend: str | None = None) -> Plan | ConfigError:
    """Load (for ``backend``, as ``--backend`` does) and expand, asserting that anything that
    goes wrong is a one-line ConfigError and that a plan keeps its invariants."""
    try:
        config = load(path) if backend is None else load_for_backend(path, backend)
        plan = expand(config)
    except ConfigError as exc:
        check_error(path, exc)
        return exc
    check_plan(config, plan)
    return plan


def outcome(data: bytes) -> tuple[Path, Plan | ConfigError]:
    with written(data) as path:
        result = load_and_expand(path)
        if isinstance(result, Plan):  # the same file on the other backend: a plan, or one line
            load_and_expand(path, "docker" if result.fleet.backend == "process" else "process")
        return path, result


@EXAMPLES
@given(valid_doc())
def test_valid_documents_plan_with_invariants(doc: dict) -> None:
    _, result = outcome(toml_text(doc).encode())
    assert isinstance(result, Plan), result


@EXAMPLES
@given(valid_doc(), st.sampled_from(MUTATIONS), st.data())
def test_each_mutation_is_one_line_naming_table_and_key(doc: dict, mutation, data: st.DataObject) -> None:
    table, keys = mutation(doc, data.draw)
    _, result = outcome(toml_text(doc).encode())
    if mutation in (m_huge_count,) and isinstance(result, Plan):
        pytest.fail("a huge count planned")
    assert isinstance(result, ConfigError), f"{mutation.__name__}: accepted {doc}"
    if table is not None:
        assert result.table == table, (mutation.__name__, str(result))
    if keys is not None:
        assert result.key in keys, (mutation.__name__, str(result))


@EXAMPLES
@given(valid_doc(), st.data())
def test_damaged_files_are_one_line_file_errors(doc: dict, data: st.DataObject) -> None:
    text = toml_text(doc).encode()
    how = data.draw(st.sampled_from(["garbage", "non-utf8", "truncate", "bytes"]))
    if how == "garbage":
        at = data.draw(st.integers(0, len(text)))
        junk = data.draw(st.sampled_from([b"[[device]\n", b"= =\n", b"\nx = \n", b'\n"a = 1\n',
                                          b"\n[fleet]\n"]))
        text = text[:at] + junk + text[at:]
    elif how == "non-utf8":
        at = data.draw(st.integers(0, len(text)))
        bad = data.draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x80"]))
        text = text[:at] + bad + text[at:]
    elif how == "truncate":
        text = text[:data.draw(st.integers(0, len(text)))]
    else:
        text = data.draw(st.binary(max_size=200))
    path, result = outcome(text)
    if how == "non-utf8":
        assert isinstance(result, ConfigError) and result.table == "file" and "UTF-8" in str(result)
    if how == "garbage" and isinstance(result, ConfigError) and result.table == "file":
        assert str(result).startswith(f"{path}: file: ")


# arbitrary TOML values in the places the strategy fills with sensible ones
toml_scalars = st.one_of(st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=True),
                         st.text(max_size=12))
toml_values = st.recursive(toml_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)), max_leaves=6)


@EXAMPLES
@given(valid_doc(), st.data())
def test_any_value_for_any_key_is_accepted_or_one_line(doc: dict, data: st.DataObject) -> None:
    for _ in range(data.draw(st.integers(1, 3))):
        if data.draw(st.booleans()):
            table = doc["fleet"]
            key = data.draw(st.sampled_from([*sorted(FLEET_WRONG_TYPES), "name", "address_pool"]))
        else:
            _, table = pick_group(doc, data.draw)
            key = data.draw(st.sampled_from([*sorted(WRONG_TYPES), "count"]))
        table[key] = data.draw(toml_values)
    outcome(toml_text(doc).encode())


def test_a_missing_and_an_unreadable_file_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path / "nope.toml")
    assert str(info.value) == f"{tmp_path / 'nope.toml'}: file: cannot read: No such file or directory"
    with pytest.raises(ConfigError) as info:
        load(tmp_path)
    assert "cannot read" in str(info.value) and "\n" not in str(info.value)


def test_the_toml_writer_round_trips() -> None:
    import tomllib

    doc = {"fleet": {"name": "t", "x": [1.5, math.inf]}, "device": [{"a": {"b": "c\n\u00e9"}}]}
    assert tomllib.loads(toml_text(doc)) == doc
