"""The fault control channel (fleet.control), the fleet's fault record and history, and
``[[fault]]`` schedules (fleet.faults), without a running fleet."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from cpppo.faults import FaultError, FaultState, parse_fault
from fleet import faults
from fleet.control import ControlError, ControlServer, request, socket_path


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[tuple[Path, dict[str, FaultState]]]:
    """A control server for worker ``w0`` hosting pump1, pump2, meter1, on its own loop."""
    # a deep state folder: the socket path is over the 107-byte unix limit
    state = tmp_path / ("s" * 60) / ("t" * 60)
    slots = {name: FaultState() for name in ("pump1", "pump2", "meter1")}
    loop = asyncio.new_event_loop()
    server = ControlServer(socket_path(state, "w0"), "w0", slots)
    ready = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(server.start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(10)
    yield state, slots

    async def shutdown() -> None:
        server.close()
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    asyncio.run_coroutine_threadsafe(shutdown(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


def devices(*names: str) -> list:
    return [SimpleNamespace(name=n, worker="w0") for n in names]


def test_long_state_folder_and_ping(worker) -> None:
    state, _ = worker
    assert len(str(socket_path(state, "w0"))) > 107
    answer = request(socket_path(state, "w0"), {"op": "ping"})
    assert answer["worker"] == "w0" and answer["devices"] == 3
    assert oct(socket_path(state, "w0").stat().st_mode & 0o777) == "0o600"


def test_apply_list_clear_record_history(worker) -> None:
    state, slots = worker
    fault = parse_fault("latency", "200ms..800ms")
    done, failed = faults.apply(state, devices("pump1", "pump2"), fault)
    assert sorted(done) == ["pump1", "pump2"] and not failed
    assert slots["pump1"].active == fault and slots["meter1"].active is None
    listed = request(socket_path(state, "w0"), {"op": "faults"})["faults"]
    assert sorted(listed) == ["pump1", "pump2"] and listed["pump1"]["describe"] == "latency 200-800ms"
    assert sorted(faults.active(state)) == ["pump1", "pump2"]

    done, _ = faults.clear(state, devices("pump1"))
    assert done == ["pump1"] and slots["pump1"].active is None and slots["pump2"].active == fault
    assert sorted(faults.active(state)) == ["pump2"]
    events = [(e["event"], e["device"]) for e in faults.history(state)]
    assert events == [("inject", "pump1"), ("inject", "pump2"), ("clear", "pump1")]


def test_apply_and_clear_ask_the_pollers_to_check_at_once(worker) -> None:
    """`fault` asks the health pollers to poll the faulted devices once, now; `--clear` asks
    them to poll the devices that were faulted until they answer.  Every poller (shard) sees
    each request once; a request is removed once it is old."""
    state, _ = worker
    seen: set[str] = set()
    assert faults.checks_requested(state, seen) == []
    faults.apply(state, devices("pump1", "pump2"), parse_fault("offline"))
    assert faults.checks_requested(state, seen) == [(["pump1", "pump2"], False)]
    other_shard: set[str] = set()
    faults.clear(state, devices("pump1", "pump2", "meter1"))  # meter1 had none: not asked about
    assert faults.checks_requested(state, seen) == [(["pump1", "pump2"], True)]
    assert faults.checks_requested(state, seen) == []  # once
    assert sorted(faults.checks_requested(state, other_shard)) == [(["pump1", "pump2"], False),
                                                                   (["pump1", "pump2"], True)]
    later = time.time() + faults.CHECK_KEEP + 1
    assert faults.checks_requested(state, set(), now=later) == []
    assert not list(state.glob(f"{faults.CHECK_PREFIX}*"))


def test_bad_requests_get_an_error_not_a_crash(worker) -> None:
    state, slots = worker
    path = socket_path(state, "w0")
    with pytest.raises(ControlError, match="unknown op 'explode'"):
        request(path, {"op": "explode"})
    with pytest.raises(ControlError, match="bad fault request"):
        request(path, {"op": "fault", "devices": ["pump1"], "fault": {"kind": "melt"}})
    assert slots["pump1"].active is None
    assert request(path, {"op": "ping"})["ok"]  # still serving


def test_workers_are_asked_at_once_and_one_unreachable_is_reported(worker) -> None:
    state, slots = worker
    asked = [*devices("pump1", "meter1"), SimpleNamespace(name="far1", worker="w9")]
    done, failed = faults.apply(state, asked, parse_fault("drop", "0.5"))
    assert sorted(done) == ["meter1", "pump1"] and list(failed) == ["w9"]
    assert "no control socket" in failed["w9"]
    assert slots["meter1"].active.kind == "drop" and sorted(faults.active(state)) == ["meter1", "pump1"]
    done, failed = faults.clear(state, asked)
    assert "pump1" in done and list(failed) == ["w9"] and faults.active(state) == {}


def test_unreachable_worker_is_reported(tmp_path: Path) -> None:
    done, failed = faults.apply(tmp_path, devices("pump1"), parse_fault("timeout"))
    assert done == [] and "no control socket" in failed["w0"]
    assert faults.active(tmp_path) == {}


def test_expired_faults_leave_the_record(tmp_path: Path) -> None:
    fault = parse_fault("offline", now=100.0, duration="5s")
    faults.record(tmp_path, "inject", ["pump1"], fault, "cli", when=100.0)
    assert list(faults.active(tmp_path, now=104.0)) == ["pump1"]
    assert faults.active(tmp_path, now=106.0) == {}


NAMES = [f"pump{i}" for i in range(10)] + [f"meter{i}" for i in range(5)]


def test_timed_rows_hit_every_matching_device() -> None:
    row = faults.parse_schedule_row({"devices": "meter*", "kind": "offline", "at": "30s", "for": "10s"})
    events = faults.expand_schedule([row], NAMES)
    assert [(e.at, e.device) for e in events] == [(30.0, f"meter{i}") for i in range(5)]
    fault = events[0].fault(epoch=1000.0)
    assert (fault.since, fault.until) == (1030.0, 1040.0)


def test_chaos_rows_repeat_exactly_with_their_seed() -> None:
    data = {"devices": "pump*", "kind": "drop", "arg": 0.5, "rate": "6/min", "stop": "10m", "seed": 42}
    first = faults.expand_schedule([faults.parse_schedule_row(data)], NAMES)
    again = faults.expand_schedule([faults.parse_schedule_row(data)], NAMES)
    other = faults.expand_schedule([faults.parse_schedule_row({**data, "seed": 43})], NAMES)
    assert first == again and first != other
    assert 30 <= len(first) <= 95  # about 60 events in ten minutes
    assert all(e.device.startswith("pump") and 0 < e.at < 600 for e in first)
    assert first == sorted(first)


@pytest.mark.parametrize(("row", "message"), [
    ({"devices": "p*", "kind": "offline"}, "exactly one of 'at'"),
    ({"devices": "p*", "kind": "offline", "at": "30s", "rate": "1/s"}, "exactly one of 'at'"),
    ({"devices": "p*", "kind": "offline", "at": "soon"}, "bad 'at' 'soon'"),
    ({"devices": "p*", "kind": "melt", "at": "1s"}, "unknown fault kind 'melt'"),
    ({"devices": "p*", "kind": "latency", "arg": "fast", "at": "1s"}, "bad latency 'fast'"),
    ({"devices": "p*", "kind": "drop", "rate": "often", "stop": "1m"}, "bad rate 'often'"),
    ({"devices": "p*", "kind": "drop", "rate": "1/s"}, "needs 'stop'"),
    ({"devices": "p*", "kind": "drop", "rate": "1000/s", "stop": "1h"}, "over 100000 events"),
    ({"devices": "p*", "kind": "drop", "at": "1s", "colour": "red"}, "unknown key 'colour'"),
    ({"kind": "drop", "at": "1s"}, "key 'devices'"),
])
def test_bad_schedule_rows(row, message) -> None:
    with pytest.raises(FaultError, match=message):
        faults.parse_schedule_row(row)


def test_worker_side_reapplies_and_runs_its_schedule(tmp_path: Path) -> None:
    """attach(): faults recorded active are applied at start; the worker's scheduled events
    fire at their time (a fake epoch in the past makes one already due) and are recorded."""
    faults.record(tmp_path, "inject", ["pump1"], parse_fault("timeout"), "cli")
    (tmp_path / faults.SCHEDULE_EPOCH_FILE).write_text(f"{time.time() - 10:.6f}\n")
    rows = [faults.parse_schedule_row({"devices": "pump2", "kind": "offline", "at": "9.8s", "for": "1m"}),
            faults.parse_schedule_row({"devices": "meter1", "kind": "freeze", "at": "1s", "for": "2s"}),
            faults.parse_schedule_row({"devices": "other*", "kind": "freeze", "at": "0s"})]
    events = faults.expand_schedule(rows, ["pump1", "pump2", "meter1", "other1"])
    slots = {name: FaultState() for name in ("pump1", "pump2", "meter1")}

    async def scenario() -> None:
        server = await faults.attach("w0", tmp_path, slots, events)
        try:
            await asyncio.wait_for(server.schedule, 5)
        finally:
            server.close()

    asyncio.run(scenario())
    assert slots["pump1"].active.kind == "timeout"
    assert slots["pump2"].active.kind == "offline"
    assert slots["meter1"].active is None  # its window (1-3 s after up) had passed
    assert [(e["event"], e["device"], e["source"]) for e in faults.history(tmp_path)][-1] == \
        ("inject", "pump2", "schedule")
