"""`cpppo-fleet status` at scale (issue 20): the plan ``up`` applied is taken without validating
fleet.toml again only while fleet.toml is the text it was expanded from, and the device table
drawn without rich (when not on a terminal) is the very text rich prints."""

from __future__ import annotations

import io
import json
import time

import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

from fleet.backends.process import ProcessBackend
from fleet.cli import app, common
from fleet.cli.table import device_table, plain_table, print_device_table
from fleet.config import load
from fleet.plan import expand
from fleet.report import DeviceReport
from fleet.states import DeviceState
from fleet.store import HealthResult, Store

FLEET = """
[fleet]
name = "quick"
address_pool = "127.79.3.0/24"
devices_per_worker = 2

[[device]]
kind = "enip"
count = 3
name = "plc{n}"
tags = ["SCADA=INT[10]"]

[[device]]
kind = "modbus"
count = 2
name = "mb{n}"
registers = ["40001-40010=7"]
"""


@pytest.fixture
def applied(tmp_path):
    """A fleet.toml and the state `up` leaves of it (plan.json, a health store), not served."""
    path = tmp_path / "fleet.toml"
    path.write_text(FLEET)
    plan = expand(load(path))
    backend = ProcessBackend(plan, tmp_path / ".fleet" / "quick")
    backend.state.make()
    backend.write_applied(plan)
    with Store(backend.state.database) as store:
        store.record([HealthResult(d.name, i != 2, 0.001 * (i + 1), None if i != 2 else "refused",
                                   time.time())
                      for i, d in enumerate(plan.devices)], plan.fleet.health_retention)
    return path, plan


def test_the_applied_plan_is_taken_while_fleet_toml_is_unchanged(applied, monkeypatch) -> None:
    path, plan = applied
    validated = []
    monkeypatch.setattr(common, "load_config", lambda p: validated.append(p) or load(p))
    quick, backend = common.backend_for(path, None)
    assert validated == []  # not validated again, not expanded again
    assert quick == plan and backend._applied[1] is quick  # and not read twice
    again, _ = common.backend_for(path, None, validate=True)  # `up`: validated, the plan still reused
    assert validated == [path] and again == plan


def test_a_changed_fleet_toml_is_validated_and_expanded_again(applied, capsys) -> None:
    path, plan = applied
    path.write_text(FLEET.replace("count = 3", "count = 4"))
    changed, backend = common.backend_for(path, None)
    assert len(changed.devices) == len(plan.devices) + 1
    assert backend._applied is None  # the applied plan is no longer this text's
    path.write_text(FLEET.replace("count = 3", "count = 0"))
    with pytest.raises(typer.Exit) as exit_:
        common.backend_for(path, None)
    assert exit_.value.exit_code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "device[0]" in err and "count" in err, err


def status_json(path) -> dict:
    result = CliRunner().invoke(app, ["status", str(path), "--json"])
    assert result.exit_code == 1, result.output  # nothing runs: not healthy
    return json.loads(result.stdout)


def test_status_json_of_the_quick_path_equals_the_expanded_plans(applied) -> None:
    path, plan = applied
    quick = status_json(path)
    path.write_text(FLEET + "\n# a comment: another text, the same fleet\n")  # expanded again
    assert common.applied_plan(path, None) is None
    assert status_json(path) == quick
    assert [d["name"] for d in quick["devices"]] == [d.name for d in plan.devices]
    assert {d["state"] for d in quick["devices"]} == {"stopped"}


def reports(count: int, error: str = "refused") -> list[DeviceReport]:
    states = list(DeviceState)
    return [DeviceReport(f"plc{i}", "enip" if i % 2 else "modbus", f"127.1.0.{i}:{502 + i}", f"w{i // 3:03}",
                         states[i % len(states)], None if i % 4 == 0 else 65.0 * i, i % 3,
                         None if i % 5 == 0 else i % 2 == 0, error if i % 3 == 0 else None, None,
                         None if i % 2 else 0.0011 * i, 0.002, 0.0035 * i, "offline" if i == 7 else None)
            for i in range(count)]


def rich_text(table, width: int) -> str:
    out = io.StringIO()
    Console(file=out, width=width).print(table)
    return out.getvalue()


def drawn(width: int, **args) -> str:
    out = io.StringIO()
    print_device_table(Console(file=out, width=width), "f", **args)
    return out.getvalue()


@pytest.mark.parametrize("args", [
    {"reports": reports(40)},
    {"reports": reports(12), "title": "not healthy: 12"},
    {"reports": reports(6), "hosts": [f"lab{i}" for i in range(6)]},
    {"reports": reports(6), "io": {"plc1": {"connections": 2, "packets_per_second_in": 50}}},
    {"reports": reports(5, error="ünïcode — wide 漢字")},
    {"reports": []},
])
def test_the_table_drawn_without_rich_is_riches_text(args) -> None:
    expected = rich_text(device_table("f", **args), 300)  # wide enough for rich not to wrap
    assert drawn(140, **args) == expected
    columns = 12 + ("hosts" in args) + ("io" in args)
    assert expected.splitlines()[2].count("┃") == columns + 1


def test_a_table_too_wide_for_the_console_keeps_a_row_a_line_off_a_terminal() -> None:
    many = reports(4, error="x" * 200)  # rich would wrap the error column at 140
    assert plain_table("t", ["a"], [["x" * 200]], 140) is None
    lines = drawn(140, reports=many).splitlines()
    assert len(lines) == 1 + 3 + 4 + 1 and all(len(line) == len(lines[1]) > 200 for line in lines)
    assert drawn(400, reports=many) == rich_text(device_table("f", many), 400)  # what fits: rich's text
    assert plain_table("t", ["a"], [["two\nlines"]], 140) is None


@pytest.mark.parametrize("error", [
    "refused", 'quoted },{"name":"x"} inside', "back\\slash },\n{\"name\": and a newline", "ünïcode — 漢字",
])
def test_status_json_rows_are_the_reports_a_line_each(error) -> None:
    """The rows of ``status --json`` (orjson, one call, a row put on its own line after) parse
    to what ``json`` makes of the reports, and each row is one line, whatever an error says."""
    from fleet.cli.status import ROWS_AT_ONCE, _device_rows

    rows = reports(ROWS_AT_ONCE + 12, error=error)  # two pieces
    text = b"".join(_device_rows(None, None, {}, rows)).decode()
    lines = text.splitlines()
    assert lines[0] == "[" and lines[-1] == " ]" and len(lines) == len(rows) + 2
    assert [json.loads(line.rstrip(",")) for line in lines[1:-1]] == [r.to_json() for r in rows]
    assert json.loads(text) == json.loads(json.dumps([r.to_json() for r in rows]))
    assert _device_rows(None, None, {}, []) == [b"[]"]
