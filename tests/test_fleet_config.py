"""fleet.toml validation, plan expansion, device states and the `plan`/`validate` commands
(nothing is started here)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cpppo.modbus.address import Table
from fleet.cli import app
from fleet.config import ConfigError, load, parse
from fleet.kinds import KINDS, RegisterRead, TagRead
from fleet.plan import Plan, expand
from fleet.states import DeviceState, ProcessState, device_state

ROOT = Path(__file__).resolve().parent.parent

BASE = """
[fleet]
name = "t"
address_pool = "127.77.3.0/24"
devices_per_worker = 4
"""
ENIP = """
[[device]]
kind = "enip"
count = 5
name = "line{n:02}"
tags = ["SCADA=INT[100]", "Speed=REAL"]
identity = { product_name = "L61", serial_number = "0x100{n:02}", vendor_id = 1 }
"""
MODBUS = """
[[device]]
kind = "modbus"
count = 3
name = "pump{n}"
port = 1502
registers = ["40001-40010=7", "1-8=0"]
"""


def error(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        expand(parse(text, source="f.toml"))
    message = str(info.value)
    assert "\n" not in message
    return message


def test_expansion_names_addresses_ports_workers() -> None:
    plan = expand(parse(BASE + ENIP + MODBUS))
    assert [d.name for d in plan.devices] == ["line01", "line02", "line03", "line04", "line05",
                                              "pump1", "pump2", "pump3"]
    assert plan.devices[0].host == "127.77.3.1" and plan.devices[0].port == 44818
    assert plan.devices[5].host == "127.77.3.6" and plan.devices[5].port == 1502
    assert [w.name for w in plan.workers] == ["w000", "w001"]
    assert plan.workers[1].devices == ("line05", "pump1", "pump2", "pump3")
    assert plan.devices[2].identity_dict == {"product_name": "L61", "serial_number": 0x10003, "vendor_id": 1}
    assert plan.devices[0].health == TagRead("SCADA[0]")
    assert plan.devices[5].health == RegisterRead(Table.HOLDING_REGISTERS, 0)


def test_one_process_per_device_and_json_round_trip() -> None:
    plan = expand(parse(BASE.replace("devices_per_worker = 4", "devices_per_worker = 1") + ENIP))
    assert len(plan.workers) == 5 and len({d.worker for d in plan.devices}) == 5
    assert Plan.from_json(plan.to_json()) == plan


def test_select_by_glob() -> None:
    plan = expand(parse(BASE + ENIP + MODBUS))
    assert [d.name for d in plan.select(["pump*", "line0[12]"])] == ["line01", "line02", "pump1", "pump2",
                                                                      "pump3"]


def test_fixed_address_with_port_step() -> None:
    text = BASE + MODBUS.replace('port = 1502', 'port = 1502\naddress = "127.77.4.1"\nport_step = 1')
    plan = expand(parse(text))
    assert [(d.host, d.port) for d in plan.devices] == [("127.77.4.1", 1502), ("127.77.4.1", 1503),
                                                        ("127.77.4.1", 1504)]


@pytest.mark.parametrize("text, needle", [
    (BASE + ENIP.replace("count = 5", "count = 5\ncolour = 1"),
     "f.toml: device[0]: key 'colour': unknown key"),
    (BASE + ENIP.replace("count = 5", 'count = "5"'), "device[0]: key 'count': must be an integer"),
    (BASE + ENIP.replace("count = 5", "count = 0"), "key 'count': must be > 0"),
    (BASE + MODBUS + ENIP.replace('"Speed=REAL"', '"Speed=FLOAT"'),
     "device[1]: key 'tags': bad tag spec 'Speed"),
    (BASE + ENIP.replace('"Speed=REAL"', '"SCADA=DINT"'), "key 'tags': duplicate tag 'SCADA'"),
    (BASE + MODBUS.replace("40001-40010=7", "20001-20010"), "key 'registers': bad register spec"),
    (BASE + MODBUS + MODBUS, "device[1]: key 'name': duplicate device name 'pump1' (also in device[0])"),
    (BASE + MODBUS.replace("pump{n}", "pump"), "key 'name': pattern 'pump' gives every device the same name"),
    (BASE + MODBUS.replace("pump{n}", "pump{m}"), "key 'name': bad pattern"),
    (BASE.replace("/24", "/30") + ENIP, "key 'count': address pool exhausted"),
    (BASE.replace('"127.77.3.0/24"', '["127.77.3.0/24", "127.77.3.128/25"]') + ENIP,
     "fleet: key 'address_pool': pools '127.77.3.0/24' and '127.77.3.128/25' overlap"),
    (BASE + MODBUS.replace("port = 1502", 'port = 1502\naddress_pool = "127.77.3.16/28"'),
     "device[0]: key 'address_pool': overlaps the fleet's address_pool"),
    (BASE + MODBUS.replace("port = 1502", 'port = 1502\naddress = "127.77.4.1"'),
     "key 'port': port clash: 'pump2' and 'pump1' both at 127.77.4.1:1502"),
    (BASE + ENIP.replace("vendor_id = 1", "vendor_id = 1, colour = 2"),
     "key 'identity': unknown identity key"),
    (BASE + ENIP.replace("vendor_id = 1", 'vendor_id = "x{n}"'), "vendor_id: 'x1' is not an integer"),
    (BASE + ENIP.replace("kind = \"enip\"", "kind = \"bacnet\""), "key 'kind': must be one of enip, modbus"),
    (BASE.replace('name = "t"', ""), "fleet: key 'name': missing"),
    (BASE + '[other]\nx = 1\n' + ENIP, "top level: key 'other': unknown table"),
    (BASE, "device: no [[device]] tables"),
    (BASE + "[[device]\n", "file: not valid TOML"),
    (BASE + MODBUS.replace("port = 1502", "port = 1502\nhealth_register = 30001"),
     "key 'health_register': 30001 is not in any"),
    (BASE + ENIP.replace('name = "line{n:02}"', 'name = "line{n:02}"\ndelay = [0.5, 0.1]'), "key 'delay'"),
])
def test_errors_name_file_table_key(text: str, needle: str) -> None:
    assert needle in error(text)


def test_example_fleet_toml_is_a_big_mixed_plant() -> None:
    plan = expand(load(ROOT / "fleet.toml"))
    kinds = {d.kind for d in plan.devices}
    assert len(plan.devices) >= 200 and kinds == {"enip", "modbus"}
    assert all(d.host.startswith("127.") for d in plan.devices)
    assert len({(d.host, d.port) for d in plan.devices}) == len(plan.devices)


def test_tag_and_register_specs() -> None:
    """fleet.toml's tags and registers are read by the protocol libraries' own grammar."""
    enip, modbus = KINDS["enip"], KINDS["modbus"]

    def options(kind, specs):
        return kind.options(one_key_table(kind.spec_key, specs))

    assert enip.health(options(enip, ["Motor_Velocity@0x93/3/10=REAL"])) == TagRead("Motor_Velocity")
    assert options(enip, ["TEXT=SSTRING[100]"]).health_tag == "TEXT[0]"
    with pytest.raises(ConfigError, match="address must be"):
        options(enip, ["X@1/2=INT"])
    assert modbus.health(options(modbus, ["400001-400010=1,2"])) == RegisterRead(Table.HOLDING_REGISTERS, 0)
    with pytest.raises(ConfigError, match="not a range within 1-9999"):
        options(modbus, ["9990-10010"])


def one_key_table(key: str, specs: list[str]):
    """A [[device]] table holding only ``key``."""
    from fleet.table import Table as ConfigTable

    return ConfigTable("f.toml", "device[0]", {key: specs}, {key})


def test_device_states_in_one_place() -> None:
    assert device_state(ProcessState.RUNNING, None, False) is DeviceState.STARTING
    assert device_state(ProcessState.RUNNING, True, False) is DeviceState.UNKNOWN
    assert device_state(ProcessState.BACKOFF, True, True) is DeviceState.RESTARTING
    assert device_state(ProcessState.FATAL, None, False) is DeviceState.FAILED
    assert device_state(ProcessState.STOPPED, True, True) is DeviceState.STOPPED
    # every worker state the backends report gives a device state (no table only tests read)
    for process in ProcessState:
        assert isinstance(device_state(process, True, True), DeviceState)


def test_cli_plan_and_validate(tmp_path: Path) -> None:
    path = tmp_path / "fleet.toml"
    path.write_text(BASE + ENIP + MODBUS)
    runner = CliRunner()
    result = runner.invoke(app, ["plan", str(path)])
    assert result.exit_code == 0, result.output
    assert "line01  enip    127.77.3.1:44818       w000" in result.output
    assert "8 devices (5 enip, 3 modbus) in 2 workers" in result.output
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 0 and result.output.count("\n") == 1
    assert not (tmp_path / ".fleet").exists()


def test_cli_bad_file_exits_2_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "fleet.toml"
    path.write_text(BASE + ENIP.replace("count = 5", "count = -1"))
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 2
    assert result.output.strip() == f"cpppo-fleet: {path}: device[0]: key 'count': must be > 0, got -1"
    result = CliRunner().invoke(app, ["plan", str(tmp_path / "missing.toml")])
    assert result.exit_code == 2 and "cannot read" in result.output


def test_cli_imports_stay_light() -> None:
    import subprocess
    import sys

    code = ("import sys, fleet.cli; heavy = ('rich', 'docker', 'supervisor', 'cpppo', 'asyncio', 'sqlite3'); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("plan", "validate", "up", "down", "status", "poll", "logs", "restart"):
        assert command in result.output
