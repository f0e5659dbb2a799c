"""The interface every backend implements, and the state folder they share.

A backend hosts the plan's workers (each worker hosts up to ``devices_per_worker`` devices)
plus the health poller, and answers for them by worker name.  Device-level views (state,
health, latency) are built on top by ``fleet.report`` from :meth:`Backend.status` and the
health store, so a new backend only maps its own process vocabulary onto ProcessState.
"""

from __future__ import annotations

import json
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from fleet.plan import Plan
from fleet.states import ProcessState

HEALTH_PROGRAM = "health"  # the name of the health poller among a backend's programs


def health_programs(shards: int) -> list[str]:
    """The health poller's programs: ``health`` (it serves the fleet page too), and past one
    process's open-files limit ``health-1``, ``health-2``, ... (each polls its share).

    >>> health_programs(1), health_programs(3)
    (['health'], ['health', 'health-1', 'health-2'])
    """
    return [HEALTH_PROGRAM] + [f"{HEALTH_PROGRAM}-{k}" for k in range(1, shards)]
START_TIMEOUT = 120.0  # seconds for every program to be running

# progress(done, total, what): backends report long operations through this; the CLI draws it
Progress = Callable[[int, int, str], None]


def no_progress(done: int, total: int, what: str) -> None:
    """The default progress callback: silent."""


class BackendError(RuntimeError):
    """A backend operation failed; ``str()`` is one line saying what and why."""


@dataclass(frozen=True)
class ProgramStatus:
    """One worker (or the health poller) as the backend sees it."""

    name: str  # worker name ("w000") or HEALTH_PROGRAM
    state: ProcessState  # backend-neutral state
    pid: int | None  # current process id, if running
    started: float | None  # epoch seconds the current process started, if running
    detail: str = ""  # the backend's own words (exit status, ...)


class StateDir:
    """Paths in a fleet's state folder (``.fleet/<name>/``)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    plan = property(lambda self: self.root / "plan.json")  # the applied plan (selected devices)
    selection = property(lambda self: self.root / "selection.json")  # --only patterns so far
    database = property(lambda self: self.root / "health.sqlite")
    logs = property(lambda self: self.root / "logs")
    workers = property(lambda self: self.root / "workers")  # one spec JSON per worker
    addresses = property(lambda self: self.root / "addresses.json")  # alias addresses we added

    def plan_key(self) -> tuple[int, int, int] | None:
        """plan.json's identity and version (inode, mtime, size); None when there is none."""
        try:
            st = self.plan.stat()
        except OSError:
            return None
        return st.st_ino, st.st_mtime_ns, st.st_size

    def worker_spec(self, worker: str) -> Path:
        return self.workers / f"{worker}.json"

    def log(self, program: str) -> Path:
        return self.logs / f"{program}.log"

    def make(self) -> None:
        """Create the folder (BackendError, one line, if it cannot be: a file in the way, ...)."""
        try:
            for path in (self.root, self.logs, self.workers):
                path.mkdir(parents=True, exist_ok=True)
            gitignore = self.root / ".gitignore"
            if not gitignore.exists():
                write_atomic(gitignore, "*\n")
        except OSError as exc:
            where = f" ({exc.filename})" if exc.filename and str(exc.filename) != str(self.root) else ""
            raise BackendError(f"cannot create the state folder {self.root}: {exc.strerror or exc}{where}") \
                from None


def write_atomic(path: Path, text: str) -> bool:
    """Write ``text`` to ``path`` via a temporary file and rename; return whether it changed."""
    try:
        if path.read_text() == text:
            return False
    except OSError:
        pass
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return True


def read_json(path: Path, default: object = None) -> object:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return default


class Backend(ABC):
    """up / down / status / logs / restart for one planned fleet."""

    name = "abstract"

    def __init__(self, plan: Plan, state_dir: Path) -> None:
        self.plan = plan
        self.state = StateDir(state_dir)
        self.interrupted: dict[str, tuple[str, ...]] = {}  # by the last up(): worker -> its devices
        self.notices: list[str] = []  # by the last up(): what it changed on the host, a line each
        self._applied: tuple[tuple[int, int, int], Plan | None] | None = None  # plan.json, as last read

    def interrupts(self, before: Plan | None, workers: set[str]) -> None:
        """Note that ``up`` restarts these workers: the devices they served (in the plan
        applied ``before``) are interrupted (``up`` says which)."""
        served = {w: tuple(d.name for d in before.worker_devices(w)) for w in workers} if before else {}
        self.interrupted = {w: devices for w, devices in sorted(served.items()) if devices}

    @abstractmethod
    def up(self, only: Sequence[str] | None = None, progress: Progress = no_progress) -> Plan:
        """Converge on the plan (or the devices matching ``only``, added to those already up):
        idempotent, and finishes a half-done earlier ``up``.  Returns once every selected worker
        runs; returns the applied plan (the selected devices)."""

    @abstractmethod
    def down(self, progress: Progress = no_progress) -> None:
        """Stop everything and leave nothing behind (processes, sockets, added addresses).
        Idempotent."""

    @abstractmethod
    def status(self) -> dict[str, ProgramStatus]:
        """Every program the backend runs for this fleet, by name; empty when it is down."""

    @abstractmethod
    def logs(self, program: str, lines: int = 50) -> str:
        """The last ``lines`` lines of a worker's (or the poller's) output."""

    @abstractmethod
    def restart(self, programs: Sequence[str], progress: Progress = no_progress) -> None:
        """Restart these workers (or the poller); returns once they run again."""

    # -- what both backends share: the selection, the applied plan, waiting for programs -----
    def applied_for(self, only: Sequence[str] | None, running: bool) -> tuple[Plan, list[str] | None]:
        """The plan to apply and the selection it comes from: ``--only`` patterns add to those
        selected so far while the fleet runs (None: everything)."""
        previous = read_json(self.state.selection) if running else []
        selection = None if not only or previous is None else sorted(set(previous or []) | set(only))
        devices = self.plan.select(selection)
        if not devices:
            raise BackendError(f"--only {' '.join(selection or [])}: no device matches")
        names = {d.worker for d in devices}
        workers = tuple(w for w in self.plan.workers if w.name in names)
        digest = self.plan.digest if len(devices) == len(self.plan.devices) else ""  # the whole plan?
        return replace(self.plan, devices=devices, workers=workers, digest=digest), selection

    def write_applied(self, applied: Plan) -> None:
        """Record the plan being brought up (the health poller follows it)."""
        write_atomic(self.state.plan, applied.dumps())

    def write_selection(self, selection: list[str] | None) -> None:
        write_atomic(self.state.selection, json.dumps(selection))

    def forget_starts(self) -> None:
        """A fresh fleet: restart counts (and serve errors) begin again."""
        from fleet.store import StoreError, open_store

        try:
            with open_store(self.state.database) as store:
                store.forget_starts()
        except StoreError as exc:
            raise BackendError(str(exc)) from None

    def program_states(self, names: set[str]) -> dict[str, ProcessState]:
        """The state of each of these programs the backend knows of (cheaper than status())."""
        return {n: p.state for n, p in self.status().items() if n in names}

    def wait_running(self, names: Iterable[str], progress: Progress, timeout: float = START_TIMEOUT) -> None:
        """Return once every program named runs; BackendError (with the program's last output
        line) when one cannot be started or ``timeout`` passes."""
        names = set(names)
        deadline = time.monotonic() + timeout
        while True:
            states = self.program_states(names)
            fatal = sorted(n for n, s in states.items() if s is ProcessState.FATAL)
            if fatal:
                raise BackendError(f"{fatal[0]} could not be started: {self._last_line(fatal[0])}")
            late = sorted(n for n in names if states.get(n) is not ProcessState.RUNNING)
            progress(len(names) - len(late), len(names), "starting workers")
            if not late:
                return
            if time.monotonic() > deadline:
                raise BackendError(f"{late[0]} still not running after {timeout:.0f} s: "
                                   f"{self._last_line(late[0])}")
            time.sleep(0.1)

    def orphans(self) -> dict[str, ProgramStatus]:
        """Programs of this fleet still running although their supervisor is gone (what ``up``
        will replace), by name; empty when the supervisor answers or nothing is left."""
        return {}

    def _last_line(self, program: str) -> str:
        """The last line a program wrote, to say why it did not start."""
        lines = self.logs(program, 5).strip().splitlines()
        return lines[-1] if lines else "(no output; see `cpppo-fleet logs`)"

    def applied_plan(self) -> Plan | None:
        """The plan last brought up (selected devices only), or None; read again only when
        plan.json changed (100,000 devices take a second to read)."""
        key = self.state.plan_key()
        if key is None:
            return None
        if self._applied is None or self._applied[0] != key:
            data = read_json(self.state.plan)
            self._applied = (key, Plan.from_json(data) if isinstance(data, dict) else None)
        return self._applied[1]
