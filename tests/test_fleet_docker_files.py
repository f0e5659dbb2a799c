"""The docker backend and what lives beside fleet.toml, through the real CLI and real
containers: a ``tags_from`` export and a playback recording bind-mounted read-only into the
containers that read them, retained writes surviving ``restart``, a container recreated by
``up`` and ``down``/``up``, and an RTU-over-TCP device answering pymodbus's RTU framer.

Everything created carries ``cpppo-fleet.test=<id>`` and is removed by id afterwards.
"""

from __future__ import annotations

import shutil
import time
import uuid
from pathlib import Path

import pytest

from tests.test_fleet_docker import free_subnet, labelled_build, remove_labelled

pytestmark = [pytest.mark.docker, pytest.mark.slow]

DATA = Path(__file__).parent / "data"


def fleet_text(name: str, pool: str, image: str, memory: str = "64m") -> str:
    return f"""
[fleet]
name = "{name}"
address_pool = "{pool}"
docker_image = "{image}"
docker_memory = "{memory}"
health_interval = 1.0
[[device]]
kind = "enip"
count = 1
name = "line{{n}}"
udts = ["Tank={{Level:REAL,Temperature:REAL,Inlet:BOOL,Outlet:BOOL,Alarms:DINT[2]}}"]
tags_from = ["exports/packaging_types.L5X", "exports/line4_tags.CSV"]
health_tag = "LineSpeed"
[[device]]
kind = "modbus"
count = 1
name = "pump{{n}}"
retain = true
registers = ["40001-40004=0", "30001~playback('../recordings/level.csv', interpolate=false, loop=false)"]
[[device]]
kind = "modbus-rtu"
transport = "tcp"
count = 1
name = "rtcp{{n}}"
unit_id = 5
registers = ["40001-40004=9"]
"""


def read_modbus(host: str, port: int, address: int, *, input_: bool = False, rtu: bool = False) -> int:
    from pymodbus import FramerType
    from pymodbus.client import ModbusTcpClient

    client = ModbusTcpClient(host, port=port, framer=FramerType.RTU if rtu else FramerType.SOCKET,
                             timeout=2, retries=0)
    try:
        assert client.connect()
        read = client.read_input_registers if input_ else client.read_holding_registers
        reply = read(address, count=1, device_id=5 if rtu else 1)
        assert not reply.isError(), reply
        return reply.registers[0]
    finally:
        client.close()


def write_modbus(host: str, port: int, address: int, value: int, *, rtu: bool = False) -> None:
    from pymodbus import FramerType
    from pymodbus.client import ModbusTcpClient

    client = ModbusTcpClient(host, port=port, framer=FramerType.RTU if rtu else FramerType.SOCKET,
                             timeout=2, retries=0)
    try:
        assert client.connect()
        assert not client.write_register(address, value, device_id=5 if rtu else 1).isError()
    finally:
        client.close()


def eventually(check, timeout: float = 60.0):
    """check() until it returns without raising (bounded in time and count)."""
    deadline = time.monotonic() + timeout
    for _ in range(1000):
        try:
            return check()
        except (AssertionError, OSError, ConnectionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    return check()


def test_files_retain_and_rtu_over_tcp_in_containers(docker_client, tmp_path, monkeypatch) -> None:
    from typer.testing import CliRunner

    from fleet.cli import app

    test_id, image = labelled_build(monkeypatch)
    runner = CliRunner()
    name = f"t{uuid.uuid4().hex[:8]}"
    home = tmp_path / "site"
    (home / "exports").mkdir(parents=True)
    for export in ("packaging_types.L5X", "line4_tags.CSV"):
        shutil.copy(DATA / export, home / "exports")
    (tmp_path / "recordings").mkdir()
    (tmp_path / "recordings" / "level.csv").write_text("time,value\n0,1234\n")
    toml = home / "fleet.toml"
    pool = free_subnet(docker_client, "172.29.0.0/16")
    toml.write_text(fleet_text(name, pool, image))
    state = ["--state-dir", str(tmp_path / "state")]
    cli = ["--backend", "docker"]
    try:
        up = runner.invoke(app, [*cli, "up", str(toml), *state, "--timeout", "90"])
        assert up.exit_code == 0, up.output
        assert "3/3 devices healthy" in up.output
        from fleet.config import load
        from fleet.plan import expand

        plan = expand(load(toml))
        pump, rtcp = plan.device("pump1"), plan.device("rtcp1")
        # the export: the ENIP device serves its tags (health_tag LineSpeed answered above);
        # the playback recording: the pump's input register plays it
        assert eventually(lambda: read_modbus(pump.host, pump.port, 0, input_=True)) == 1234
        containers = {c["Labels"]["cpppo-fleet.device"]: c for c in docker_client.api.containers(
            filters={"label": [f"cpppo-fleet.fleet={name}", "cpppo-fleet.device"]})}
        mounts = {m["Destination"]: m for m in docker_client.api.inspect_container(
            containers["pump1"]["Id"])["Mounts"]}
        level = mounts[f"/fleet-files{tmp_path}/recordings/level.csv"]
        assert level["RW"] is False and level["Source"] == str(tmp_path / "recordings" / "level.csv")
        assert mounts["/retain"]["RW"] is True
        line_mounts = {m["Destination"] for m in docker_client.api.inspect_container(
            containers["line1"]["Id"])["Mounts"]}
        exports = {f"/fleet-files{home}/exports/{e}" for e in ("packaging_types.L5X", "line4_tags.CSV")}
        assert exports <= line_mounts
        assert not any(d.startswith("/fleet-files") for d in {m["Destination"] for m in
                       docker_client.api.inspect_container(containers["rtcp1"]["Id"])["Mounts"]})

        # RTU over TCP: pymodbus's RTU framer reaches the container's device
        assert read_modbus(rtcp.host, rtcp.port, 0, rtu=True) == 9
        write_modbus(rtcp.host, rtcp.port, 1, 77, rtu=True)
        assert read_modbus(rtcp.host, rtcp.port, 1, rtu=True) == 77

        # retained writes survive restart, a container recreated by up, and down/up
        write_modbus(pump.host, pump.port, 2, 4242)
        restart = runner.invoke(app, [*cli, "restart", "pump*", str(toml), *state])
        assert restart.exit_code == 0, restart.output
        assert eventually(lambda: read_modbus(pump.host, pump.port, 2)) == 4242
        old = containers["pump1"]["Id"]
        toml.write_text(fleet_text(name, pool, image, memory="80m"))  # every container is recreated
        up = runner.invoke(app, [*cli, "up", str(toml), *state, "--timeout", "90"])
        assert up.exit_code == 0, up.output
        again = docker_client.api.containers(filters={"label": ["cpppo-fleet.device=pump1",
                                                                f"cpppo-fleet.fleet={name}"]})
        assert [c["Id"] for c in again] != [old]
        assert eventually(lambda: read_modbus(pump.host, pump.port, 2)) == 4242
        down = runner.invoke(app, [*cli, "down", str(toml), *state])
        assert down.exit_code == 0, down.output
        assert (tmp_path / "state" / "retain" / "pump1.journal").is_file()  # as the process backend
        up = runner.invoke(app, [*cli, "up", str(toml), *state, "--timeout", "90"])
        assert up.exit_code == 0, up.output
        assert eventually(lambda: read_modbus(pump.host, pump.port, 2)) == 4242
        down = runner.invoke(app, [*cli, "down", str(toml), *state])
        assert down.exit_code == 0, down.output
    finally:
        remove_labelled(docker_client, test_id)


def test_validate_refuses_a_missing_file_in_one_line(tmp_path) -> None:
    from typer.testing import CliRunner

    from fleet.cli import app

    toml = tmp_path / "fleet.toml"
    toml.write_text(fleet_text("gone", "172.29.250.0/24", "cpppo-fleet/device:latest"))
    (tmp_path / "exports").mkdir()
    for export in ("packaging_types.L5X", "line4_tags.CSV"):  # the recording is missing
        shutil.copy(DATA / export, tmp_path / "exports")
    result = CliRunner().invoke(app, ["--backend", "docker", "validate", str(toml)])
    assert result.exit_code == 2
    # the export's lines that are not served are told as warnings (where logging goes); the
    # refusal itself is one line
    line, = [text for text in result.output.strip().splitlines() if "not served" not in text]
    assert str(toml) in line and "device[1]" in line and "level.csv: No such file" in line
