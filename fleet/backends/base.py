"""The interface every backend implements, and the state folder they share.

A backend hosts the plan's workers (each worker hosts up to ``devices_per_worker`` devices)
plus the health poller, and answers for them by worker name.  Device-level views (state,
health, latency) are built on top by ``fleet.report`` from :meth:`Backend.status` and the
health store, so a new backend only maps its own process vocabulary onto ProcessState.
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from fleet.plan import Plan
from fleet.states import ProcessState

HEALTH_PROGRAM = "health"  # the name of the health poller among a backend's programs

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

    def _last_line(self, program: str) -> str:
        """The last line a program wrote, to say why it did not start."""
        lines = self.logs(program, 5).strip().splitlines()
        return lines[-1] if lines else "(no output; see `cpppo-fleet logs`)"

    def applied_plan(self) -> Plan | None:
        """The plan last brought up (selected devices only), or None."""
        data = read_json(self.state.plan)
        return Plan.from_json(data) if isinstance(data, dict) else None
