"""Fleet speed and memory: `cpppo-fleet up` of N devices (half ENIP, half Modbus) on the process
backend, against the naive layout of one upstream cpppo server process per device under
supervisord (``--naive``, at its own N, default 200).

    python benchmarks/fleet_scale.py                  # N = 200, ours only (about a minute)
    python benchmarks/fleet_scale.py --n 1000 --naive # and the naive layout at N = 200
    python benchmarks/fleet_scale.py --n 10000 --n 30000 --n 100000 --per-worker 5000 --large
                                                      # issue 20's rows (each N in turn)

``--large`` (for N in the tens of thousands) measures what the supervised fleet does itself
instead of sweeping from this process (which could not hold 100,000 connections): the full
sweep is the supervised pollers' (all shards) answer to a sweep request, idle CPU is measured
with the pollers stopped (polling off) and again with them sweeping, SIGKILL-to-healthy and
`status --json` are timed as a user would see them.

Measured: time from `up` to all healthy, total RSS of the fleet (supervisord + workers +
poller), idle CPU of the fleet (fraction of one core, over --idle seconds with the health
poller sweeping every 5 s), wall time of one full health sweep (fresh connections, as
`cpppo-fleet poll`; and persistent ones, as the supervised poller), time from SIGKILL of a
worker to its devices healthy again, and time for `down`.  Upstream's modbus_sim needs
pymodbus 1.x, so the naive layout runs upstream's ENIP server for every device.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import xmlrpc.client
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cpppo.server.hosting import new_event_loop  # noqa: E402
from fleet.backends.process import ProcessBackend  # noqa: E402
from fleet.config import load  # noqa: E402
from fleet.plan import expand  # noqa: E402
from fleet.poller import Poller, run_sweep  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")


def fleet_toml(n: int, per_worker: int, octet: int, kinds: str = "enip,modbus",
               interval: float | None = 5.0) -> str:
    interval = "" if interval is None else f"health_interval = {interval}\n"  # None: the default for n
    enip, modbus = (n - n // 2, n // 2) if kinds == "enip,modbus" else (n, 0) if kinds == "enip" else (0, n)
    text = f"""
[fleet]
name = "bench{n}"
address_pool = "127.{octet}.0.0/{16 if n < 65_000 else 15}"
{interval}health_timeout = 2.0
devices_per_worker = {per_worker}
"""
    if enip:
        text += f"""
[[device]]
kind = "enip"
count = {enip}
name = "plc{{n:05}}"
tags = ["SCADA=INT[100]", "Speed=REAL"]
identity = {{ product_name = "1756-L61/B LOGIX5561", serial_number = "0x6{{n:07}}" }}
"""
    if modbus:
        text += f"""
[[device]]
kind = "modbus"
count = {modbus}
name = "mb{{n:05}}"
port = 1502
registers = ["40001-40100=0", "1-16=0"]
"""
    return text


def rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError):
            pass
    return total / CLK_TCK


def idle_cpu(pids: list[int], seconds: float) -> float:
    before, begun = cpu_seconds(pids), time.monotonic()
    time.sleep(seconds)
    return (cpu_seconds(pids) - before) / (time.monotonic() - begun)


def fleet_pids(backend: ProcessBackend) -> list[int]:
    pids = [p.pid for p in backend.status().values() if p.pid]
    supervisord = backend._supervisord_pid()
    return pids + ([supervisord] if supervisord else [])


def persistent_sweep(devices) -> float:
    async def run() -> float:
        poller = Poller(2.0, 200)
        await poller.sweep(devices)  # connect
        begun = time.monotonic()
        results = await poller.sweep(devices)
        elapsed = time.monotonic() - begun
        await poller.close()
        assert all(r.ok for r in results), [r for r in results if not r.ok][:3]
        return elapsed

    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(run())


def ours(n: int, per_worker: int, idle: float, tmp: Path, kinds: str,
         interval: float = 5.0) -> dict[str, float | str]:
    path = tmp / "fleet.toml"
    path.write_text(fleet_toml(n, per_worker, 78, kinds, interval))
    state = tmp / "state"
    plan = expand(load(path))
    backend = ProcessBackend(plan, state)
    cli = [sys.executable, "-c", "from fleet.cli import main; main()"]
    out: dict[str, float | str] = {}
    try:
        begun = time.monotonic()
        proc = subprocess.run([*cli, "up", str(path), "--state-dir", str(state), "--timeout", "300"],
                              capture_output=True, text=True, timeout=600)
        out["up to all healthy (s)"] = time.monotonic() - begun
        if proc.returncode != 0:
            out["note"] = (proc.stdout + proc.stderr).strip().splitlines()[-1]
            return out
        time.sleep(2)
        pids = fleet_pids(backend)
        out["processes"] = len(pids)
        out["total RSS (MB)"] = rss_mb(pids)
        out["idle CPU (cores)"] = idle_cpu(pids, idle)
        begun = time.monotonic()
        results = run_sweep(plan.devices, 2.0, 200)
        out["sweep, fresh conns (s)"] = time.monotonic() - begun
        out["sweep ok"] = sum(r.ok for r in results)
        out["sweep, persistent (s)"] = persistent_sweep(plan.devices)
        victim = backend.status()["w000"].pid
        devices = plan.worker_devices("w000")
        os.kill(victim, signal.SIGKILL)
        begun = time.monotonic()
        while time.monotonic() - begun < 60:
            if all(r.ok for r in run_sweep(devices, 0.5, 200)):
                break
            time.sleep(0.05)
        out["SIGKILL to healthy (s)"] = time.monotonic() - begun
    finally:
        begun = time.monotonic()
        subprocess.run([*cli, "down", str(path), "--state-dir", str(state)], capture_output=True, timeout=300)
        out["down (s)"] = time.monotonic() - begun
    return out


def large(n: int, per_worker: int, idle: float, tmp: Path, kinds: str,
          interval: float | None) -> dict[str, float | str]:
    """The rows of issue 20 for one N: everything measured through the supervised fleet."""
    from fleet.backends.base import health_programs
    from fleet.health import request_sweep
    from fleet.store import Store

    path = tmp / "fleet.toml"
    path.write_text(fleet_toml(n, per_worker, 78, kinds, interval))
    state = tmp / "state"
    begun = time.process_time()
    plan = expand(load(path))
    out: dict[str, float | str] = {"plan CPU (s)": time.process_time() - begun}
    backend = ProcessBackend(plan, state)
    cli = [sys.executable, "-c", "from fleet.cli import main; main()"]

    def settled(since: float, timeout: float = 300.0) -> float:
        """Seconds from ``since`` until the store has an ok result newer than it for every
        device: the last such result's time.  One count a look, every 0.5 s (reading 100,000
        rows into a dict at each look took a tenth of a core from the sweep it measured)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with Store(state / "health.sqlite") as store:
                if store.count_ok_since(since) == n:
                    last = store.db.execute("SELECT max(time) FROM health WHERE ok AND time >= ?",
                                            (since,)).fetchone()[0]
                    return last - since
            time.sleep(0.5)
        return float("nan")

    try:
        begun = time.monotonic()
        proc = subprocess.run([*cli, "up", str(path), "--state-dir", str(state), "--timeout", "600"],
                              capture_output=True, text=True, timeout=900)
        out["up to all healthy (s)"] = time.monotonic() - begun
        if proc.returncode != 0:
            out["note"] = (proc.stdout + proc.stderr).strip().splitlines()[-1]
            return out
        time.sleep(2)
        status = backend.status()
        pollers = [p for p in health_programs(8) if p in status]
        out["workers / pollers"] = f"{len(plan.workers)} / {len(pollers)}"
        pids = fleet_pids(backend)
        out["total RSS (MB)"] = rss_mb(pids)
        out["pollers' RSS (MB)"] = rss_mb([status[p].pid for p in pollers])
        out["RSS per device (kB)"] = out["total RSS (MB)"] * 1024 / n
        begun = time.monotonic()
        proc = subprocess.run([*cli, "status", str(path), "--state-dir", str(state), "--json"],
                              capture_output=True, text=True, timeout=300)
        out["status --json (s)"] = time.monotonic() - begun
        out["status healthy"] = json.loads(proc.stdout)["healthy"] if proc.stdout else proc.stderr[-200:]
        out["full sweep (s)"] = settled(request_sweep(state))
        out["idle CPU, polling (cores)"] = idle_cpu(fleet_pids(backend), idle)
        rpc = backend._rpc()
        for name in pollers:
            rpc.stopProcess(name, True)
        out["idle CPU, polling off (cores)"] = idle_cpu(fleet_pids(backend), idle)
        for name in pollers:
            rpc.startProcess(name, True)
        settled(request_sweep(state))
        victim = backend.status()["w000"].pid
        devices = plan.worker_devices("w000")
        os.kill(victim, signal.SIGKILL)
        begun = time.monotonic()
        while time.monotonic() - begun < 300:  # this process's own polls, fresh connections
            if all(r.ok for r in run_sweep(devices, 2.0, 500)):
                break
            time.sleep(0.2)
        out["SIGKILL to healthy (s)"] = time.monotonic() - begun
    finally:
        begun = time.monotonic()
        subprocess.run([*cli, "down", str(path), "--state-dir", str(state)], capture_output=True, timeout=600)
        out["down (s)"] = time.monotonic() - begun
    return out


def naive(n: int, idle: float, tmp: Path) -> dict[str, float | str]:
    """One upstream `python -m cpppo.server.enip` per device under a supervisord of its own."""
    from supervisor.xmlrpc import SupervisorTransport

    from tests.upstream import upstream_python

    python = upstream_python()
    sock = tmp / "naive.sock"
    conf = [f"[unix_http_server]\nfile={sock}\n", f"[supervisord]\nlogfile={tmp}/naive.log\n"
            f"pidfile={tmp}/naive.pid\nchildlogdir={tmp}\nminfds=20000\n",
            "[rpcinterface:supervisor]\nsupervisor.rpcinterface_factory = "
            "supervisor.rpcinterface:make_main_rpcinterface\n"]
    hosts = [f"127.79.{i // 250}.{i % 250 + 1}" for i in range(n)]
    for i, host in enumerate(hosts):
        conf.append(f"[program:d{i}]\ncommand={python} -I -m cpppo.server.enip -a {host}:44818 "
                    f"SCADA=INT[100] Speed=REAL\ndirectory={tmp}\nstdout_logfile=NONE\nredirect_stderr=true\n"
                    "autostart=true\nstartsecs=0\nstopasgroup=true\n")
    (tmp / "naive.conf").write_text("\n".join(conf))
    rpc = xmlrpc.client.ServerProxy("http://127.0.0.1",
                                    transport=SupervisorTransport("", "", f"unix://{sock}")).supervisor
    out: dict[str, float | str] = {}
    begun = time.monotonic()
    subprocess.run([sys.executable, "-m", "supervisor.supervisord", "-c", str(tmp / "naive.conf")],
                   check=True, timeout=60)
    supervisord = 0
    while not supervisord and time.monotonic() - begun < 30:
        try:
            supervisord = int((tmp / "naive.pid").read_text())
        except (OSError, ValueError):
            time.sleep(0.05)
    try:
        import socket

        pending = list(hosts)
        while pending and time.monotonic() - begun < 300:
            still = []
            for host in pending:
                try:
                    socket.create_connection((host, 44818), timeout=0.2).close()
                except OSError:
                    still.append(host)
            pending = still
            time.sleep(0.2 if pending else 0)
        out["up to all healthy (s)"] = time.monotonic() - begun
        out["note"] = f"{n - len(pending)}/{n} listening"
        time.sleep(2)
        pids = [p["pid"] for p in rpc.getAllProcessInfo() if p["pid"]]
        pids.append(supervisord)
        out["processes"] = len(pids)
        out["total RSS (MB)"] = rss_mb(pids)
        out["idle CPU (cores)"] = idle_cpu(pids, idle)
    finally:
        begun = time.monotonic()
        rpc.stopAllProcesses(True)
        rpc.shutdown()
        while Path(f"/proc/{supervisord}").exists() and time.monotonic() - begun < 120:
            time.sleep(0.1)
        out["down (s)"] = time.monotonic() - begun
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, action="append", help="devices (default 200); repeat for more rows")
    parser.add_argument("--large", action="store_true", help="measure via the supervised fleet (N >= 10k)")
    parser.add_argument("--interval", type=float, help="health_interval (default: 5 s; --large: unset)")
    parser.add_argument("--per-worker", type=int, default=100, help="devices per worker process")
    parser.add_argument("--naive", action="store_true", help="also run the naive layout")
    parser.add_argument("--naive-n", type=int, default=200, help="devices in the naive layout")
    parser.add_argument("--kinds", default="enip,modbus", choices=["enip,modbus", "enip", "modbus"],
                        help="device kinds in our fleet (default: half each)")
    parser.add_argument("--idle", type=float, default=10.0, help="seconds to sample idle CPU over")
    args = parser.parse_args()
    rows = {}
    for n in args.n or [200]:
        with tempfile.TemporaryDirectory(prefix="fleet-bench-") as tmp:
            (Path(tmp) / "ours").mkdir()
            if args.large:
                rows[f"N={n}"] = large(n, args.per_worker, args.idle, Path(tmp) / "ours", args.kinds,
                                       args.interval)
            else:
                rows[f"cpppo-fleet N={n}"] = ours(n, args.per_worker, args.idle, Path(tmp) / "ours",
                                                  args.kinds, args.interval or 5.0)
        print(json.dumps(rows), file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix="fleet-bench-") as tmp:
        if args.naive:
            (Path(tmp) / "naive").mkdir()
            rows[f"naive N={args.naive_n}"] = naive(args.naive_n, args.idle, Path(tmp) / "naive")
    keys = list(dict.fromkeys(k for row in rows.values() for k in row))
    names = list(rows)
    ratio = "naive/ours" if args.naive else f"{names[-1]}/{names[0]}"  # the second column over the first
    print(f"{'metric':<32}" + "".join(f"{name:>22}" for name in names)
          + (f"   {ratio}" if len(names) == 2 else ""))
    for key in keys:
        cells = [rows[name].get(key, "") for name in names]
        line = f"{key:<32}" + "".join(f"{c:>22.3f}" if isinstance(c, float) else f"{c!s:>22}" for c in cells)
        if len(cells) == 2 and all(isinstance(c, (int, float)) and c for c in cells) and key != "processes":
            line += f"   {cells[1] / cells[0]:>8.2f}x"
        print(line)
    if args.naive and [args.naive_n] != args.n:
        print(f"(naive/ours compares fleet totals at different N: {args.naive_n} vs {args.n})")
    print(json.dumps(rows), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
