"""``cpppo-fleet fault`` and ``cpppo-fleet faults``: inject, clear and list faults, live.

    cpppo-fleet fault 'pump*' latency 300ms
    cpppo-fleet fault 'line00*' offline --for 30s
    cpppo-fleet fault --clear 'pump*'
    cpppo-fleet faults --json

The words are ``PATTERN KIND [ARG]`` (with ``--clear``: ``[PATTERN]``), then the fleet file
when it is not ``fleet.toml`` (a word ending in ``.toml``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer

from fleet.cli import multihost
from fleet.cli.common import (
    EXIT_CONFIG,
    EXIT_FAILED,
    FLEET_FILE,
    STATE_DIR,
    applied_plan,
    fail,
    load_plan,
    state_dir_for,
)
from fleet.hosts import is_multihost

WORDS = typer.Argument(None, metavar="PATTERN KIND [ARG] [FLEET_FILE]",
                       help="Devices (a glob), the fault kind and its argument.")


def _split(words: list[str] | None) -> tuple[list[str], Path]:
    words = list(words or [])
    if words and words[-1].endswith(".toml"):
        return words[:-1], Path(words[-1])
    return words, Path("fleet.toml")


def _when(seconds: float | None) -> str:
    return "until cleared" if seconds is None else time.strftime("until %H:%M:%S", time.localtime(seconds))


def fault(words: list[str] = WORDS,
          clear: bool = typer.Option(False, "--clear",
                                     help="End the faults of the matching devices (all without a pattern)."),
          duration: str = typer.Option(None, "--for", metavar="DURATION",
                                       help="End the fault after this long (300ms, 30s, 5m, 1h)."),
          seed: int = typer.Option(None, "--seed", help="Seed the fault's random draws (repeatable runs)."),
          state_dir: Path | None = STATE_DIR) -> None:
    """Make devices slow, silent, wrong or gone, live: latency, timeout, offline, drop, error,
    freeze, corrupt, flap."""
    from cpppo.faults import FaultError, parse_fault
    from fleet import faults
    from fleet.control import control_dir

    args, path = _split(words)
    if is_multihost(path):
        multihost.refuse("--state-dir", state_dir)
        return multihost.fault(path, args, clear, duration, seed)
    plan, state, applied = _fleet(path, state_dir)
    control = control_dir(state)
    if clear:
        if len(args) > 1 or duration is not None:
            fail("fault --clear takes at most a PATTERN", EXIT_CONFIG)
        devices = applied.select(args or None) if args else applied.devices
        if args and not devices:
            fail(f"no device matches {args[0]!r}", EXIT_CONFIG)
        done, failed = faults.clear(control, devices)
        _not_up(plan, failed, path, state_dir)
        typer.echo(f"cleared faults on {len(done)} device{'s' if len(done) != 1 else ''}")
        _report(failed)
        return
    if len(args) not in (2, 3):
        fail("fault takes PATTERN KIND [ARG] (or --clear [PATTERN])", EXIT_CONFIG)
    pattern, kind, arg = args[0], args[1], (args[2] if len(args) == 3 else None)
    try:
        the_fault = parse_fault(kind, arg, duration=duration, seed=seed)
    except FaultError as exc:
        fail(str(exc), EXIT_CONFIG)
    devices = applied.select([pattern])
    if not devices:
        fail(f"no device matches {pattern!r}", EXIT_CONFIG)
    done, failed = faults.apply(control, devices, the_fault)
    _not_up(plan, failed, path, state_dir)
    typer.echo(f"{the_fault.describe()} on {len(done)} device{'s' if len(done) != 1 else ''} "
               f"{_when(the_fault.until)}")
    _report(failed)


def _fleet(path: Path, state_dir: Path | None):  # -> (plan, state folder, applied plan)
    """fleet.toml's plan, the state folder and the plan applied there: all three read from
    plan.json alone while fleet.toml has not changed since ``up``; else fleet.toml is read
    (its errors are one line, exit 2)."""
    found = applied_plan(path, state_dir)
    if found is not None:
        return found[0], found[1], found[0]
    plan = load_plan(path)
    state = state_dir_for(path, plan, state_dir)
    return plan, state, _applied(plan, state)


def _applied(plan, state: Path):
    """The plan the backend applied (what is up), else fleet.toml's."""
    from fleet.plan import Plan

    try:
        return Plan.from_json(json.loads((state / "plan.json").read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return plan


def _not_up(plan, failed: dict[str, str], path: Path, state_dir: Path | None) -> None:
    """One line, exit 1, when no worker asked has a control socket: that part of the fleet is
    not up (a worker that is up but does not answer is reported by ``_report``)."""
    from fleet.cli.common import command_hint

    if failed and all("no control socket" in why for why in failed.values()):
        fail(f"fleet {plan.fleet.name!r} is not up (no worker answers); bring it up with: "
             f"cpppo-fleet up {command_hint(path, state_dir)}")


def _report(failed: dict[str, str]) -> None:
    if failed:
        for why in failed.values():
            typer.echo(f"cpppo-fleet: {why}", err=True)
        raise typer.Exit(EXIT_FAILED)


def faults_(path: Path = FLEET_FILE,
            as_json: bool = typer.Option(False, "--json", help="JSON for scripts."),
            show_history: bool = typer.Option(False, "--history", help="What was injected where and when."),
            state_dir: Path | None = STATE_DIR) -> None:
    """List the active faults (device, kind, options, since, until)."""
    from fleet import faults
    from fleet.control import control_dir

    _plan, state, _ = _fleet(path, state_dir)
    if show_history:
        rows = faults.history(control_dir(state))
        if as_json:
            typer.echo(json.dumps(rows, indent=1))
            return
        for row in rows:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(row["time"]))
            typer.echo(f"{stamp}  {row['event']:<6}  {row['device']:<20}  {row.get('fault', ''):<22}  "
                       f"{row['source']}")
        return
    current = faults.active(control_dir(state))
    if as_json:
        typer.echo(json.dumps({name: {**f.to_dict(), "describe": f.describe()} for name, f in
                               sorted(current.items())}, indent=1))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("device", "fault", "since", "until", title=f"{len(current)} active fault"
                  f"{'s' if len(current) != 1 else ''}")
    for name, f in sorted(current.items()):
        table.add_row(name, f.describe(), time.strftime("%H:%M:%S", time.localtime(f.since)),
                      "-" if f.until is None else time.strftime("%H:%M:%S", time.localtime(f.until)))
    Console().print(table)
