"""The commands on a fleet that names lab hosts (:mod:`fleet.hosts`, :mod:`fleet.lab`): each
command module hands over here when fleet.toml has ``[[host]]`` entries or a ``[hosts]``
inventory."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from fleet.cli.common import EXIT_CONFIG, EXIT_FAILED, fail


def load(path: Path):  # -> fleet.hosts.MultiHost
    from fleet.hosts import load as load_hosts
    from fleet.table import ConfigError

    try:
        return load_hosts(path)
    except ConfigError as exc:
        fail(str(exc), EXIT_CONFIG)


def refuse(what: str, given: object) -> None:
    """A single-host option that has no meaning across hosts."""
    if given:
        fail(f"{what} does not apply to a multi-host fleet", EXIT_CONFIG)


def plan(path: Path, as_json: bool) -> None:
    lab = load(path)
    if as_json:
        typer.echo(json.dumps({"fleet": lab.name, "hosts": [s.host.to_json() for s in lab.shards],
                               "devices": [{**d.to_json(), "lab_host": s.host.name}
                                           for s in lab.shards for d in s.plan.devices]}, indent=1))
        return
    width = max(len(d.name) for s in lab.shards for d in s.plan.devices)
    hosts = max(len(s.host.name) for s in lab.shards)
    typer.echo(f"{'device':<{width}}  {'host':<{hosts}}  kind    {'address':<21}  worker")
    for s in lab.shards:
        for d in s.plan.devices:
            typer.echo(f"{d.name:<{width}}  {s.host.name:<{hosts}}  {d.kind:<6}  {d.endpoint:<21}  "
                       f"{d.worker}")
    typer.echo(summary(lab))


def summary(lab) -> str:
    from fleet.kinds import KINDS

    devices = [d for s in lab.shards for d in s.plan.devices]
    kinds = ", ".join(f"{sum(1 for d in devices if d.kind == k)} {k}" for k in KINDS)
    per = ", ".join(f"{s.host.name} {len(s.plan.devices)} at {s.host.address}" for s in lab.shards)
    return f"fleet {lab.name!r}: {len(devices)} devices ({kinds}) on {len(lab.shards)} hosts ({per})"


def _deploy(path: Path, playbook: str, extra: dict[str, str]):
    from fleet.lab import LabError, run_playbook, state_dir

    lab = load(path)
    folder = state_dir(path, lab)
    typer.echo(f"ansible-playbook {playbook} on {len(lab.shards)} hosts (output in "
               f"{folder / Path(playbook).stem}.log)", err=True)
    try:
        result = run_playbook(lab, folder, list(lab.hosts), playbook, extra)
    except LabError as exc:
        fail(str(exc))
    failed = result.failed_hosts()
    if result.returncode != 0 and not failed:
        fail(f"ansible-playbook exited with {result.returncode}: {result.output.strip().splitlines()[-1:]}")
    for host in lab.hosts:
        counts = result.recap.get(host.name)
        if host.name in failed:
            typer.echo(f"  {host.name}: {failed[host.name]}: {result.error_of(host.name)}")
        elif counts is not None:
            typer.echo(f"  {host.name}: ok ({counts.get('changed', 0)} changed)")
    return lab, result, failed


def up(path: Path, timeout: float) -> None:
    from fleet.lab import wait_healthy

    made = _make_vms(path)
    lab, result, failed = _deploy(path, "playbook.yml", {"cpppo_fleet_up_timeout": str(int(timeout))})
    if made is not None:
        typer.echo(f"vagrant up: {len(lab.shards)} {lab.vms.provider} machines in {made:.0f}s")
    reached = [h.name for h in lab.hosts if h.name not in failed]
    status = wait_healthy(lab, timeout, reached)
    on = [h for h in status["hosts"].values() if h["state"] == "up"]
    typer.echo(f"fleet {lab.name!r} is up on {len(on)}/{len(lab.shards)} hosts: {status['summary']} "
               f"(deployed in {result.seconds:.0f}s)")
    typer.echo(f"  status: cpppo-fleet status {path}")
    typer.echo(f"  down:   cpppo-fleet down {path}")
    if failed:
        fail(f"{', '.join(sorted(failed))} not deployed ({', '.join(sorted(set(failed.values())))}); "
             "`cpppo-fleet up` again deploys what is missing")
    if status["healthy"] != status["total"]:
        fail(f"{status['total'] - status['healthy']} devices not healthy")


def down(path: Path) -> None:
    lab = load(path)
    if lab.vms is not None:
        return _down_vms(path, lab)
    lab, _result, failed = _deploy(path, "fleet-down.yml", {})
    if failed:
        fail(f"{', '.join(sorted(failed))}: not taken down ({', '.join(sorted(set(failed.values())))}); "
             "run `cpppo-fleet down` again when they answer")
    typer.echo(f"fleet {lab.name!r} is down on {len(lab.shards)} hosts")


def _echo_err(line: str) -> None:
    typer.echo(line, err=True)


def _make_vms(path: Path) -> float | None:
    """backend = "vagrant": the VMs, made (or found) by ``vagrant up``; the seconds it took."""
    from fleet.vagrant import VagrantError, create

    lab = load(path)
    if lab.vms is None:
        return None
    try:
        return create(path, lab.name, lab.vms, _echo_err)
    except VagrantError as exc:
        fail(str(exc))


def _down_vms(path: Path, lab) -> None:
    """backend = "vagrant": the shards down (where the VMs answer), then the VMs, their network
    and the project destroyed."""
    from fleet.vagrant import VagrantError, destroy, project_dir

    if (project_dir(path, lab.name) / "ssh-config").exists():
        _lab, _result, failed = _deploy(path, "fleet-down.yml", {})
        for name in sorted(failed):
            typer.echo(f"  {name}: not taken down ({failed[name]}); destroying it anyway", err=True)
    try:
        left = destroy(path, lab.name, lab.vms, _echo_err)
    except VagrantError as exc:
        fail(str(exc))
    if left:
        fail(f"left behind: {'; '.join(left)} (`cpppo-fleet down` again retries)")
    import shutil

    from fleet.lab import state_dir

    hosts = state_dir(path, lab)  # the shards' files and logs of machines that are no more
    shutil.rmtree(hosts, ignore_errors=True)
    if hosts.parent.is_dir() and not any(hosts.parent.iterdir()):
        hosts.parent.rmdir()
    typer.echo(f"fleet {lab.name!r} is down: {len(lab.shards)} VMs destroyed, their network and project "
               "removed")


def status(path: Path, as_json: bool, faults_ok: bool) -> None:
    from fleet.lab import fleet_status

    lab = load(path)
    report = fleet_status(lab)
    if as_json:
        typer.echo(json.dumps(report, indent=1))
    else:
        _table(lab, report)
    fine = {"healthy", "faulted"} if faults_ok else {"healthy"}
    if not all(d["state"] in fine for d in report["devices"]):
        raise typer.Exit(EXIT_FAILED)


def _table(lab, report) -> None:
    from rich.console import Console

    from fleet.cli.table import print_device_table
    from fleet.report import DeviceReport
    from fleet.states import DeviceState

    names = set(DeviceReport._fields)
    reports = [DeviceReport(**{**{k: v for k, v in d.items() if k in names},
                               "state": DeviceState(d["state"])}) for d in report["devices"]]
    console = Console(width=max(150, Console().width))
    print_device_table(console, lab.name, reports, hosts=[d["lab_host"] for d in report["devices"]])
    for name, host in report["hosts"].items():
        if host["error"]:
            console.print(f"{name} ({host['address']}): {host['error']}", markup=False, highlight=False)
    console.print(report["summary"], markup=False, highlight=False)


def poll(path: Path, as_json: bool) -> None:
    from fleet.lab import ask_all, remote_fleet

    lab = load(path)
    answers = ask_all(lab, {s.host.name: remote_fleet("poll", "--json") for s in lab.shards},
                      timeout=lab.timeout + max(s.plan.fleet.health_timeout for s in lab.shards))
    results, seconds = [], {}
    for shard in lab.shards:
        answer = answers[shard.host.name]
        got = answer.json() if answer.reached else None
        if isinstance(got, dict) and isinstance(got.get("results"), list):
            results += [{**r, "lab_host": shard.host.name} for r in got["results"]]
            seconds[shard.host.name] = got.get("seconds")
            continue
        why = f"host {'unreachable' if not answer.reached else 'not deployed'}: {answer.error}"
        results += [{"device": d.name, "ok": False, "latency": None, "error": why,
                     "lab_host": shard.host.name} for d in shard.plan.devices]
    ok = sum(r["ok"] for r in results)
    if as_json:
        typer.echo(json.dumps({"ok": ok, "total": len(results), "seconds": seconds, "results": results},
                              indent=1))
    else:
        from fleet.cli.table import ms

        width = max(len(r["device"]) for r in results)
        hosts = max(len(s.host.name) for s in lab.shards)
        for r in results:
            outcome = f"ok {ms(r['latency'])} ms" if r["ok"] else f"FAIL {r['error']}"
            typer.echo(f"{r['device']:<{width}}  {r['lab_host']:<{hosts}}  {outcome}")
        typer.echo(f"{ok} healthy / {len(results)} polled on {len(lab.shards)} hosts")
    if ok != len(results):
        raise typer.Exit(EXIT_FAILED)


def _forward(lab, answers: dict, what: str) -> None:
    """Each host's output, prefixed with its name; exit 1 when one did not do it."""
    bad = False
    for name, answer in answers.items():
        for line in answer.stdout.splitlines():
            typer.echo(f"{name}: {line}")
        if not answer.reached or answer.returncode != 0:
            bad = True
            typer.echo(f"cpppo-fleet: {name}: {what} failed: "
                       f"{'unreachable: ' if not answer.reached else ''}{answer.error}", err=True)
    if bad:
        raise typer.Exit(EXIT_FAILED)


def logs(path: Path, device: str, lines: int) -> None:
    from fleet.lab import ask, remote_fleet

    lab = load(path)
    shard = lab.host_of(device)
    if shard is None:
        fail(f"no device named {device!r} in {path} (a worker or 'health' is per host: "
             "name a device)", EXIT_CONFIG)
    typer.echo(f"# {device} runs on host {shard.host.name} ({shard.host.address})", err=True)
    answer = ask(shard.host, remote_fleet("logs", device, "--lines", str(lines)), lab.timeout)
    if not answer.reached or answer.returncode != 0:
        fail(f"{shard.host.name}: {'unreachable: ' if not answer.reached else ''}{answer.error}")
    typer.echo(answer.stdout, nl=False)


def restart(path: Path, pattern: str) -> None:
    from fleet.lab import ask_all, remote_fleet

    lab = load(path)
    shards = lab.matching(pattern)
    if not shards:
        fail(f"no device matches {pattern!r}", EXIT_CONFIG)
    _forward(lab, ask_all(lab, {s.host.name: remote_fleet("restart", pattern) for s in shards},
                          timeout=lab.timeout + 60), "restart")


def fault(path: Path, args: list[str], clear: bool, duration: str | None, seed: int | None) -> None:
    from fleet.lab import REMOTE_COMMAND, REMOTE_FLEET, REMOTE_STATE, ask_all

    lab = load(path)
    shards = lab.matching(args[0]) if args else list(lab.shards)
    if not shards:
        fail(f"no device matches {args[0]!r}", EXIT_CONFIG)
    options = ["--clear"] if clear else []
    options += [] if duration is None else ["--for", duration]
    options += [] if seed is None else ["--seed", str(seed)]
    remote = [REMOTE_COMMAND, "fault", *options, "--state-dir", REMOTE_STATE, *args, REMOTE_FLEET]
    _forward(lab, ask_all(lab, {s.host.name: remote for s in shards}), "fault")
