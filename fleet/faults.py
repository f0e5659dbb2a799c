"""Faults across a fleet: inject, clear and list them through the workers' control sockets,
keep what is active and what happened in the state folder, and expand ``[[fault]]`` schedules.

State files, in the fleet's control folder (``<state>/control/``, beside the workers'
sockets; the Docker backend bind-mounts it into each container):

- ``faults.json``: the injected faults still active, ``{device: fault}``; a worker that
  (re)starts applies those of its devices, so ``restart`` does not silently heal a device;
- ``fault-history.jsonl``: one JSON object per event (``inject``, ``clear``), with wall-clock
  time, device, fault and source (``cli`` or ``schedule``), for matching against what the
  system under test logged (``cpppo-fleet faults --history``).

A schedule row is either *timed* (``at = "30s"`` after ``up``, for the devices matching
``devices``) or *chaos* (``rate = "6/min"``: events at random, each on one device drawn from
``devices``, between ``start`` and ``stop``), each with ``kind``, ``arg``, ``for`` and ``seed``:
the same rows and seed give the same events, so a run can be repeated exactly.
"""

from __future__ import annotations

import contextlib
import fcntl
import fnmatch
import json
import logging
import os
import random
import re
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cpppo.faults import KINDS, Fault, FaultError, parse_duration, parse_fault
from fleet.control import ControlError, control_dir, request, socket_path

__all__ = [
    "ACTIVE_FILE",
    "HISTORY_FILE",
    "Event",
    "ScheduleRow",
    "active",
    "apply",
    "checks_requested",
    "clear",
    "control_dir",
    "expand_schedule",
    "history",
    "parse_schedule_row",
    "record",
    "request_check",
]

log = logging.getLogger(__name__)

ACTIVE_FILE = "faults.json"
HISTORY_FILE = "fault-history.jsonl"
SCHEDULE_EPOCH_FILE = "schedule-epoch"  # when the schedule's timeline started (the first up)
MAX_EVENTS = 100_000  # a chaos row producing more than this over its window is refused
_RATE = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*/\s*(s|sec|min|m|h|hour)\s*$")
_PER = {"s": 1.0, "sec": 1.0, "min": 60.0, "m": 60.0, "h": 3600.0, "hour": 3600.0}


@contextlib.contextmanager
def _locked(control: Path) -> Iterator[None]:
    control.mkdir(parents=True, exist_ok=True)
    with open(control / ".faults.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _read_active(control: Path) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads((control / ACTIVE_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_active(control: Path, data: Mapping[str, Any]) -> None:
    tmp = control / f".{ACTIVE_FILE}.{os.getpid()}"
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, control / ACTIVE_FILE)


def record(control: Path, event: str, devices: Iterable[str], fault: Fault | None, source: str,
           when: float | None = None) -> None:
    """Append one line per device to the history and update the active file."""
    when = time.time() if when is None else when
    names = list(devices)
    with _locked(control):
        current = _read_active(control)
        with open(control / HISTORY_FILE, "a") as out:
            for name in names:
                line = {"time": round(when, 6), "event": event, "device": name, "source": source}
                if fault is not None:
                    line["fault"] = fault.describe()
                    line["until"] = fault.until
                out.write(json.dumps(line) + "\n")
                if event == "inject" and fault is not None:
                    current[name] = fault.to_dict()
                else:
                    current.pop(name, None)
        _write_active(control, current)
        for name in (ACTIVE_FILE, HISTORY_FILE):  # shared with containers of another user: group-writable
            with contextlib.suppress(OSError):
                (control / name).chmod(0o660)


def active(control: Path, now: float | None = None) -> dict[str, Fault]:
    """The faults still active (by the control folder's record), expired ones left out."""
    now = time.time() if now is None else now
    out = {}
    for name, data in _read_active(control).items():
        with contextlib.suppress(FaultError, TypeError, KeyError):
            fault = Fault.from_dict(data)
            if fault.until is None or fault.until > now:
                out[name] = fault
    return out


def history(control: Path) -> list[dict[str, Any]]:
    out = []
    with contextlib.suppress(OSError), open(control / HISTORY_FILE) as lines:
        for line in lines:
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
    return out


CHECK_PREFIX = "check-"  # control/check-*.json: devices the health pollers are asked to poll now
CHECK_KEEP = 60.0  # seconds a request file is kept (every poller shard reads it once)


def request_check(control: Path, devices: Sequence[str], until_ok: bool) -> None:
    """Ask the fleet's health pollers to poll ``devices`` now instead of at their next place in
    the health interval; ``until_ok``: again every moment until each answers (for a while).
    ``fault`` asks once (the page and metrics see the effect at once), ``fault --clear`` until
    ok (``status`` shows a cleared device healthy as soon as it is).  A file in the control
    folder, so it reaches a poller in a container too; a lost request only means waiting for
    the next sweep."""
    if not devices:
        return
    name = f"{CHECK_PREFIX}{time.time_ns()}-{os.getpid()}.json"
    tmp = control / f".{name}"
    with contextlib.suppress(OSError):
        tmp.write_text(json.dumps({"devices": list(devices), "until_ok": until_ok}))
        tmp.chmod(0o660)  # the poller's container may remove it (its user is in the group)
        os.replace(tmp, control / name)


def checks_requested(control: Path, seen: set[str], now: float | None = None) -> list[tuple[list[str], bool]]:
    """The requests of :func:`request_check` not in ``seen`` (file names, updated), each
    (devices, until_ok); files older than CHECK_KEEP seconds are removed."""
    now = time.time() if now is None else now
    out = []
    try:
        entries = list(os.scandir(control))
    except OSError:
        return out
    names = set()
    for entry in entries:
        if not entry.name.startswith(CHECK_PREFIX):
            continue
        names.add(entry.name)
        try:
            if entry.stat().st_mtime < now - CHECK_KEEP:
                os.unlink(entry.path)
                continue
            if entry.name in seen:
                continue
            data = json.loads(Path(entry.path).read_bytes())
            out.append(([str(n) for n in data["devices"]], bool(data.get("until_ok"))))
        except (OSError, ValueError, KeyError, TypeError):
            pass
    seen.intersection_update(names)
    seen.update(names)
    return out


def _by_worker(devices: Iterable[Any]) -> dict[str, list[str]]:
    workers: dict[str, list[str]] = {}
    for device in devices:
        workers.setdefault(device.worker, []).append(device.name)
    return workers


def _ask(control: Path, devices: Sequence[Any], message: Mapping[str, Any], answered: str,
         timeout: float) -> tuple[list[str], dict[str, str]]:
    """Send ``message`` (with each worker's own ``devices``) to the workers of ``devices``, all at
    once (a thread a worker, up to 32: a fleet of 1,000 workers is not asked one after the other);
    return (the devices their answers list under ``answered``, {worker: why it failed})."""
    workers = _by_worker(devices)

    def ask(worker: str) -> list[str] | str:
        try:
            answer = request(socket_path(control, worker), {**message, "devices": workers[worker]}, timeout)
        except ControlError as exc:
            return str(exc)
        return list(answer.get(answered, []))

    if len(workers) > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(32, len(workers))) as pool:
            answers = dict(zip(workers, pool.map(ask, workers), strict=True))
    else:
        answers = {worker: ask(worker) for worker in workers}
    done = [name for answer in answers.values() if isinstance(answer, list) for name in answer]
    return done, {worker: answer for worker, answer in answers.items() if isinstance(answer, str)}


def apply(control: Path, devices: Sequence[Any], fault: Fault, source: str = "cli",
          timeout: float = 5.0) -> tuple[list[str], dict[str, str]]:
    """Send ``fault`` to the workers of ``devices`` (planned devices: ``.name``, ``.worker``);
    return (devices applied, {worker: why it could not be reached})."""
    done, failed = _ask(control, devices, {"op": "fault", "fault": fault.to_dict()}, "applied", timeout)
    if done:
        record(control, "inject", done, fault, source)
        request_check(control, done, until_ok=False)
    return done, failed


def clear(control: Path, devices: Sequence[Any], source: str = "cli",
          timeout: float = 5.0) -> tuple[list[str], dict[str, str]]:
    """End the faults of ``devices``: (devices cleared, {worker: why it could not be reached})."""
    done, failed = _ask(control, devices, {"op": "clear"}, "cleared", timeout)
    # the record is cleared for every device asked about, also those whose worker is gone
    recorded = _read_active(control)
    names = [d.name for d in devices if d.name in recorded or d.name in done]
    record(control, "clear", names, None, source)
    request_check(control, [name for name in names if name in recorded], until_ok=True)  # the faulted ones
    return done, failed


# --- schedules --------------------------------------------------------------------------------------

class ScheduleError(FaultError):
    """A bad ``[[fault]]`` row: ``key`` names the key (None: the row as a whole)."""

    def __init__(self, key: str | None, message: str) -> None:
        self.key = key
        super().__init__(message)


@dataclass(frozen=True)
class ScheduleRow:
    devices: str  # a glob over device names
    kind: str
    arg: str | None
    duration: float | None  # seconds a fault lasts (None: until cleared)
    at: float | None  # timed: seconds after up
    rate: float | None  # chaos: events per second
    start: float  # chaos window, seconds after up
    stop: float | None
    seed: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ScheduleRow:
        return cls(**data)


@dataclass(frozen=True, order=True)
class Event:
    at: float  # seconds after up
    device: str
    kind: str
    arg: str | None
    duration: float | None
    seed: int

    def fault(self, epoch: float) -> Fault:
        """The fault this event injects, for a fleet brought up at ``epoch`` (wall clock)."""
        return parse_fault(self.kind, self.arg, now=epoch + self.at, duration=self.duration, seed=self.seed)


def _rate(text: Any) -> float:
    match = _RATE.match(str(text))
    if not match or float(match.group(1)) <= 0:
        raise FaultError(f"bad rate {text!r}: expected events per unit, such as 6/min or 0.5/s")
    return float(match.group(1)) / _PER[match.group(2)]


ROW_KEYS = {"devices", "kind", "arg", "for", "at", "rate", "start", "stop", "seed"}


def parse_schedule_row(data: Mapping[str, Any], fleet_seed: int = 0, index: int = 0) -> ScheduleRow:
    """One ``[[fault]]`` table; ScheduleError naming the key and the problem."""
    def keyed(key: str, check: Any) -> Any:  # a FaultError of ``check``, reported against ``key``
        try:
            return check()
        except ScheduleError:
            raise
        except FaultError as exc:
            raise ScheduleError(key, str(exc)) from None

    unknown = set(data) - ROW_KEYS
    if unknown:
        key = sorted(unknown)[0]
        raise ScheduleError(key, f"unknown key {key!r} (expected: {', '.join(sorted(ROW_KEYS))})")
    for key in ("devices", "kind"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise ScheduleError(key, f"key {key!r}: expected a non-empty string")
    arg = data.get("arg")
    if arg is not None and (isinstance(arg, bool) or not isinstance(arg, str | int | float)):
        raise ScheduleError("arg", "key 'arg': expected a string or number")
    arg = None if arg is None else str(arg)
    duration = None if data.get("for") is None else keyed("for", lambda: parse_duration(data["for"], "'for'"))
    keyed("kind" if data["kind"] not in KINDS else "arg",
          lambda: parse_fault(data["kind"], arg, now=0.0, duration=duration or None))
    if ("at" in data) == ("rate" in data):
        raise ScheduleError("at", "give exactly one of 'at' (a timed fault) or 'rate' (chaos)")
    at = keyed("at", lambda: parse_duration(data["at"], "'at'")) if "at" in data else None
    rate = keyed("rate", lambda: _rate(data["rate"])) if "rate" in data else None
    start = keyed("start", lambda: parse_duration(data.get("start", 0), "'start'"))
    stop = keyed("stop", lambda: parse_duration(data["stop"], "'stop'")) if "stop" in data else None
    if rate is not None:
        if stop is None:
            raise ScheduleError("stop", "a chaos row ('rate') needs 'stop', the end of its window after up")
        if stop <= start:
            raise ScheduleError("stop", "'stop' must come after 'start'")
        if rate * (stop - start) > MAX_EVENTS:
            raise ScheduleError("rate", f"rate x window gives over {MAX_EVENTS} events")
    seed = data.get("seed", fleet_seed * 1000 + index)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ScheduleError("seed", "key 'seed': expected an integer")
    return ScheduleRow(data["devices"], data["kind"], arg, duration, at, rate, start, stop, seed)


def expand_schedule(rows: Sequence[ScheduleRow], names: Sequence[str]) -> list[Event]:
    """Every event the rows give over a fleet of ``names``, in time order; deterministic."""
    events: list[Event] = []
    for row in rows:
        chosen = [n for n in names if fnmatch.fnmatchcase(n, row.devices)]
        if row.at is not None:
            events += [Event(row.at, n, row.kind, row.arg, row.duration, row.seed) for n in chosen]
            continue
        if not chosen:
            continue
        rng = random.Random(row.seed)
        t = row.start
        while len(events) < MAX_EVENTS:
            t += rng.expovariate(row.rate)
            if row.stop is not None and t >= row.stop:
                break
            events.append(Event(round(t, 6), rng.choice(chosen), row.kind, row.arg, row.duration,
                                rng.randrange(1 << 31)))
    return sorted(events)


# --- the backends' side ----------------------------------------------------------------------------

def shared_control(state_dir: Path) -> Path:
    """The control folder, made writable for the host user's group (setgid, so what the
    workers create there stays in that group): containers, running as another user with that
    group added, create their sockets in it."""
    return shared_folder(control_dir(state_dir))


def shared_folder(folder: Path) -> Path:
    """Make ``folder`` (if need be) writable for the host user's group, setgid."""
    folder.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        os.chown(folder, -1, os.getgid())
        folder.chmod(0o2770)
    return folder


def reset(state_dir: Path) -> None:
    """What ``down`` does to the control folder: no fault stays active, the schedule's
    timeline starts again at the next ``up``; the history is kept."""
    control = control_dir(state_dir)
    for name in (ACTIVE_FILE, SCHEDULE_EPOCH_FILE):
        with contextlib.suppress(FileNotFoundError):
            (control / name).unlink()


# --- the worker's side ------------------------------------------------------------------------------

def schedule_epoch(control: Path, now: float | None = None) -> float:
    """The wall-clock time schedules count from: when the fleet first came up (kept in the
    control folder, so a restarted worker keeps the same timeline; ``down`` removes it)."""
    path = control / SCHEDULE_EPOCH_FILE
    now = time.time() if now is None else now
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        with contextlib.suppress(OSError, ValueError):
            return float(path.read_text().strip() or now)
        return now
    with os.fdopen(fd, "w") as out:
        out.write(f"{now:.6f}\n")
    return now


async def attach(worker: str, control: Path, slots: Mapping[str, Any],
                 events: Sequence[Event] = (), epoch: float | None = None, group: int | None = None) -> Any:
    """Serve ``worker``'s control socket for ``slots`` ({device: FaultState}), re-apply the
    faults the control folder says are active on them, and run the scheduled ``events`` of its
    devices.  Returns the ControlServer (``close()`` it, and cancel the schedule task it holds
    as ``.schedule``)."""
    import asyncio

    from fleet.control import ControlServer

    for name, fault in active(control).items():
        if name in slots:
            slots[name].set(fault)
    server = await ControlServer(socket_path(control, worker), worker, slots, group=group).start()
    mine = [e for e in events if e.device in slots]
    if mine:
        start = schedule_epoch(control) if epoch is None else epoch
        server.schedule = asyncio.ensure_future(run_schedule(mine, start, slots, control))
    return server


async def run_schedule(events: Sequence[Event], epoch: float, slots: Mapping[str, Any], control: Path,
                       clock: Any = time.time) -> None:
    """Inject each event's fault at its time (events already past are skipped, except that a
    fault whose window is still open is applied for what is left of it)."""
    import asyncio

    for event in sorted(events):
        fault = event.fault(epoch)
        now = clock()
        if fault.until is not None and fault.until <= now:
            continue
        if fault.since > now:
            await asyncio.sleep(fault.since - now)
        slots[event.device].set(fault)
        try:
            record(control, "inject", [event.device], fault, "schedule")
        except OSError as exc:  # the fault is applied; only its record is lost
            log.warning("cannot record the scheduled %s on %s: %s", fault.describe(), event.device,
                        exc.strerror or exc)
