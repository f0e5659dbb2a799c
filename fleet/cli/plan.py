"""``cpppo-fleet plan`` / ``validate``: check fleet.toml and print the expanded plan."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from fleet.cli import multihost
from fleet.cli.common import FLEET_FILE, check_here, load_plan
from fleet.hosts import is_multihost


def plan(path: Path = FLEET_FILE,
         as_json: bool = typer.Option(False, "--json", help="Print the plan as JSON.")) -> None:
    """Validate fleet.toml and print the expanded plan (device, kind, IP:port, worker; the host of
    each in a multi-host fleet); starts nothing."""
    if is_multihost(path):
        return multihost.plan(path, as_json)
    fleet_plan = load_plan(path)
    if as_json:
        data = fleet_plan.to_json()  # a device per object (plan.json's rows are for programs)
        for key in ("options", "columns", "rows"):
            data.pop(key)
        data["devices"] = [d.to_json() for d in fleet_plan.devices]
        typer.echo(json.dumps(data, indent=1))
        return
    width = max(len(d.name) for d in fleet_plan.devices)
    kinds = max(6, *(len(d.kind) for d in fleet_plan.devices))
    address = max(21, *(len(d.endpoint) for d in fleet_plan.devices))
    typer.echo(f"{'device':<{width}}  {'kind':<{kinds}}  {'address':<{address}}  worker")
    for d in fleet_plan.devices:
        typer.echo(f"{d.name:<{width}}  {d.kind:<{kinds}}  {d.endpoint:<{address}}  {d.worker}")
    from fleet.rtu import describe_lines

    for line in describe_lines(fleet_plan.devices):
        typer.echo(line)
    typer.echo(_summary(fleet_plan))


def validate(path: Path = FLEET_FILE) -> None:
    """Validate fleet.toml; print a one-line summary (exit 2 with the error otherwise)."""
    if is_multihost(path):
        return typer.echo(multihost.summary(multihost.load(path)))
    plan = load_plan(path)
    check_here(path, plan)
    typer.echo(_summary(plan))


def _summary(fleet_plan) -> str:
    from fleet.kinds import KINDS

    counts = {k: sum(1 for d in fleet_plan.devices if d.kind == k) for k in KINDS}
    kinds = ", ".join(f"{n} {k}" for k, n in counts.items() if n or k in ("enip", "modbus"))
    return (f"fleet {fleet_plan.fleet.name!r}: {len(fleet_plan.devices)} devices "
            f"({kinds}) in {len(fleet_plan.workers)} workers, "
            f"backend {fleet_plan.fleet.backend}, addressing {fleet_plan.fleet.addressing}")
