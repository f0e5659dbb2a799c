"""Health polling on a schedule: every device, every interval (the sweeps themselves, over
kept connections: :mod:`fleet.poller`).  Results go to the state folder's SQLite store
(``fleet.store``).

Run as ``python -m fleet.health [--shard K/N] <state-dir>``: the process backend supervises it
as the ``health`` program; it follows ``plan.json`` there as ``up`` rewrites it.  A fleet with
more devices than one process may hold connections to (``fleet.limits``) is polled by N
programs, ``health`` and ``health-1`` ...: shard K polls every Nth device from the Kth, and
``health`` (shard 0), which serves the fleet page, takes the others' results from the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sqlite3
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from fleet.plan import Plan, PlannedDevice
from fleet.poller import Poller, run_sweep
from fleet.store import HealthResult, Store, StoreError, open_store

log = logging.getLogger("fleet.health")

LOGGED = 100  # devices named in the log per change (a fleet of 100,000 coming up: a count for the rest)
QUICK = 0.2  # seconds between re-polls of the devices not yet healthy, after a change
SETTLE = 60.0  # after a change's first sweep, re-polls of the devices not yet healthy go on until
#               this many seconds pass without one turning healthy
REQUEST = "sweep.request"  # in the state folder: `up` writes it to ask for a sweep now
CHECK_FOR = 10.0  # seconds a device `fault --clear` asks about is re-polled until it answers
LOOK_EVERY = 5.0  # seconds between up's looks at the healthy names while a count says some are not
STARTING = 30.0  # seconds after its start a worker's devices wait for it to serve them before being polled


def request_sweep(state_dir: Path) -> float:
    """Ask the supervised poller of ``state_dir`` for a sweep now, and quick re-polls of the
    devices not yet healthy; returns the time asked (results from then on answer it)."""
    asked = time.time()
    (Path(state_dir) / REQUEST).write_text(f"{asked}\n")
    return asked


def shard_of(data: dict[str, Any], shard: int, shards: int) -> dict[str, Any]:
    """plan.json's ``data`` with only shard ``shard`` of ``shards``'s devices (every
    ``shards``-th from the ``shard``-th): what a poller other than shard 0 (which serves the
    fleet page of them all) keeps.  At 100,000 devices the whole plan is 113 MB of a process.

    >>> data = {"rows": [["a"], ["b"], ["c"]], "workers": [{"name": "w", "devices": ["a", "b", "c"]}]}
    >>> shard_of(data, 1, 2)
    {'rows': [['b']], 'workers': [{'name': 'w', 'devices': ['b']}], 'digest': ''}
    """
    key = "rows" if "rows" in data else "devices"
    mine = data[key][shard::shards]
    at = list(data.get("columns", ["name"])).index("name")
    names = {row[at] if key == "rows" else row["name"] for row in mine}
    workers = [{**w, "devices": [n for n in w["devices"] if n in names]} for w in data.get("workers", ())]
    return {**data, key: mine, "workers": workers, "digest": ""}  # a selection, not the whole expansion


class Schedule:
    """The supervised poller: a sweep every ``health_interval``, following plan.json.  After a
    change (plan.json rewritten, or a sweep requested by ``up``) it sweeps at once, then
    re-polls the devices not yet healthy every QUICK seconds until SETTLE seconds pass after
    that sweep ends without one of them turning healthy, so that a fleet coming up is seen
    healthy as soon as it is."""

    def __init__(self, state_dir: Path, shard: tuple[int, int] = (0, 1)) -> None:
        self.state_dir = Path(state_dir)
        self.shard, self.shards = shard  # this process polls devices[shard::shards]
        self.mine: tuple[PlannedDevice, ...] = ()
        self.plan_path = self.state_dir / "plan.json"
        self.mtimes: dict[str, float] = {}  # plan.json's and the request's, as last seen
        self.plan: Plan | None = None
        self.settle_until = time.monotonic() + SETTLE  # the fleet has just come up
        self.swept = False  # the sweep after the last change is done (a big fleet's takes minutes)
        self.stopping = asyncio.Event()
        self.checked: dict[str, float] = {}  # device -> time of the result a check recorded (_checks)
        self.worker_of: dict[str, str] = {}  # device -> the worker hosting it

    def _touched(self, name: str) -> bool:
        """Whether the state folder's file ``name`` changed since the last look."""
        try:
            mtime = (self.state_dir / name).stat().st_mtime
        except OSError:
            return False
        changed = self.mtimes.get(name) != mtime
        self.mtimes[name] = mtime
        return changed

    def _changed(self) -> bool:
        """Reload a rewritten plan.json; True (and settle again) after a new plan or a request."""
        import json

        changed = self._touched(REQUEST)
        if self._touched("plan.json"):
            with contextlib.suppress(OSError, ValueError, KeyError):
                data = json.loads(self.plan_path.read_text())
                if self.shard == 0:  # all of them: shard 0 serves the fleet page
                    self.plan = Plan.from_json(data)
                    self.mine = self.plan.devices[::self.shards]
                else:
                    self.plan = Plan.from_json(shard_of(data, self.shard, self.shards))
                    self.mine = self.plan.devices
                del data
                self.worker_of = {name: w.name for w in self.plan.workers for name in w.devices}
                log.info("following %d devices%s", len(self.mine),
                         f" (shard {self.shard} of {self.shards})" if self.shards > 1 else "")
                changed = True
        if changed:
            self.settle_until = time.monotonic() + SETTLE
            self.swept = False
        return changed

    async def run(self, max_sweeps: int | None = None) -> None:
        self._changed()
        if self.plan is None:
            raise SystemExit(f"fleet.health: no plan in {self.plan_path}")
        fleet = self.plan.fleet
        from fleet.control import control_dir

        poller = Poller(fleet.health_timeout, fleet.health_concurrency, control=control_dir(self.state_dir))
        failing: set[str] = set()
        sweeps = 0
        store = open_store(self.database)
        web = await self._start_web() if self.shard == 0 else None
        others: dict[str, float] = {}  # the other shards' devices: time of the result last shown
        plan = self.plan
        checks = asyncio.ensure_future(self._checks(web.view.record if web is not None else None))
        try:
            while not self.stopping.is_set() and (max_sweeps is None or sweeps < max_sweeps):
                begun = time.monotonic()
                self._changed()
                if self.plan is not plan:  # a new plan: what its devices no longer in it held goes
                    plan = self.plan
                    await poller.retain(d.name for d in self.mine)
                    failing &= {d.name for d in self.mine}
                    if web is not None:
                        web.follow(plan)
                # spread over the interval (a latency figure is the device's own), except the
                # first sweep after a change: `up` is waiting on it, so sweep at once (while
                # settling, the devices still failing are re-polled quickly in between)
                spread = max(0.0, fleet.health_interval - fleet.health_timeout) if self.swept else 0.0
                # after a change, the devices of workers still starting wait for them (polled
                # while settling, once served): a poll now would time out and slow them down
                due, deferred = self._due(self.mine, store) if not self.swept else (self.mine, set())
                results = await poller.sweep(due, spread, web.view.record if web is not None else None)
                # a device a check polled after the sweep did keeps the check's (newer) result
                results = [r for r in results if self.checked.get(r.device, 0.0) <= r.time]
                self.checked.clear()
                store = self._record(store, results, fleet.health_retention)
                if not self.swept:  # settle for SETTLE seconds after this sweep, however long it took
                    self.swept = True
                    self.settle_until = max(self.settle_until, time.monotonic() + SETTLE)
                if web is not None:
                    if self.shards > 1:
                        self._show_others(web, store, others)
                    web.refresh(store)
                sweeps += 1
                now_failing = {r.device for r in results if not r.ok} | deferred
                newly = [r for r in results if not r.ok and r.device not in failing]
                for r in newly[:LOGGED]:
                    log.warning("%s: down: %s", r.device, r.error)
                if len(newly) > LOGGED:
                    log.warning("... and %d more down", len(newly) - LOGGED)
                for name in sorted(failing - now_failing)[:LOGGED]:
                    log.info("%s: healthy again", name)
                if now_failing != failing or sweeps == 1:
                    log.info("sweep %d: %d/%d healthy in %.2f s%s", sweeps,
                             len(results) + len(deferred) - len(now_failing), len(results),
                             time.monotonic() - begun,
                             f" ({len(deferred)} more wait for their workers)" if deferred else "")
                failing = now_failing
                store, failing = await self._settle(poller, store, failing, begun + fleet.health_interval)
        finally:
            checks.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await checks
            store.close()
            if web is not None:
                await web.close()
        await poller.close()

    async def _checks(self, on_result: Callable[[HealthResult], None] | None) -> None:
        """Poll the devices ``fault`` and ``fault --clear`` ask about (:func:`fleet.faults.
        request_check`) at once, beside the sweep (its own connections and store handle), so that
        ``status`` shows a cleared device healthy a moment after the clear, not at its next
        place in the interval; those asked ``until_ok`` again every QUICK seconds until they
        answer, for CHECK_FOR seconds.  So too a device whose recorded fault ends (its
        ``--for`` or a schedule's ``for``)."""
        from fleet.control import control_dir
        from fleet.faults import ACTIVE_FILE, active, checks_requested

        assert self.plan is not None
        fleet = self.plan.fleet
        control = control_dir(self.state_dir)
        poller = Poller(fleet.health_timeout, fleet.health_concurrency, persistent=False, control=control)
        seen: set[str] = set()
        checks_requested(control, seen)  # those made before this poller started: its first sweep answers them
        pending: dict[str, float] = {}  # device -> until when it is re-polled
        ending: dict[str, float] = {}  # device -> when its recorded fault ends (`fault --for`, schedules)
        recorded: float | None = None  # the fault record's mtime, as last read
        store = open_store(self.database)
        try:
            while not self.stopping.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), QUICK)
                now = time.monotonic()
                mine = {d.name: d for d in self.mine}
                for names, until_ok in checks_requested(control, seen):
                    for name in names:
                        if name in mine:
                            pending[name] = now + CHECK_FOR if until_ok else now
                with contextlib.suppress(OSError):
                    if (mtime := (control / ACTIVE_FILE).stat().st_mtime) != recorded:
                        recorded = mtime
                        due = {name: end for name, end in ending.items() if end <= time.time()}
                        ending = due | {name: f.until for name, f in active(control).items()
                                        if f.until is not None and name in mine}
                for name in [n for n, end in ending.items() if end <= time.time()]:  # a fault ended:
                    del ending[name]  # polled until it answers, as after a clear
                    pending[name] = now + CHECK_FOR
                if not pending:
                    continue
                results = await poller.sweep([mine[n] for n in pending if n in mine])
                store = self._record(store, results, fleet.health_retention, again=True)
                for r in results:
                    self.checked[r.device] = r.time
                    if on_result is not None:
                        on_result(r)
                    if r.ok or time.monotonic() >= pending[r.device]:
                        del pending[r.device]
                for name in [n for n in pending if n not in mine]:  # no longer in the plan
                    del pending[name]
        finally:
            store.close()
            await poller.close()

    async def _start_web(self) -> Any:
        """The fleet page and /metrics (:mod:`fleet.web.serve`); None, logged, when the
        address cannot be bound (health polling matters more)."""
        from cpppo.server.aioweb import WebBindError
        from fleet.web.serve import record_web, start_web

        try:
            return await start_web(self.plan, self.state_dir)  # type: ignore[arg-type]
        except WebBindError as exc:
            log.error("%s", exc.strerror)
            with contextlib.suppress(OSError):
                record_web(self.state_dir, {"web_error": exc.strerror})
            return None

    async def _settle(self, poller: Poller, store: Store, failing: set[str],
                      next_sweep: float) -> tuple[Store, set[str]]:
        """Wait for the next sweep (or a change, or stop), re-polling the ``failing`` devices
        every QUICK seconds while settling; returns the store and the devices still failing."""
        assert self.plan is not None
        while not self.stopping.is_set() and time.monotonic() < next_sweep:
            pause = min(QUICK, max(0.0, next_sweep - time.monotonic()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), pause)
            if self.stopping.is_set() or self._changed():
                break  # stopping, or a new plan or a request: sweep everything now
            if failing and time.monotonic() < self.settle_until:
                due, _ = self._due([d for d in self.mine if d.name in failing], store)
                if not due:
                    continue
                results = await poller.sweep(due)
                store = self._record(store, results, self.plan.fleet.health_retention, again=True)
                healed = {r.device for r in results if r.ok}
                if healed:  # still coming up (a round of thousands, their workers just served, takes
                    # longer than SETTLE on a loaded machine): keep settling, or the rest would
                    # wait for the next sweep (minutes at 100,000)
                    self.settle_until = max(self.settle_until, time.monotonic() + SETTLE)
                for name in sorted(healed)[:LOGGED]:
                    log.info("%s: healthy", name)
                if len(healed) > LOGGED:
                    log.info("... and %d more healthy", len(healed) - LOGGED)
                failing -= healed
        return store, failing

    def _due(self, devices: Sequence[PlannedDevice],
             store: Store) -> tuple[Sequence[PlannedDevice], set[str]]:
        """``devices`` split into those to poll now and the names of those whose worker is still
        starting (for at most STARTING seconds: one that never serves is polled after all)."""
        try:
            starting = store.starting(time.time() - STARTING)
        except (StoreError, sqlite3.Error):
            return devices, set()
        if not starting:
            return devices, set()
        due: list[PlannedDevice] = []
        deferred: set[str] = set()
        worker_of = self.worker_of
        for device in devices:
            if worker_of.get(device.name) in starting:
                deferred.add(device.name)
            else:
                due.append(device)
        return due, deferred

    def _show_others(self, web: Any, store: Store, shown: dict[str, float]) -> None:
        """Feed the fleet page the results the other shards stored since the last look."""
        mine = {d.name for d in self.mine}
        with contextlib.suppress(sqlite3.Error, StoreError):
            for name, history in store.history(latencies=False).items():
                last = history.last
                if last is not None and name not in mine and shown.get(name) != last.time:
                    shown[name] = last.time
                    web.view.record(last)

    @property
    def database(self) -> Path:
        return self.state_dir / "health.sqlite"

    def _record(self, store: Store, results: list[HealthResult], retention: int,
                again: bool = False) -> Store:
        """Record a sweep; a database deleted, replaced or damaged under us is started afresh
        (``status`` reads the file at the path, not the one we have open)."""
        if store.replaced() or store.damaged():
            log.warning("%s was deleted, replaced or damaged: starting a new one", self.database)
            store.close()
            store = open_store(self.database)
        try:
            store.record(results, retention, again)
        except (sqlite3.Error, StoreError) as exc:
            log.warning("%s: starting a new one", str(exc).splitlines()[0])
            store.close()
            store = open_store(self.database)
            store.record(results, retention, again)
        return store


def wait_healthy(database: Path, devices: Sequence[PlannedDevice], asked: float, timeout: float,
                 pids: Callable[[], Mapping[str, int | None]],
                 progress: Callable[[int, int, str], None],
                 excused: Callable[[], Iterable[str]] = lambda: ()) -> tuple[int, list[HealthResult]]:
    """Wait until the supervised poller has seen every device healthy since ``asked`` (see
    :func:`request_sweep`), or ``timeout``; ``pids()`` gives each running worker's pid.  A
    device its running worker cannot serve fails with the worker's reason, and when only such
    devices are left the wait ends at once; devices ``excused()`` (misbehaving on purpose)
    are not waited for.  Returns (healthy, the last failing results).

    Between looks at the names healthy since ``asked`` it only counts them (a fifth of the
    time), and looks again once the count says every device may be healthy, or LOOK_EVERY
    seconds on (for devices their workers cannot serve); why the others fail is read once, at
    the end.  At 100,000 devices coming up, reading every failing result at each look was most
    of what this wait cost the machine the fleet was starting on."""
    total, deadline = len(devices), time.monotonic() + timeout
    names = [device.name for device in devices]
    shown, outside, skip = 0, 0, set[str]()  # at the last look: ours healthy, others healthy, excused
    looked = float("-inf")
    while True:
        begun = time.monotonic()
        if begun - looked < LOOK_EVERY and begun <= deadline:
            try:
                with Store(database) as store:
                    counted = store.count_ok_since(asked) - outside
            except StoreError:
                counted = 0
            if counted < total - len(skip):  # some not healthy yet: count again soon
                progress(min(total, max(shown, counted)), total, "devices healthy")
                time.sleep(max(QUICK, 4 * (time.monotonic() - begun)))
                continue
        looked = begun
        try:
            with Store(database) as store:
                healthy, errors = store.ok_since(asked), store.serve_errors()
        except StoreError:
            healthy, errors = set(), {}  # not there yet, or being replaced by the poller
        running, skip = pids(), set(excused())
        unserved = {name: e.error for name, e in errors.items() if running.get(e.worker) == e.pid}
        waiting = [n for n in names if n not in skip and (n not in healthy or n in unserved)]
        shown = total - len(waiting)
        outside = len(healthy) - sum(1 for n in names if n in healthy)  # a selection's: the fleet's others
        progress(shown, total, "devices healthy")
        if not waiting or time.monotonic() > deadline or all(n in unserved for n in waiting):
            failing = _why_failing(database, waiting, unserved, asked)
            return total - len(failing), failing
        # at most a fifth of one core on looking: the pollers and the workers bringing the
        # fleet up need the machine more than this wait does
        time.sleep(max(QUICK, 4 * (time.monotonic() - begun)))


def _why_failing(database: Path, waiting: Sequence[str], unserved: Mapping[str, str],
                 asked: float) -> list[HealthResult]:
    """The results of the devices ``wait_healthy`` stopped waiting for: the worker's reason
    for one it cannot serve, else its newest result (one healthy since the last look is
    healthy after all), else "no health result yet"."""
    healthy: set[str] = set()
    others: dict[str, HealthResult] = {}
    if waiting:
        with contextlib.suppress(StoreError), Store(database) as store:
            healthy, others = store.ok_since(asked), store.not_ok_since(asked)
    failing = []
    for name in waiting:
        last = others.get(name)
        if name in unserved:
            failing.append(HealthResult(name, False, None, unserved[name], asked))
        elif name in healthy:
            continue
        elif last is None or last.time < asked:
            failing.append(HealthResult(name, False, None, "no health result yet", asked))
        else:
            failing.append(last)
    return failing


def sweep_and_print(state_dir: Path) -> int:
    """``--once``: one sweep of the plan in ``state_dir``, a JSON line per device on stdout
    (usable from another network namespace); exit status 0 when every device answered."""
    import json

    plan = Plan.from_json(json.loads((state_dir / "plan.json").read_text()))
    from fleet.control import control_dir

    results = run_sweep(plan.devices, plan.fleet.health_timeout, plan.fleet.health_concurrency,
                        control_dir(state_dir))
    for r in results:
        print(json.dumps({"device": r.device, "ok": r.ok, "latency": r.latency, "error": r.error}))
    return 0 if all(r.ok for r in results) else 1


async def _main(state_dir: Path, shard: tuple[int, int] = (0, 1)) -> None:
    from fleet.backends.base import health_programs

    schedule = Schedule(state_dir, shard)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, schedule.stopping.set)
    import os

    with open_store(state_dir / "health.sqlite") as store:
        store.record_start(health_programs(shard[1])[shard[0]], os.getpid())
    await schedule.run()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.WARNING, stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    log.setLevel(logging.INFO)
    once = args[:1] == ["--once"]
    args = args[1:] if once else args
    shard = (0, 1)
    if args[:1] == ["--shard"] and len(args) > 1:
        k, _, n = args[1].partition("/")
        shard = (int(k), int(n)) if k.isdigit() and n.isdigit() and int(k) < int(n) else (-1, 0)
        args = args[2:]
    if len(args) != 1 or shard[0] < 0:
        print("usage: python -m fleet.health [--once | --shard K/N] <state-dir>", file=sys.stderr)
        return 2
    from cpppo.server.hosting import new_event_loop
    from fleet.bulk import collect_less
    from fleet.limits import raise_fd_limit

    raise_fd_limit()
    collect_less()
    if once:
        return sweep_and_print(Path(args[0]))
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(_main(Path(args[0]), shard))
    return 0


if __name__ == "__main__":
    sys.exit(main())
