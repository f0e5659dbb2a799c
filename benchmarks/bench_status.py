"""`cpppo-fleet status` of a large fleet's state, without serving the fleet (issue 20): this tree
beside an older one (``--before``, a tree of main: ``git archive f1118ba | tar -x -C DIR``),
the same state, the same run.

    python benchmarks/bench_status.py --n 2000 --n 30000 --n 100000 --before /tmp/before

For each N (half ENIP, half Modbus, 5,000 devices per worker: ``fleet_scale.py``'s fleet):
fleet.toml is written, expanded (``fleet.plan.expand``) and its plan.json written as ``up``
writes it; the health store is filled through the poller's own API (``Store.record``, a few
sweeps of N results, 1% of them failed, plus worker starts and one worker's serve errors); a
real supervisord is started on the state folder's socket with a program of the fleet's name
for each worker and poller shard (each a ``sleep``: nothing is served, but ``status`` asks the
supervisor as it would).  Then the real ``cpppo-fleet status --json``, ``status`` and
``status --all`` (stdout to a file) are run end to end in a fresh interpreter of each tree,
``--repeat`` times each, and their wall and CPU seconds printed (best of the repeats), with
the ratio before/after.  The JSON of both trees is compared parsed, with each device's
``uptime`` (the seconds since its worker started: it grows between runs) set aside.
``--profile FILE``: a cProfile of this tree's ``status --json`` at the last N.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.fleet_scale import fleet_toml  # noqa: E402
from fleet.backends.base import health_programs  # noqa: E402
from fleet.backends.process import ProcessBackend  # noqa: E402
from fleet.backends.supervisor_conf import pid_path, socket_path  # noqa: E402
from fleet.config import load  # noqa: E402
from fleet.limits import poller_shards  # noqa: E402
from fleet.plan import expand  # noqa: E402
from fleet.store import HealthResult, Store  # noqa: E402

RUN = r"""
import sys
tree = sys.argv[1]
sys.path.insert(0, tree)
import fleet
assert fleet.__file__.startswith(tree), fleet.__file__
from fleet.cli import main
profile = sys.argv[2]
if profile:
    import cProfile
    code = []
    cProfile.run("code.append(main(sys.argv[3:]))", profile)
    sys.exit(code[0])
sys.exit(main(sys.argv[3:]))
"""

SWEEPS = 3  # sweeps recorded per device
INTERVAL = 3600.0  # health interval: the results stay fresh (not stale) for the whole run


def make_state(n: int, folder: Path) -> tuple[Path, int]:
    """fleet.toml and its state (plan.json, health store, supervisord of sleeps); supervisord's pid."""
    path = folder / "fleet.toml"
    path.write_text(fleet_toml(n, 5000, 90 + n % 7, interval=INTERVAL))
    plan = expand(load(path))
    backend = ProcessBackend(plan, folder / ".fleet" / plan.fleet.name)
    state = backend.state
    state.make()
    backend.write_applied(plan)
    programs = [w.name for w in plan.workers] + health_programs(poller_shards(len(plan.devices)))
    sock = socket_path(state)
    lines = ["[unix_http_server]", f"file={sock}", "chmod=0700", "[supervisord]",
             f"logfile={state.root / 'supervisord.log'}", f"pidfile={pid_path(state)}",
             f"childlogdir={state.logs}", f"directory={state.root}", "nodaemon=false",
             "[rpcinterface:supervisor]",
             "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface"]
    for name in programs:
        lines += [f"[program:{name}]", "command=sleep 86400", "startsecs=0", "stopasgroup=true",
                  "killasgroup=true", f"stdout_logfile={state.log(name)}"]
    conf = state.root / "bench-supervisord.conf"
    conf.write_text("\n".join(lines) + "\n")
    subprocess.run([sys.executable, "-m", "supervisor.supervisord", "-c", str(conf)], check=True,
                   timeout=60)
    deadline = time.monotonic() + 30
    while not backend.answering() or not all(p.pid for p in backend.status().values()):
        if time.monotonic() > deadline:
            raise SystemExit("supervisord did not answer")
        time.sleep(0.1)
    running = backend.status()
    now = time.time()
    with Store(state.database) as store:
        for program in programs:
            store.record_start(program, running[program].pid)
        store.record_start(plan.workers[0].name, running[plan.workers[0].name].pid)  # a restart
        for sweep in range(SWEEPS):
            results = [HealthResult(d.name, ok=i % 100 != 7, latency=0.001 + (i % 97) / 10000,
                                    error=None if i % 100 != 7 else "no answer within 2 s",
                                    time=now + sweep)
                       for i, d in enumerate(plan.devices)]
            store.record(results, plan.fleet.health_retention)
        worker = plan.workers[-1].name
        store.record_serve_errors(worker, running[worker].pid,
                                  {d.name: "[Errno 98] address already in use"
                                   for d in plan.worker_devices(worker)[:3]})
    return path, int(pid_path(state).read_text())


def run(tree: Path, args: list[str], out: Path, profile: str = "") -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, exit status) of one run of the CLI of ``tree``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    begun = time.monotonic()
    with open(out, "wb") as f:
        code = subprocess.run([sys.executable, "-c", RUN, str(tree), profile, *args], stdout=f,
                              stderr=subprocess.DEVNULL, cwd=tree, timeout=600).returncode
    wall = time.monotonic() - begun
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return wall, cpu, code


def comparable(text: str) -> dict:
    data = json.loads(text)
    for row in data["devices"]:
        row.pop("uptime")
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, action="append", help="devices (repeatable; default 2000)")
    parser.add_argument("--before", type=Path, help="an older tree to time beside this one")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--profile", help="write a cProfile of this tree's status --json here")
    opts = parser.parse_args()
    trees = {"after": ROOT, **({"before": opts.before.resolve()} if opts.before else {})}
    print(f"load average {os.getloadavg()[0]:.1f}", flush=True)
    for n in opts.n or [2000]:
        with tempfile.TemporaryDirectory(prefix="bench-status-") as tmp:
            folder = Path(tmp)
            begun = time.monotonic()
            path, supervisord = make_state(n, folder)
            print(f"N={n}: state made in {time.monotonic() - begun:.1f} s", flush=True)
            try:
                outputs: dict[str, str] = {}
                for label, args in (("--json", ["--json"]), ("summary", []), ("--all", ["--all"])):
                    best: dict[str, tuple[float, float]] = {}
                    for name, tree in trees.items():
                        out = folder / f"{name}{label}.out"
                        times = [run(tree, ["status", str(path), *args], out) for _ in range(opts.repeat)]
                        codes = {c for _, _, c in times}
                        assert codes == {1}, f"{name} status {label}: exit {codes} (1: not all healthy)"
                        best[name] = (min(t[0] for t in times), min(t[1] for t in times))
                        if label == "--json":
                            outputs[name] = out.read_text()
                        lines = out.read_text().count("\n")
                        print(f"N={n} status {label:8} {name:6} wall {best[name][0]:6.2f} s  "
                              f"CPU {best[name][1]:6.2f} s  ({lines} lines)", flush=True)
                    if "before" in best:
                        wall = best["before"][0] / best["after"][0]
                        print(f"N={n} status {label:8} ratio  wall {wall:.2f}x  "
                              f"CPU {best['before'][1] / best['after'][1]:.2f}x", flush=True)
                if "before" in outputs:
                    same = comparable(outputs["before"]) == comparable(outputs["after"])
                    print(f"N={n} status --json: same JSON as before (uptime aside): {same}", flush=True)
                    assert same
                if opts.profile and n == (opts.n or [2000])[-1]:
                    run(ROOT, ["status", str(path), "--json"], folder / "profile.out", opts.profile)
                    print(f"profile written to {opts.profile}")
            finally:
                os.kill(supervisord, signal.SIGTERM)
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    try:
                        os.kill(supervisord, 0)
                    except ProcessLookupError:
                        break
                    time.sleep(0.1)


if __name__ == "__main__":
    main()
