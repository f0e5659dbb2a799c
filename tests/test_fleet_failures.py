"""Failure modes of the process backend, and health-poller correctness.

Small Modbus fleets on their own loopback addresses (127.89.<run>.<16k+i>), driven through the
CLI and always brought down in teardown: a device whose port another process holds, `down`
and `status` with nothing up, two `up`s racing, a deleted or corrupt health database, a state
folder on a read-only file system.  Then the poller: identity mismatches, the latency window,
and retention over many sweeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleet.backends.base import BackendError, StateDir
from fleet.backends.lock import state_lock
from fleet.config import parse
from fleet.plan import Plan, expand
from fleet.report import device_reports
from fleet.store import HealthResult, Store, open_store
from tests.fleet_support import CliFleet, until
from tests.support import ROOT, free_port, running

RUN = 20 + os.getpid() % 200  # third octet of this run's addresses
SQUATTER = """
import socket, sys, time
s = socket.socket()
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(8)
s.settimeout(0.2)
held, deadline = [], time.monotonic() + 120
while time.monotonic() < deadline:   # accept and never answer
    try:
        held.append(s.accept()[0])
    except OSError:
        pass
"""


def fleet_text(block: int, port: int, count: int = 3) -> str:
    return f"""
[fleet]
name = "fail{block}"
address_pool = "127.89.{RUN}.{16 * block}/28"
health_interval = 0.3
health_timeout = 0.5
health_retention = 20
devices_per_worker = {count}

[[device]]
kind = "modbus"
count = {count}
name = "pump{{n}}"
port = {port}
registers = ["40001-40010=7"]
"""


def small_fleet(tmp: Path, block: int, state: Path | None = None) -> CliFleet:
    """A small Modbus fleet on 127.89.<run>.<16 * block + n>."""
    return CliFleet(tmp, fleet_text(block, free_port(f"127.89.{RUN}.{16 * block + 1}")), state)


@contextlib.contextmanager
def brought_down(fleet: CliFleet) -> Iterator[CliFleet]:
    try:
        yield fleet
    finally:
        with contextlib.suppress(BackendError):
            fleet.backend.down()


def processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that mention ``text`` (read from /proc; nothing is signalled)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                if text in cmdline and "-c import sys; from fleet.cli" not in cmdline:
                    out.append(cmdline)
    return out


# -- the process backend's failure modes ---------------------------------------------------------


@pytest.mark.slow
def test_a_device_whose_port_is_taken_is_down_with_the_bind_error(tmp_path: Path) -> None:
    with brought_down(small_fleet(tmp_path, 1)) as fleet:
        pump2 = fleet.plan.device("pump2")
        argv = [sys.executable, "-c", SQUATTER, pump2.host, str(pump2.port)]
        with running(argv, listen=(pump2.host, pump2.port)):
            out = fleet.cli("up", "--timeout", "60", code=1)
            assert "2/3 devices healthy" in out
            assert "1 device not healthy; first: pump2: cannot serve at" in out and "in use" in out
            devices = fleet.devices()
            assert devices["pump2"]["state"] == "down" and "in use" in devices["pump2"]["error"]
            assert devices["pump1"]["state"] == devices["pump3"]["state"] == "healthy"
            assert "pump2: cannot serve" in fleet.cli("logs", "pump2")
        # the squatter is gone: the worker's next attempt serves pump2
        until(fleet.all_healthy, what="pump2 served once its port is free")


def test_down_and_status_with_nothing_up(tmp_path: Path) -> None:
    fleet = small_fleet(tmp_path, 2)
    assert "is down" in fleet.cli("down")
    assert not fleet.state.exists()  # down makes nothing
    out = fleet.cli("status", code=1)
    assert out.strip() == (f"cpppo-fleet: fleet 'fail2' is not up (0 healthy / 3 total); "
                           f"bring it up with: cpppo-fleet up {fleet.path} --state-dir {fleet.state}")
    status = json.loads(fleet.invoke("status", "--json", code=1).stdout)
    assert status["up"] is False and {d["state"] for d in status["devices"]} == {"stopped"}
    fleet.state.mkdir()  # a state folder left from an earlier fleet, nothing running
    assert "is down" in fleet.cli("down")
    assert "not up" in fleet.cli("status", code=1)


@pytest.mark.slow
def test_two_ups_racing_one_waits_and_nothing_is_doubled(tmp_path: Path) -> None:
    with brought_down(small_fleet(tmp_path, 3)) as fleet:
        procs = [subprocess.Popen(fleet.argv("up", "--timeout", "30"), stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, cwd=ROOT, start_new_session=True)
                 for _ in range(2)]
        try:
            outputs = [p.communicate(timeout=120)[0] for p in procs]
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        assert [p.returncode for p in procs] == [0, 0], outputs
        assert all("3/3 devices healthy" in out for out in outputs), outputs
        conf = str(fleet.state / "supervisord.conf")
        assert len(processes_mentioning(f"supervisord -c {conf}")) == 1
        assert len(processes_mentioning(f"fleet.worker {fleet.state}")) == 1
        assert len(processes_mentioning(f"fleet.health {fleet.state}")) == 1
        assert fleet.all_healthy()

        # a command that cannot get the lock in time says who holds it, in one line
        held = r"cpppo-fleet up \(pid \d+\) still holds .*lock after"
        with state_lock(StateDir(fleet.state), "up"), pytest.raises(BackendError, match=held), \
                state_lock(StateDir(fleet.state), "down", timeout=0.3):
            pass


@pytest.mark.slow
def test_a_deleted_health_database_is_started_afresh(tmp_path: Path) -> None:
    with brought_down(small_fleet(tmp_path, 4)) as fleet:
        fleet.cli("up")
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{fleet.state / 'health.sqlite'}{suffix}")
        fleet.cli("status", code=None)  # works (devices may show as starting until the next sweep)
        until(fleet.all_healthy, what="healthy again on a new database")
        assert (fleet.state / "health.sqlite").exists()


@pytest.mark.slow
def test_a_corrupt_health_database_is_said_and_put_aside(tmp_path: Path) -> None:
    with brought_down(small_fleet(tmp_path, 5)) as fleet:
        fleet.cli("up")
        database = fleet.state / "health.sqlite"
        database.write_bytes(b"this is not a database\n" * 200)
        out = fleet.cli("status", code=None)
        assert "health database" in out or "healthy / 3 total" in out
        until(fleet.all_healthy, what="healthy again on a new database")
        assert (fleet.state / "health.sqlite.corrupt").exists()

    # corrupt while down: `up` puts it aside and comes up
    database.write_bytes(b"\xff" * 4096)
    fleet = small_fleet(tmp_path, 5, state=fleet.state)
    with brought_down(fleet):
        assert "3/3 devices healthy" in fleet.cli("up")


@contextlib.contextmanager
def read_only_folder(tmp: Path) -> Iterator[Path]:
    """A folder on a read-only file system (a read-only tmpfs as root; mode 0555 otherwise)."""
    folder = tmp / "ro"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield folder
        finally:
            folder.chmod(0o755)
        return
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)],
                           capture_output=True, text=True, timeout=30)
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs here: {mount.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], capture_output=True, timeout=30)


def test_a_state_folder_on_a_read_only_path_is_a_one_line_error(tmp_path: Path) -> None:
    with read_only_folder(tmp_path) as folder:
        fleet = small_fleet(tmp_path, 6, state=folder / "state")
        out = fleet.cli("up", code=1)
        assert out.count("\n") == 1 and out.startswith("cpppo-fleet: ") and str(folder / "state") in out
        assert "Read-only file system" in out or "Permission denied" in out
        assert "not up" in fleet.cli("status", code=1)
        fleet.cli("down")


# -- the health poller -----------------------------------------------------------------------


def served_plan(block: int, text: str) -> Plan:
    host = f"127.89.{RUN}.{16 * block + 1}"
    return expand(parse(text.format(pool=f"127.89.{RUN}.{16 * block}/28", port=free_port(host))))


def test_a_device_with_another_identity_than_planned_is_unhealthy() -> None:
    from fleet.poller import Poller
    from fleet.worker import Worker

    plan = served_plan(7, """
[fleet]
name = "ident"
address_pool = "{pool}"
[[device]]
kind = "enip"
count = 1
name = "line{{n}}"
port = {port}
tags = ["SCADA=INT[10]"]
identity.product_name = "L61"
identity.serial_number = 4660
identity.vendor_id = 1
identity.product_type = 14
identity.product_code = 54
""")
    device = plan.devices[0]
    others = [("product_name", "L62"), ("serial_number", 4661), ("vendor_id", 2), ("product_type", 12),
              ("product_code", 55)]

    async def scenario() -> list[HealthResult]:
        worker = Worker("w000", [device])
        assert await worker.start_pending() == []
        poller = Poller(timeout=1.0, concurrency=4)
        try:
            results = [await poller.poll(device)]
            for key, value in others:  # the plan expects something else than what answers
                identity = tuple(sorted({**device.identity_dict, key: value}.items()))
                results.append(await poller.poll(device._replace(identity=identity)))
        finally:
            await poller.close()
            await worker.close()
        return results

    results = asyncio.run(scenario())
    assert results[0].ok, results[0]
    for (key, value), result in zip(others, results[1:], strict=True):
        assert not result.ok and "\n" not in result.error
        actual = device.identity_dict[key]
        assert result.error == (f"identity {key} is {actual!r}, the plan says {value!r} "
                                "(another device at this address?)"), result


def test_latency_percentiles_cover_each_devices_last_results(tmp_path: Path) -> None:
    plan = expand(parse("""
[fleet]
name = "lat"
address_pool = "127.89.0.0/29"
health_retention = 5
[[device]]
kind = "modbus"
count = 2
name = "pump{n}"
registers = ["40001"]
"""))
    with Store(tmp_path / "h.sqlite") as store:
        for i in range(1, 21):  # pump1: 20 polls of i ms; pump2 polled alone in between (as `up` does)
            store.record([HealthResult("pump1", True, i / 1000, None, 1000.0 + i),
                          HealthResult("pump2", True, 0.5, None, 1000.0 + i)], retention=5)
            store.record([HealthResult("pump2", i % 2 == 0, 0.5 if i % 2 == 0 else None,
                                       None if i % 2 == 0 else "no answer", 1000.5 + i)], retention=5)
        history = store.history()
    assert history["pump1"].latencies == pytest.approx((0.016, 0.017, 0.018, 0.019, 0.020))
    assert len(history["pump2"].latencies) == 4  # its last 5 results, of which 1 failed
    assert history["pump2"].last.time == 1020.5 and history["pump2"].last.ok
    from fleet.backends.base import ProgramStatus
    from fleet.states import ProcessState

    programs = {"w000": ProgramStatus("w000", ProcessState.RUNNING, 1, 900.0)}
    reports = {r.name: r for r in device_reports(plan, plan, programs, history, {}, now=1021.0)}
    assert reports["pump1"].p50 == pytest.approx(0.018) and reports["pump1"].p99 == pytest.approx(0.020)
    assert reports["pump1"].latency == pytest.approx(0.020)


def test_retention_keeps_the_database_bounded_over_many_sweeps(tmp_path: Path) -> None:
    from fleet.health import Schedule
    from fleet.worker import Worker

    plan = served_plan(8, """
[fleet]
name = "ret"
address_pool = "{pool}"
health_interval = 0.001
health_timeout = 0.5
health_retention = 4
[[device]]
kind = "modbus"
count = 3
name = "pump{{n}}"
port = {port}
registers = ["40001-40004"]
""")
    (tmp_path / "plan.json").write_text(plan.dumps())
    sweeps = 300

    async def scenario() -> None:
        worker = Worker("w000", list(plan.devices[:2]))  # pump3 is not served: failures are kept too
        assert await worker.start_pending() == []
        try:
            await Schedule(tmp_path).run(max_sweeps=sweeps)
        finally:
            await worker.close()

    asyncio.run(scenario())
    with open_store(tmp_path / "health.sqlite") as store:
        (rows,) = store.db.execute("SELECT COUNT(*) FROM health").fetchone()
        last = store.sweeps()
        history = store.history()
    assert last == sweeps and rows == 3  # one row per device, its last 4 results packed in it
    assert len(history["pump1"].latencies) == 4 and history["pump3"].last.error
    assert (tmp_path / "health.sqlite").stat().st_size < 256 * 1024


def test_a_damaged_database_is_one_line_and_put_aside_only_by_writers(tmp_path: Path) -> None:
    from fleet.store import StoreError

    database = tmp_path / "health.sqlite"
    database.write_bytes(b"not a database at all\n" * 100)
    with pytest.raises(StoreError) as info:
        Store(database)
    assert str(info.value) == f"health database {database}: file is not a database" and info.value.corrupt
    with open_store(database) as store:  # a writer: the damaged file is kept aside, a new one begins
        store.record([HealthResult("pump1", True, 0.001, None, 1.0)], retention=3)
    assert (tmp_path / "health.sqlite.corrupt").read_bytes().startswith(b"not a database")
    with Store(database) as store:
        assert store.history()["pump1"].last.ok


def test_a_worker_says_a_bind_error_in_one_line_and_counts_devices(caplog) -> None:
    import socket

    from fleet.worker import Worker, devices

    plan = served_plan(9, """
[fleet]
name = "bind"
address_pool = "{pool}"
[[device]]
kind = "modbus"
count = 2
name = "pump{{n}}"
port = {port}
registers = ["40001-40004"]
""")
    taken = plan.devices[1]
    squatter = socket.socket()
    squatter.bind((taken.host, taken.port))
    squatter.listen(1)

    async def scenario() -> tuple[list, dict]:
        worker = Worker("w000", list(plan.devices))
        try:
            return await worker.start_pending(), dict(worker.errors)
        finally:
            await worker.close()

    try:
        with caplog.at_level("INFO", logger="fleet.worker"):
            failed, errors = asyncio.run(scenario())
    finally:
        squatter.close()
    assert failed == [taken]
    assert errors == {taken.name: f"cannot serve at {taken.endpoint}: Address already in use"}
    assert "closed 1 device" in caplog.text and "closed 1 devices" not in caplog.text
    assert (devices(1), devices(2)) == ("1 device", "2 devices")
