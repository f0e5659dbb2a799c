"""Large fleets at small scale (issue 20): address pools past a /16 and of several CIDRs, planned
without enumerating them; the open-files limit (``$CPPPO_FLEET_NOFILE`` lowers it): several
health poller processes when one cannot hold a connection to every device, and a one-line
refusal when a worker's devices cannot fit; ``status``'s summary past 100 devices and its
``--all``, ``--only``, ``--state`` rows."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fleet.backends.base import health_programs
from fleet.cli import app
from fleet.config import ConfigError, parse
from fleet.limits import ENV, poller_shards
from fleet.plan import Plan, expand
from tests.fleet_support import CliFleet, until

OCTET = 20 + os.getpid() % 200


def plan_of(pool: str, count: int, per: int = 100, kind: str = "modbus", extra: str = "") -> Plan:
    spec = 'registers = ["40001"]' if kind == "modbus" else 'tags = ["A=INT"]'
    return expand(parse(f"""
[fleet]
name = "big"
address_pool = {pool}
devices_per_worker = {per}
[[device]]
kind = "{kind}"
count = {count}
name = "d{{n}}"
{spec}
{extra}
"""))


def test_a_slash_15_holds_100000_devices_across_its_two_16s() -> None:
    plan = plan_of('"127.64.0.0/15"', 100_000, per=500)
    hosts = [d.host for d in plan.devices]
    assert hosts[0] == "127.64.0.1" and hosts[65533] == "127.64.255.254"
    assert hosts[65534] == "127.64.255.255" and hosts[65535] == "127.65.0.0"  # inside a /15: plain hosts
    assert hosts[-1] == "127.65.134.160" and len(set(hosts)) == 100_000
    assert len(plan.workers) == 200 and plan.worker_devices("w199")[-1].name == "d100000"
    again = Plan.from_json(json.loads(plan.dumps()))  # plan.json: options written once, a row per device
    assert again == plan and again.devices[0].options is again.devices[-1].options
    assert len(json.loads(plan.dumps())["options"]) == 1


def test_several_cidrs_and_ranges_are_taken_in_order_without_enumerating() -> None:
    # a /8 of 16 million addresses first: taking 3 from it must not walk the rest
    plan = plan_of('["127.0.0.0/8"]', 3)
    assert [d.host for d in plan.devices] == ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
    plan = plan_of('["127.70.0.0/30", "127.71.255.254-127.72.0.1", "127.73.0.0/16"]', 8)
    assert [d.host for d in plan.devices] == [
        "127.70.0.1", "127.70.0.2",  # the /30's two hosts
        "127.71.255.254", "127.71.255.255", "127.72.0.0", "127.72.0.1",  # the range, inclusive
        "127.73.0.1", "127.73.0.2"]


def test_pool_overlap_and_exhaustion_are_one_line() -> None:
    with pytest.raises(ConfigError) as info:
        plan_of('["127.74.0.0/15", "127.75.3.0/24"]', 3)
    assert str(info.value) == ("fleet.toml: fleet: key 'address_pool': pools '127.74.0.0/15' and "
                               "'127.75.3.0/24' overlap")
    with pytest.raises(ConfigError) as info:
        plan_of('["127.76.0.0/30", "127.77.0.0/31"]', 5)
    assert str(info.value) == ("fleet.toml: device[0]: key 'count': address pool exhausted: fleet "
                               "address_pool ['127.76.0.0/30', '127.77.0.0/31'] has 4 addresses left, "
                               "5 needed")


def test_a_worker_that_cannot_fit_the_open_files_limit_is_refused_in_one_line(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv(ENV, "300")
    text = f"""
[fleet]
name = "nofit"
address_pool = "127.92.{OCTET}.0/24"
devices_per_worker = 100
[[device]]
kind = "enip"
count = 150
name = "plc{{n}}"
tags = ["A=INT"]
"""
    path = tmp_path / "fleet.toml"
    path.write_text(text)
    message = (f"cpppo-fleet: {path}: fleet: key 'devices_per_worker': worker w000's 100 devices need "
               "364 open files (listening sockets, a health connection each, 64 more), over the "
               f"open-files limit of 300 (${ENV}): at most 78 enip devices per worker")
    for command in (["validate"], ["up", "--state-dir", str(tmp_path / "state")]):  # the same refusal
        result = CliRunner().invoke(app, [*command, str(path)])
        assert result.exit_code == 2 and result.output.strip() == message, result.output
    assert not (tmp_path / "state" / "supervisord.pid").exists()
    monkeypatch.setenv(ENV, "1000")  # room for them: the same file plans
    assert len(expand(parse(text)).workers) == 2


@pytest.mark.slow
def test_past_the_open_files_limit_the_poller_shards_and_status_summarises(monkeypatch, tmp_path,
                                                                           fleets) -> None:
    """400 devices with every process limited to 300 open files: one poller cannot keep 400
    connections, so two poller programs share the devices, and all 400 are healthy."""
    monkeypatch.setenv(ENV, "300")
    assert poller_shards(400) == 2
    fleet = CliFleet(tmp_path, f"""
[fleet]
name = "shards"
address_pool = "127.93.{OCTET}.0/23"
health_interval = 1.0
health_timeout = 2.0
devices_per_worker = 100
[[device]]
kind = "modbus"
count = 400
name = "pump{{n:03}}"
port = 1502
registers = ["40001-40004=7"]
""")
    fleets.append(fleet)
    out = fleet.cli("up", "--timeout", "120")
    assert "400/400 devices healthy in 4 workers" in out, out
    programs = fleet.backend.status()
    assert set(health_programs(2)) <= set(programs) and "health-2" not in programs
    assert "shard 1 of 2" in fleet.cli("logs", "health-1", "--lines", "5000")
    pid = programs["health"].pid
    limits = Path(f"/proc/{pid}/limits").read_text()
    assert [line.split()[3] for line in limits.splitlines() if line.startswith("Max open files")] == ["300"]

    # the summary: counts by state, kind and worker; the devices not healthy listed
    fleet.cli("fault", "pump007", "offline")
    until(lambda: fleet.devices()["pump007"]["state"] == "faulted", 30, "pump007 faulted")
    out = fleet.cli("status", code=1)
    assert "by kind" in out and "by worker" in out and "not healthy: 1" in out, out
    assert "pump007" in out and "pump008" not in out and "399 healthy / 400 total, 1 faulted" in out, out
    assert "--all" in out
    rows = fleet.cli("status", "--all", code=1)
    assert all(f"pump{n:03}" in rows for n in range(1, 401)), rows[-2000:]
    only = fleet.cli("status", "--only", "pump01[0-2]", "--only", "w003", code=1)
    assert "pump010" in only and "pump012" in only and "pump350" in only and "pump013" not in only
    faulted = fleet.cli("status", "--state", "faulted", code=1)
    assert "pump007" in faulted and "pump001" not in faulted
    data = json.loads(fleet.invoke("status", "--json", "--state", "faulted", code=1).stdout)
    assert [d["name"] for d in data["devices"]] == ["pump007"] and data["total"] == 400
    bad = fleet.invoke("status", "--state", "sleepy", code=2).output
    assert "'sleepy' is not a device state" in bad
    fleet.cli("fault", "--clear")
    until(fleet.all_healthy, 60, "all healthy after clearing the fault")


def test_a_poll_that_times_out_while_connecting_leaves_no_socket_open() -> None:
    """A device that accepts the connection but never answers Register Session: the poller
    must close the connection it opened (a poller of 100,000 devices cannot leak one a poll)."""
    import asyncio

    from fleet.poller import Poller
    from tests.support import free_port

    host = f"127.94.{OCTET}.1"
    port = free_port(host)
    plan = plan_of(f'"{host}/32"', 1, kind="enip", extra=f"port = {port}")
    closed: list[bool] = []

    async def scenario() -> None:
        async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(1 << 16)  # the Register Session request, never answered
            eof = await asyncio.wait_for(reader.read(1 << 16), 10.0) == b""  # the poller closed it
            closed.append(eof)
            writer.close()

        server = await asyncio.start_server(mute, host, port)
        try:
            poller = Poller(timeout=0.3, concurrency=1)
            result = await poller.poll(plan.devices[0])
            assert not result.ok and poller.clients == {}
            for _ in range(100):
                if closed:
                    break
                await asyncio.sleep(0.1)
        finally:
            server.close()
            await server.wait_closed()

    asyncio.run(scenario())
    assert closed == [True]


def test_patterned_identity_values_are_made_and_checked_for_every_device() -> None:
    # the fixed values are the first device's; a pattern is formatted (and checked) per device
    plan = plan_of('"127.66.0.0/24"', 3, kind="enip",
                   extra='identity = { product_name = "Line {n}", vendor_id = 7, '
                         'serial_number = "0x1{n:03}" }')
    assert [d.identity_dict for d in plan.devices] == [
        {"product_name": f"Line {n}", "serial_number": 0x1000 + n, "vendor_id": 7} for n in (1, 2, 3)]
    # a pattern the first device fits (0xf0000000) and the next does not (0x100000000 > UDINT)
    with pytest.raises(ConfigError) as refused:
        plan_of('"127.66.1.0/24"', 2, kind="enip",
                extra='first = 15\nidentity = { serial_number = "0x{n:x}0000000" }')
    message = str(refused.value)
    assert "device[0]" in message and "identity" in message and "'d16'" in message and "\n" not in message


def neighbour_tables(root: Path, thresh2: int = 512, thresh3: int = 1024) -> list[Path]:
    """/proc/sys/net/ipv{4,6}/neigh/default as the kernel leaves them, under ``root``."""
    tables = []
    for family in ("ipv4", "ipv6"):
        table = root / "net" / family / "neigh" / "default"
        table.mkdir(parents=True)
        (table / "gc_thresh2").write_text(f"{thresh2}\n")
        (table / "gc_thresh3").write_text(f"{thresh3}\n")
        tables.append(table)
    return tables


def docker_plan(count: int) -> Plan:
    return expand(parse(f"""
[fleet]
name = "arp"
backend = "docker"
address_pool = "172.27.0.0/21"
devices_per_container = 1
docker_image = "img"
[[device]]
kind = "enip"
count = {count}
name = "plc{{n:04}}"
tags = ["A=INT"]
"""))


def test_a_thousand_containers_get_room_in_the_neighbour_tables(monkeypatch, tmp_path) -> None:
    """The kernel's one ARP table holds 1,024 entries by default; 600 and 1,000 containers of a
    device each overflowed it here (devices that never answered).  ``up`` raises it first."""
    from fleet import limits
    from fleet.backends.base import BackendError
    from fleet.backends.docker.backend import DockerBackend

    tables = neighbour_tables(tmp_path)
    monkeypatch.setattr(limits, "NEIGHBOUR_TABLES", tuple(tables))
    backend = DockerBackend(docker_plan(1000), tmp_path / "state", client=object())
    bridges = len(backend.networks)
    assert bridges == 36 and len(backend.containers) == 1000  # 28 devices a /27
    need = limits.neighbour_entries(1000 + bridges)
    assert need == 4400
    assert backend._neighbour_room() == [
        f"raised net.{family}.neigh.default.{key} from {was} to {value} for 1036 addresses on bridges "
        "(4400 neighbour entries)"
        for family in ("ipv4", "ipv6") for key, was, value in (("gc_thresh3", 1024, 8192),
                                                               ("gc_thresh2", 512, 4096))]
    assert [(t / "gc_thresh3").read_text() for t in tables] == ["8192\n"] * 2
    assert [(t / "gc_thresh2").read_text() for t in tables] == ["4096\n"] * 2
    assert backend._neighbour_room() == []  # enough already: nothing written
    assert limits.make_neighbour_room(3000, tables) != [] and limits.make_neighbour_room(10, tables) == []
    assert (tables[0] / "gc_thresh3").read_text() == "16384\n"  # raised again, never lowered

    # a small fleet leaves the kernel's defaults alone; a table the kernel lacks is skipped
    small = neighbour_tables(tmp_path / "small")
    assert limits.make_neighbour_room(150, [*small, tmp_path / "none"]) == []
    assert [(t / "gc_thresh3").read_text() for t in small] == ["1024\n"] * 2

    # not root (or /proc/sys read-only): up stops with one line naming the sysctl to set
    def refused(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(limits, "NEIGHBOUR_TABLES", tuple(neighbour_tables(tmp_path / "ro")))
    monkeypatch.setattr(Path, "write_text", refused)
    with pytest.raises(BackendError) as error:
        backend._neighbour_room()
    assert str(error.value) == (
        "1036 addresses on bridges need 4400 entries in the kernel's neighbour table; "
        "net.ipv4.neigh.default.gc_thresh3 is 1024 and cannot be raised (Permission denied): "
        "run `sysctl -w net.ipv4.neigh.default.gc_thresh3=8192` as root")
