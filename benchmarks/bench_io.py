"""Implicit I/O speed: one worker process of ``--adapters`` Class 1 adapters (ours, then
cm-ethernetip's in its virtualenv), each with one scanner connection at ``--rpi`` ms, for
``--seconds``; the same scanner processes (ours, uvloop) drive both.

    python benchmarks/bench_io.py [--adapters 100] [--rpi 10] [--seconds 10] [--scanners 1] [--skip-peer]

The scanner side runs in ``--scanners`` processes, each driving its share of the connections
(default 1: with the adapter process that is one process a core on a 2-core machine; on more
cores, 2 or more keep one busy scanner's own scheduling delays out of the jitter it measures).

Reported per adapter process: packets/s it sustained (T->O sent + O->T received, counted at
the scanner), T->O jitter at the scanner (|interval - RPI|, p50 / p99), missing and late
T->O packets, and the adapter process's CPU (cores used, from /proc/<pid>/stat).  Each
adapter has its own loopback address (ENIP on 44818, I/O on 2222); the scanners bind their
own loopback addresses and name their UDP port in the Forward Open.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TICK = os.sysconf("SC_CLK_TCK")
_OCTET = int(os.environ.get("BENCH_IO_OCTET", os.getpid() % 100 + 20))  # the parent's, in its children
os.environ["BENCH_IO_OCTET"] = str(_OCTET)
NET = f"127.119.{_OCTET}"  # adapters at NET.1..N
SCAN = f"127.119.{_OCTET + 100}"  # scanners bind SCAN.1..N


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


# --- our adapters (run as their own process) -----------------------------------------------------

async def serve_ours(count: int, seconds: float) -> None:
    from cpppo.enip.device.model import Device
    from cpppo.enip.server.io import IOEngine, serve_adapter

    engine = IOEngine()
    servers = []
    devices = []
    for n in range(count):
        device = Device.from_specs(["Inputs=DINT[2]", "Outputs=DINT"])
        server, _endpoint = await serve_adapter(device, ["100=in:Inputs", "150=out:Outputs", "151=config"],
                                                f"{NET}.{n + 1}", 44818, engine=engine)
        servers.append(server)
        devices.append(device.tag("Inputs").attribute)
    print(json.dumps({"ready": True}), flush=True)
    end = time.monotonic() + seconds
    counter = 0
    while time.monotonic() < end:  # inputs change every 10 ms, as the cm peer's do
        counter += 1
        for attribute in devices:
            attribute[0] = counter
        await asyncio.sleep(0.01)
    for server in servers:
        server.close()
    await engine.close()


# --- the scanner (its own process) ---------------------------------------------------------------

async def scan(first: int, count: int, rpi: float, seconds: float, base_port: int) -> dict:
    """Connections ``first`` .. ``first + count - 1``: their counts and T->O jitter samples."""
    from cpppo.enip.client.scanner import Scanner

    scanners = []
    for n in range(first, first + count):
        host, port = (f"{NET}.{n + 1}", 44818) if not base_port else (f"{NET}.1", base_port + n)
        scanners.append(Scanner(host, port, inputs=(100, 8), outputs=(150, 4), config=(151, b""), rpi=rpi,
                                io_address=(f"{SCAN}.{n % 250 + 1}", 0), keep=int(seconds / rpi * 2) + 100,
                                multiplier=5))  # x128: a loaded machine must not time them out
    await asyncio.gather(*(s.open() for s in scanners))
    await asyncio.sleep(1.0)  # settle, then measure
    for s in scanners:
        s.intervals.clear()
    before = [(s.sent, s.received, s.missing, s.late) for s in scanners]
    start = time.monotonic()
    await asyncio.sleep(seconds)
    elapsed = time.monotonic() - start
    after = [(s.sent, s.received, s.missing, s.late) for s in scanners]
    intervals = [i for s in scanners for i in s.intervals]
    errors = [s.error for s in scanners if s.error]
    await asyncio.gather(*(s.close() for s in scanners), return_exceptions=True)
    delta = [tuple(a - b for a, b in zip(x, y, strict=True)) for x, y in zip(after, before, strict=True)]
    bins: dict[int, int] = {}  # |interval - RPI| in 10 us bins: small to pass up a pipe, exact to merge
    for i in intervals:
        key = int(abs(i - rpi) * 1e5)
        bins[key] = bins.get(key, 0) + 1
    return {"sent": sum(d[0] for d in delta), "received": sum(d[1] for d in delta),
            "missing": sum(d[2] for d in delta), "late": sum(d[3] for d in delta), "errors": errors[:3],
            "elapsed": elapsed, "jitter_bins": sorted(bins.items()), "intervals": len(intervals),
            "interval_sum": sum(intervals)}


def summarise(parts: list[dict], rpi: float) -> dict:
    """One row from the scanner processes' results (rates summed over their own elapsed times)."""
    sent = sum(p["sent"] / p["elapsed"] for p in parts)
    received = sum(p["received"] / p["elapsed"] for p in parts)
    bins: dict[int, int] = {}
    for part in parts:
        for key, n in part["jitter_bins"]:
            bins[key] = bins.get(key, 0) + n
    count = sum(p["intervals"] for p in parts)

    def percentile(q: float) -> float | None:  # ms, to the 10 us bin's upper edge
        rank, seen = int(count * q), 0
        for key in sorted(bins):
            seen += bins[key]
            if seen > rank:
                return (key + 1) / 100
        return None

    return {"o_t_per_s": sent, "t_o_per_s": received, "packets_per_s": sent + received,
            "jitter_p50_ms": percentile(0.5), "jitter_p99_ms": percentile(0.99),
            "interval_mean_ms": 1e3 * sum(p["interval_sum"] for p in parts) / count if count else None,
            "missing": sum(p["missing"] for p in parts), "late": sum(p["late"] for p in parts),
            "errors": [e for p in parts for e in p["errors"]][:3], "scanners": len(parts)}


def run_scanner(first: int, count: int, rpi: float, seconds: float, base_port: int) -> dict:
    from cpppo.server.hosting import new_event_loop

    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(scan(first, count, rpi, seconds, base_port))


# --- one side ------------------------------------------------------------------------------------

def measure(name: str, server_argv: list[str], args: argparse.Namespace, base_port: int) -> dict:
    proc = subprocess.Popen(server_argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT)
    try:
        line = proc.stdout.readline()
        if not line or not json.loads(line).get("ready"):
            raise SystemExit(f"{name} adapters did not start: {proc.stderr.read()[-2000:]}")
        time.sleep(0.5)
        cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
        shares = [args.adapters // args.scanners + (k < args.adapters % args.scanners)
                  for k in range(args.scanners)]
        firsts = [sum(shares[:k]) for k in range(args.scanners)]
        scanners = [subprocess.Popen([sys.executable, __file__, "--scanner", str(first), str(share),
                                      str(args.rpi), str(args.seconds), str(base_port)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
                    for first, share in zip(firsts, shares, strict=True) if share]
        parts = []
        try:
            with ThreadPoolExecutor(len(scanners)) as pool:  # read all pipes at once: none blocks
                outputs = list(pool.map(lambda s: s.communicate(timeout=args.seconds * 4 + 120), scanners))
            for scanner, (out, err) in zip(scanners, outputs, strict=True):
                if scanner.returncode:
                    raise SystemExit(f"scanner failed against {name}: {err[-2000:]}")
                parts.append(json.loads(out.strip().splitlines()[-1]))
        finally:
            for scanner in scanners:
                scanner.kill()
                scanner.wait()
        cpu = (cpu_seconds(proc.pid) - cpu0) / (time.monotonic() - t0)
        result = summarise(parts, args.rpi / 1000)
        result["adapter_cpu_cores"] = cpu
        return result
    finally:
        proc.kill()
        proc.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--adapters", type=int, default=100)
    ap.add_argument("--rpi", type=float, default=10.0, help="ms (default 10)")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--scanners", type=int, default=1, help="scanner processes (default 1)")
    ap.add_argument("--skip-peer", action="store_true")
    ap.add_argument("--serve-ours", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--scanner", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_ours:
        from cpppo.server.hosting import ensure_fd_limit, new_event_loop
        ensure_fd_limit(4 * int(args.serve_ours[0]) + 64)
        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            runner.run(serve_ours(int(args.serve_ours[0]), float(args.serve_ours[1])))
        return 0
    if args.scanner:
        first, count, rpi, seconds, base = args.scanner
        result = run_scanner(int(first), int(count), float(rpi) / 1000, float(seconds), int(base))
        os.set_blocking(sys.stdout.fileno(), True)  # (the event loop may have left it non-blocking)
        print(json.dumps(result), flush=True)
        return 0
    if args.scanners < 1:
        ap.error("--scanners must be at least 1")
    life = str(args.seconds * 3 + 60)
    rows = {"ours": measure("our", [sys.executable, __file__, "--serve-ours", str(args.adapters), life],
                            args, 0)}
    if not args.skip_peer:
        from tests.cmeip import PEER, cm_python
        base = 30000 + os.getpid() % 20000
        rows["cm-ethernetip 0.1.0"] = measure(
            "cm-ethernetip", [str(cm_python()), "-I", str(PEER), "adapter", f"{NET}.1", str(base), str(base),
                              life, str(args.adapters)], args, base)
    print(f"{args.adapters} adapters, one connection each at {args.rpi:g} ms, {args.seconds:g} s, "
          f"{args.scanners} scanner process(es); load average {os.getloadavg()[0]:.1f}")
    keys = ("packets_per_s", "t_o_per_s", "o_t_per_s", "jitter_p50_ms", "jitter_p99_ms", "interval_mean_ms",
            "missing", "late", "adapter_cpu_cores")
    print(f"{'':24}" + "".join(f"{k:>18}" for k in keys))
    for name, row in rows.items():
        print(f"{name:24}" + "".join(f"{row[k]:>18.3f}" if isinstance(row[k], float) else f"{row[k]!s:>18}"
                                     for k in keys))
        if row["errors"]:
            print(f"  errors: {row['errors']}")
    if len(rows) == 2:
        ours, peer = rows.values()
        print(f"ratio ours/peer: packets/s {ours['packets_per_s'] / peer['packets_per_s']:.2f}x, "
              f"p99 jitter {peer['jitter_p99_ms'] / ours['jitter_p99_ms']:.2f}x lower, "
              f"CPU per packet {(peer['adapter_cpu_cores'] / peer['packets_per_s']) / (ours['adapter_cpu_cores'] / ours['packets_per_s']):.2f}x less")  # noqa: E501
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
