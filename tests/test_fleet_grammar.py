"""One grammar: what ``cpppo-fleet validate`` accepts is what the workers serve, and what a
worker would refuse, validate refuses in one line naming file, table and key.

The cases of issue 11 that used to disagree, then a property: for generated tags, register
ranges and identity values, validation agrees with the protocol libraries' own constructors
(``Device.from_specs``, ``ModbusDevice.from_specs``) called for every device as the worker
calls them.  Finally a device a worker cannot build is given up on (no retries) and shows as
failed with the reason.
"""

from __future__ import annotations

import asyncio
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cpppo.enip.codec.types import TYPES
from cpppo.enip.device.model import Device
from cpppo.modbus.device import ModbusDevice
from fleet.backends.base import ProgramStatus
from fleet.config import ConfigError, parse
from fleet.kinds import KINDS, EnipOptions
from fleet.patterns import format_pattern
from fleet.plan import Plan, PlannedDevice, expand
from fleet.report import device_reports
from fleet.states import DeviceState, ProcessState
from fleet.store import Store
from fleet.worker import Worker
from tests.support import free_port
from tests.test_fleet_config_props import toml_text

OCTET = 100 + os.getpid() % 50
FLEET = {"name": "g", "address_pool": f"127.78.{OCTET}.0/24"}


def fleet_text(**group: object) -> str:
    return toml_text({"fleet": FLEET, "device": [{"count": 1, "name": "d{n}", **group}]})


def verdict(text: str) -> Plan | ConfigError:
    try:
        return expand(parse(text, source="g.toml"))
    except ConfigError as exc:
        assert "\n" not in str(exc), str(exc)
        return exc


# -- the cases of issue 11 -------------------------------------------------------------------
@pytest.mark.parametrize(("group", "key", "needle"), [
    ({"kind": "enip", "tags": ["W=WORD[2]"]}, "tags",
     f"unknown type 'WORD' (one of {', '.join(sorted(TYPES))})"),
    ({"kind": "enip", "tags": ["B=BYTE"]}, "tags", "unknown type 'BYTE'"),
    ({"kind": "enip", "tags": ["L=LWORD[4]"]}, "tags", "unknown type 'LWORD'"),
    ({"kind": "modbus", "registers": ["40001=70000"]}, "registers", "value 70000 is outside 0..65535"),
    ({"kind": "enip", "tags": ["X=INT"], "identity": {"vendor_id": 70000}}, "identity",
     "identity vendor_id: 70000 is outside 0-65535"),
    ({"kind": "enip", "tags": ["X@0/1/1=INT"]}, "tags", "address must be three numbers 1-65535"),
    ({"kind": "enip", "tags": ["X@22/1/1=INT", "Y@22/1/1=DINT"]}, "tags",
     "tag 'Y': address @22/1/1 is already in use"),
    ({"kind": "enip", "tags": ["X@1/1/7=INT"]}, "tags", "address @1/1/7 is already in use"),
    ({"kind": "enip", "tags": ["X=INT\n"], "count": 2}, None, None),  # trailing blank: accepted
    ({"kind": "enip", "tags": ["X=INT\nY=INT"]}, "tags", "bad tag spec"),
    ({"kind": "enip", "tags": ["Caf\u00e9=INT"]}, "tags", "bad tag spec"),
    ({"kind": "enip", "tags": ["X=INT"], "identity": {"product_name": "\u20ac{n}"}}, "identity",
     "ISO-8859-1"),
    ({"kind": "enip", "tags": ["X=INT"], "identity": {"revision": "20.x"}}, "identity",
     "identity revision must be 'major.minor'"),
    ({"kind": "modbus", "registers": ["40001"], "identity": {"vendor_name": "x" * 241}}, "identity",
     "longer than 240 bytes"),
    ({"kind": "enip", "tags": ["X=INT"], "route_path": "1/99999"}, "route_path",
     "route path link number must be 0-255: 99999"),
    ({"kind": "enip", "tags": ["X=INT"], "route_path": "0/1"}, "route_path",
     "route path port must be 1-65535"),
    ({"kind": "enip", "tags": ["X=INT"], "route_path": "2/10.0.0.9"}, None, None),
])
def test_what_the_workers_refuse_validate_refuses(group: dict, key: str | None, needle: str | None) -> None:
    result = verdict(fleet_text(**group))
    if key is None:
        assert isinstance(result, Plan), result
        return
    assert isinstance(result, ConfigError), f"accepted {group}"
    assert (result.table, result.key) == ("device[0]", key), str(result)
    assert needle in str(result) and str(result).startswith("g.toml: device[0]: key "), str(result)


def test_an_identity_pattern_out_of_range_for_a_later_device_is_refused_naming_it() -> None:
    result = verdict(fleet_text(kind="enip", tags=["X=INT"], count=9, identity={"vendor_id": "{n}0000"}))
    assert isinstance(result, ConfigError) and result.key == "identity"
    assert "device 'd7': identity vendor_id: 70000 is outside 0-65535" in str(result)


def test_the_messages_are_enip_server_s_and_modbus_sim_s_own() -> None:
    """validate says what the command-line simulators say about the same spec."""
    for spec in ("W=WORD[2]", "X@0/1/1=INT", "Speed=FLOAT"):
        with pytest.raises(ValueError) as served:
            Device.from_specs([spec])
        result = verdict(fleet_text(kind="enip", tags=[spec]))
        assert str(result).endswith(f"key 'tags': {served.value}"), str(result)
    with pytest.raises(ValueError) as served:
        ModbusDevice.from_specs(["40001=70000"])
    assert str(verdict(fleet_text(kind="modbus", registers=["40001=70000"]))).endswith(str(served.value))


def test_program_scoped_tags_validate_and_are_served() -> None:
    """``Program:Main.Speed=REAL`` (served by enip_server, documented in the README) in fleet.toml."""
    from cpppo.enip.client.aclient import AsyncClient

    port = free_port(f"127.78.{OCTET}.1")
    plan = verdict(fleet_text(kind="enip", port=port,
                              tags=["Program:Main.Speed=REAL", "Program:Main.Step=DINT", "SCADA=INT[4]"],
                              health_tag="Program:Main.Step"))
    assert isinstance(plan, Plan), plan
    (device,) = plan.devices

    async def scenario() -> tuple[object, object]:
        worker = Worker("w000", [PlannedDevice.from_json(device.to_json())])
        assert await worker.start_pending() == [] and not worker.errors
        try:
            async with AsyncClient(device.host, device.port, timeout=2.0) as client:
                await client.write("Program:Main.Speed", 1.5)
                return await client.read("Program:Main.Speed"), await client.read("Program:Main.Step")
        finally:
            await worker.close()

    assert asyncio.run(scenario()) == (1.5, 0)


# -- the property: validate and the workers' construction agree ------------------------------
NAMES = st.sampled_from(["A", "Speed", "Program:Main.Step", "Program:Main.Speed", "_x", "a1", "1X", "a b",
                         "Caf\u00e9"])
TYPE_NAMES = st.sampled_from(["INT", "REAL", "DINT", "SINT", "BOOL", "DWORD", "SSTRING", "STRING", "LREAL",
                              "WORD", "BYTE", "LWORD", "int", "FLOAT"])
LENGTHS = st.one_of(st.none(), st.sampled_from(["0", "1", "4", "0x10", "65535", "65536", "-1", "x", ""]))
ADDRESSES = st.one_of(st.none(), st.sampled_from(["22/1/1", "0x93/3/10", "0/1/1", "1/1/7", "70000/1/1",
                                                  "1/2", "a/b/c", "4/1/3"]))


@st.composite
def tag_spec(draw: st.DrawFn) -> str:
    address, length = draw(ADDRESSES), draw(LENGTHS)
    return (draw(NAMES) + (f"@{address}" if address else "") + "=" + draw(TYPE_NAMES)
            + (f"[{length}]" if length is not None else ""))


@st.composite
def register_spec(draw: st.DrawFn) -> str:
    begin = draw(st.sampled_from([0, 1, 9999, 10001, 20001, 30001, 40001, 65536, 99999, 100001, 400001,
                                  465536]))
    text = str(begin)
    if draw(st.booleans()):
        text += f"-{begin + draw(st.sampled_from([-1, 0, 1, 9, 100, 70000]))}"
    if draw(st.booleans()):
        values = draw(st.lists(st.sampled_from(["0", "1", "65535", "65536", "70000", "-1", "0x10", "x"]),
                               min_size=1, max_size=3))
        text += "=" + ",".join(values)
    return text


INTS = st.sampled_from([0, 1, 255, 256, 65535, 65536, 70000, 2**32 - 1, 2**32])
PATTERNS = st.sampled_from(["{n}", "{n}0000", "0x{n:04}", "0x{n:08}", "x{n}"])


@st.composite
def enip_identity(draw: st.DrawFn) -> dict:
    fields = {
        "vendor_id": st.one_of(INTS, PATTERNS), "serial_number": st.one_of(INTS, PATTERNS),
        "product_code": INTS, "product_type": INTS, "status": INTS, "state": INTS,
        "product_name": st.sampled_from(["L61 {n}", "x" * 30 + "{n}", "\u00e9{n}", "\u20ac"]),
        "revision": st.sampled_from(["20.11", "1.2", "300.1", "20.x", "7"]),
    }
    keys = draw(st.lists(st.sampled_from(sorted(fields)), max_size=3, unique=True))
    return {key: draw(fields[key]) for key in keys}


@st.composite
def modbus_identity(draw: st.DrawFn) -> dict:
    keys = draw(st.lists(st.sampled_from(sorted(KINDS["modbus"].identity)), max_size=2, unique=True))
    return {key: draw(st.sampled_from(["pump {n}", "x" * 236 + "{n}", "\u00e9" * 120])) for key in keys}


@st.composite
def group(draw: st.DrawFn) -> dict:
    first, count = draw(st.sampled_from([0, 1, 5, 95])), draw(st.integers(1, 6))
    if draw(st.booleans()):
        table = {"kind": "enip", "first": first, "count": count, "identity": draw(enip_identity()),
                 "tags": draw(st.lists(tag_spec(), min_size=1, max_size=4))}
        if draw(st.booleans()):
            table["route_path"] = draw(st.sampled_from(["1/0", "1/99999", "0/1", "2/10.0.0.9", "1/x", False]))
        return table
    return {"kind": "modbus", "first": first, "count": count, "identity": draw(modbus_identity()),
            "registers": draw(st.lists(register_spec(), min_size=1, max_size=3))}


def constructed(table: dict) -> bool:
    """Whether the protocol library builds every device of the group, as the worker calls it
    (identity strings are patterns on n; integer fields parsed by the library itself)."""
    for n in range(table["first"], table["first"] + table["count"]):
        identity = {k: format_pattern(v, n) if isinstance(v, str) else v
                    for k, v in table["identity"].items()}
        try:
            if table["kind"] == "enip":
                Device.from_specs(table["tags"], identity=identity, route_path=table.get("route_path"))
            else:
                ModbusDevice.from_specs(table["registers"], unit_ids=(1,), identity=identity)
        except ValueError:
            return False
    return True


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(group())
def test_validate_and_the_workers_agree(table: dict) -> None:
    result = verdict(fleet_text(**table))
    served = constructed(table)
    assert isinstance(result, Plan) == served, (table, str(result))
    if isinstance(result, ConfigError):
        assert result.table == "device[0]" and result.key in ("tags", "registers", "identity",
                                                              "route_path"), str(result)
        return
    for device in result.devices:  # the worker's own path: the spec's JSON, then build
        KINDS[device.kind].build(PlannedDevice.from_json(device.to_json()).options, device.identity_dict)


# -- a device that cannot be built: failed, with the reason, and never retried ----------------
def test_a_device_that_cannot_be_built_fails_once_and_shows_failed(tmp_path, monkeypatch) -> None:
    import fleet.worker

    port = free_port(f"127.78.{OCTET}.1")
    plan = verdict(fleet_text(kind="enip", port=port, count=2, tags=["X=INT"]))
    assert isinstance(plan, Plan)
    good, bad = plan.devices
    # a plan.json from elsewhere (edited by hand, or by another version) that no validate saw
    bad = bad._replace(options=EnipOptions(tags=("W=WORD[2]",), health_tag="W[0]"))
    builds: list[str] = []
    real_build = fleet.worker.build
    monkeypatch.setattr(fleet.worker, "build", lambda d: builds.append(d.name) or real_build(d))
    database = tmp_path / "health.sqlite"

    def report(errors: dict, failed: set) -> None:
        with Store(database) as store:
            store.record_serve_errors("w000", os.getpid(), errors, failed)

    async def scenario() -> tuple[list, list]:
        worker = Worker("w000", [good, bad], report)
        try:
            retry = await worker.start_pending()
            again = await worker.start_pending()  # what the retry loop would do: nothing left
            return retry, again
        finally:
            await worker.close()

    retry, again = asyncio.run(scenario())
    assert retry == [] and again == [] and builds == [good.name, bad.name]
    with Store(database) as store:
        errors = store.serve_errors()
    assert errors[bad.name].final and "unknown type 'WORD'" in errors[bad.name].error
    program = ProgramStatus("w000", ProcessState.RUNNING, os.getpid(), 1.0)
    reports = {r.name: r for r in device_reports(plan, plan, {"w000": program}, {}, {}, now=2.0,
                                                 serve_errors=errors)}
    assert reports[bad.name].state is DeviceState.FAILED
    assert reports[bad.name].error == f"cannot serve at {bad.endpoint}: bad tag spec 'W=WORD[2]': " \
                                      f"unknown type 'WORD' (one of {', '.join(sorted(TYPES))})"
    assert reports[good.name].state is DeviceState.STARTING


def test_a_database_from_before_final_errors_is_upgraded(tmp_path) -> None:
    import sqlite3

    database = tmp_path / "health.sqlite"
    with sqlite3.connect(database) as db:
        db.execute("CREATE TABLE serve_errors (device TEXT PRIMARY KEY, worker TEXT NOT NULL, "
                   "pid INTEGER NOT NULL, time REAL NOT NULL, error TEXT NOT NULL)")
        db.execute("INSERT INTO serve_errors VALUES ('d1', 'w000', 7, 1.0, 'taken')")
    db.close()
    with Store(database) as store:
        assert not store.serve_errors()["d1"].final
        store.record_serve_errors("w000", 8, {"d1": "bad"}, {"d1"})
        assert store.serve_errors()["d1"].final
