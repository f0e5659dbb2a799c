"""The health poller's cost per polled device: memory (RSS, and tracemalloc's sizes by line)
and CPU per poll, ENIP and Modbus apart, this tree beside an older one in the same run.

    python benchmarks/poller_cost.py --kind enip --kind modbus --n 1000 --n 5000 --old /work/main
    python benchmarks/poller_cost.py --kind enip --n 2000 --profile   # where a sweep's CPU goes

For each kind and N: the devices are served by ``python -m fleet.worker`` processes of 5,000
devices each (this tree's worker, for both pollers); then, in a fresh process of each tree, a
``fleet.poller.Poller`` connects to all of them (one sweep), and RSS is read before (the plan
loaded) and after (every client connected and set up), and --sweeps persistent sweeps are
timed in CPU seconds of the poller process and of the workers: µs of CPU per poll, client side
and server side.  ``--trace``: tracemalloc's top allocation sites of the connected clients.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.fleet_scale import cpu_seconds, fleet_toml  # noqa: E402
from fleet.config import parse  # noqa: E402
from fleet.plan import devices_to_json, expand  # noqa: E402

POLLER = r"""
import sys
tree, plan_path, sweeps = sys.argv[1], sys.argv[2], int(sys.argv[3])
trace, profile = sys.argv[4] == "1", sys.argv[5]
sys.path.insert(0, tree)
import asyncio, gc, json, os, time, tracemalloc

def rss():
    for line in open(f"/proc/{os.getpid()}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024

import fleet, fleet.health
from fleet.poller import Poller
from fleet.plan import devices_from_json
from cpppo.server.hosting import new_event_loop
from fleet.limits import raise_fd_limit
raise_fd_limit()
assert fleet.__file__.startswith(tree), fleet.__file__
devices = devices_from_json(json.load(open(plan_path)))
workers = [int(p) for p in sys.argv[6].split(",")]

def worker_cpu():
    total = 0
    for pid in workers:
        fields = open(f"/proc/{pid}/stat").read().rsplit(") ", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")

async def main():
    out = {"n": len(devices)}
    poller = Poller(5.0, 200)
    for _ in range(30):  # until every device answers (workers still starting)
        if all(r.ok for r in await poller.sweep(devices)):
            break
        await asyncio.sleep(1)
    else:
        out["failed"] = sum(not r.ok for r in await poller.sweep(devices))
    await poller.close()
    poller = Poller(5.0, 200)
    gc.collect()
    before = rss()
    if trace:
        tracemalloc.start(4)
        snap0 = tracemalloc.take_snapshot()
    for _ in range(10):  # connect every client (a setup that timed out under load goes on)
        ok = sum(r.ok for r in await poller.sweep(devices))
        if ok == len(devices):
            break
    out["connect ok"] = ok
    gc.collect()
    if trace:
        snap1 = tracemalloc.take_snapshot()
        stats = snap1.compare_to(snap0, "lineno")
        out["traced bytes/device"] = sum(s.size_diff for s in stats) / len(devices)
        out["top"] = [(str(s.traceback[0]), round(s.size_diff / len(devices), 1),
                       round(s.count_diff / len(devices), 2)) for s in stats[:14]]
        tracemalloc.stop()
    out["RSS bytes/device"] = (rss() - before) / len(devices)
    out["RSS MB"] = rss() / 2**20
    cpu, wcpu, polls = time.process_time(), worker_cpu(), 0
    if profile:
        import cProfile
        prof = cProfile.Profile()
        prof.enable()
    for _ in range(sweeps):
        results = await poller.sweep(devices)
        polls += len(results)
        assert all(r.ok for r in results), [r for r in results if not r.ok][:2]
    if profile:
        prof.disable()
        prof.dump_stats(profile)
    out["client CPU µs/poll"] = (time.process_time() - cpu) / polls * 1e6
    out["server CPU µs/poll"] = (worker_cpu() - wcpu) / polls * 1e6
    await poller.close()
    print(json.dumps(out))

with asyncio.Runner(loop_factory=new_event_loop) as runner:
    runner.run(main())
"""


def serve(plan, tmp: Path) -> list[subprocess.Popen]:
    procs = []
    for worker in plan.workers:
        spec = {"worker": worker.name, **devices_to_json(plan.worker_devices(worker.name)),
                "max_connections": 0}
        path = tmp / f"{worker.name}.json"
        path.write_text(json.dumps(spec))
        procs.append(subprocess.Popen([sys.executable, "-m", "fleet.worker", str(path)], cwd=ROOT,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return procs


def measure(kind: str, n: int, trees: list[Path], sweeps: int, trace: bool, profile: bool,
            octet: int) -> dict[str, dict]:
    plan = expand(parse(fleet_toml(n, 5000, octet, kind), source=f"poller_cost_{kind}.toml"))
    rows = {}
    with tempfile.TemporaryDirectory(prefix="poller-cost-") as name:
        tmp = Path(name)
        (tmp / "plan.json").write_text(json.dumps(devices_to_json(plan.devices)))
        procs = serve(plan, tmp)
        try:
            for tree in trees:
                prof = str(tmp / f"{tree.name}.prof") if profile else ""
                proc = subprocess.run([sys.executable, "-c", POLLER, str(tree), str(tmp / "plan.json"),
                                       str(sweeps), "1" if trace else "0", prof,
                                       ",".join(str(p.pid) for p in procs)],
                                      capture_output=True, text=True, timeout=900, cwd="/tmp")
                if proc.returncode:
                    rows[str(tree)] = {"error": proc.stderr.strip().splitlines()[-1:]}
                    continue
                rows[str(tree)] = json.loads(proc.stdout.strip().splitlines()[-1])
                rows[str(tree)]["worker CPU s (all)"] = cpu_seconds([p.pid for p in procs])
                if profile:
                    import pstats

                    pstats.Stats(prof).sort_stats("tottime").print_stats(25)
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", action="append", choices=["enip", "modbus"])
    parser.add_argument("--n", type=int, action="append")
    parser.add_argument("--old", type=Path, help="an older source tree measured beside this one")
    parser.add_argument("--sweeps", type=int, default=5)
    parser.add_argument("--trace", action="store_true", help="tracemalloc's top sites (slower)")
    parser.add_argument("--profile", action="store_true", help="cProfile of the timed sweeps")
    args = parser.parse_args()
    trees = ([args.old.resolve()] if args.old else []) + [ROOT]
    print(f"load average {os.getloadavg()}", flush=True)
    for kind in args.kind or ["enip", "modbus"]:
        for n in args.n or [1000]:
            begun = time.monotonic()
            rows = measure(kind, n, trees, args.sweeps, args.trace, args.profile, 83)
            for tree, row in rows.items():
                print(json.dumps({"kind": kind, "tree": tree, **row}), flush=True)
            print(f"({kind} N={n}: {time.monotonic() - begun:.0f} s; load average {os.getloadavg()})",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
