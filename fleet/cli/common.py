"""Helpers shared by the commands: loading the plan with one-line errors, the state folder."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn

import typer

from fleet.config import ConfigError

EXIT_CONFIG = 2  # a problem in fleet.toml or on the command line
EXIT_FAILED = 1  # the operation failed, or the fleet is not (all) healthy

FLEET_FILE = typer.Argument(Path("fleet.toml"), help="The fleet description (fleet.toml).")
STATE_DIR = typer.Option(None, "--state-dir",
                         help="State folder (default: .fleet/<name>/ beside fleet.toml).")


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    """One line on stderr, then exit with ``code``."""
    typer.echo(f"cpppo-fleet: {message}", err=True)
    raise typer.Exit(code)


BACKEND_OVERRIDE: str | None = None  # `cpppo-fleet --backend docker ...` (set by the app callback)


def load_config(path: Path):  # -> fleet.config.FleetConfig
    """The validated fleet.toml, or exit 2 with the config error on one line."""
    from fleet.config import load, load_for_backend

    try:
        return load_for_backend(path, BACKEND_OVERRIDE) if BACKEND_OVERRIDE else load(path)
    except ConfigError as exc:
        fail(str(exc), EXIT_CONFIG)


def load_plan(path: Path, config=None):  # -> fleet.plan.Plan
    """The expanded plan of ``path``, or exit 2 with the config error on one line."""
    from fleet.plan import expand

    try:
        return expand(config or load_config(path))
    except ConfigError as exc:
        fail(str(exc), EXIT_CONFIG)


def check_here(path: Path, plan) -> None:
    """Exit 2 with one line for what this host lacks to serve ``plan`` (a serial port named in
    fleet.toml that is not here): ``validate`` and ``up`` check it, ``status`` and ``down`` not."""
    from fleet.rtu import check_ports

    try:
        check_ports(plan.devices, str(path))
    except ConfigError as exc:
        fail(str(exc), EXIT_CONFIG)


def state_dir_for(path: Path, plan, override: Path | None) -> Path:
    """Where the fleet's state lives: ``--state-dir`` or ``.fleet/<name>/`` beside fleet.toml."""
    return _state_dir(path, plan.fleet.name, override)


def _state_dir(path: Path, name: str, override: Path | None) -> Path:
    if override is not None:
        return override.resolve()
    return (path.resolve().parent / ".fleet" / name).resolve()


def applied_plan(path: Path, state_dir: Path | None):  # -> tuple[fleet.plan.Plan, Path] | None
    """(the plan ``up`` applied, its state folder) when ``path`` is still the very text that
    plan was expanded from (plan.json keeps the text's digest), read without validating and
    expanding fleet.toml again: a quarter of a second of CPU for 1,000 devices that ``fault``,
    ``faults`` and ``status``, which act on what runs, need not spend (two seconds at 100,000).
    None when the fleet is not up, fleet.toml changed since, only part of it is up, or
    ``--backend`` is given: then :func:`load_plan`, and its one-line errors."""
    found = _applied(path, state_dir)
    return found[:2] if found else None


def _applied(path: Path, state_dir: Path | None):  # -> (Plan, state folder, plan.json's key) | None
    import tomllib

    import orjson

    from fleet.backends.base import StateDir
    from fleet.config import plan_digest
    from fleet.plan import Plan

    if BACKEND_OVERRIDE:
        return None
    try:
        text = path.read_bytes().decode()
        name = tomllib.loads(text)["fleet"]["name"]
        state = StateDir(_state_dir(path, name, state_dir))
        key = state.plan_key()  # before reading: a plan.json written meanwhile is read again
        data = orjson.loads(state.plan.read_bytes())  # 100,000 devices: 15 MB, twice json's speed
        if not isinstance(data, dict) or data.get("digest") != plan_digest(text):
            return None
        return Plan.from_json(data), state.root, key
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
        return None


def backend_for(path: Path, state_dir: Path | None, validate: bool = False):
    """(plan, backend) for a fleet file, exiting with a one-line error on problems.  The plan
    last brought up when it is the whole expansion of this very text (:func:`applied_plan`):
    then not expanded again, nor (unless ``validate``: ``up``, which checks the files the text
    names) validated again: two seconds at 100,000 devices that ``status``, ``down``, ``logs``
    and ``restart``, which act on what runs, need not spend."""
    from fleet.backends import BackendError, make_backend

    config = load_config(path) if validate else None
    found = _applied(path, state_dir)
    if found is not None and config is not None and found[0].digest != config.digest:
        found = None
    if found is not None:
        plan, root, key = found
    else:
        plan, root, key = load_plan(path, config), None, None
    try:
        backend = make_backend(plan, root or state_dir_for(path, plan, state_dir))
    except BackendError as exc:
        fail(str(exc))
    if found is not None and key == backend.state.plan_key():
        backend._applied = (key, plan)  # and it is the applied plan: not read again
    return plan, backend


def stderr_is_terminal() -> bool:
    return sys.stderr.isatty()


class ProgressBar:
    """A rich progress bar on stderr (only on a terminal), usable as a backend ``Progress``."""

    def __init__(self, enabled: bool | None = None) -> None:
        self.enabled = stderr_is_terminal() if enabled is None else enabled
        self.bar = None
        self.tasks: dict[str, int] = {}

    def __enter__(self) -> ProgressBar:
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(TextColumn("{task.description:<22}"), BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), console=Console(stderr=True), transient=True)
            self.bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def __call__(self, done: int, total: int, what: str) -> None:
        if self.bar is None:
            return
        if what not in self.tasks:
            self.tasks[what] = self.bar.add_task(what, total=total)
        self.bar.update(self.tasks[what], completed=done, total=total)


def command_hint(path: Path, state_dir: Path | None) -> str:
    """How the user named this fleet, to repeat in hints (``fleet.toml --state-dir X``)."""
    return str(path) + (f" --state-dir {state_dir}" if state_dir else "")
