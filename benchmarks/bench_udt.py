"""Structures at scale: a controller of N tags from a Logix export, half of them structures
(a Motor UDT), against a controller of N plain DINT tags, in the same run.

Measures start-up (parse the export and build the device), memory per device (tracemalloc
of one build), pycomm3's full tag-list and template upload (LogixDriver(init_tags=True)),
and pycomm3 read rates: a whole structure, one member, a plain DINT.

``--fleet N``: instead, `cpppo-fleet up` of N such controllers (``tags_from`` the export) in
one worker on the process backend, against N controllers of the plain export, same run:
time from `up` to all healthy and the CPU seconds that took (the CLI's; the worker's, building
and serving every device: the figure a loaded machine does not inflate), the fleet's RSS, one
full health sweep, `down`.

    python benchmarks/bench_udt.py [--tags 5000] [--reads 2000]
    python benchmarks/bench_udt.py --fleet 100
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from cpppo.enip.device.l5x import load_export
from cpppo.enip.device.model import Device
from cpppo.enip.server.background import serve_in_thread

MOTOR = ('<DataType Name="Motor" Family="NoFamily" Class="User"><Members>'
         '<Member Name="ZZZZZZZZZZMotor0" DataType="SINT" Dimension="0" Hidden="true"/>'
         '<Member Name="Running" DataType="BIT" Dimension="0" Target="ZZZZZZZZZZMotor0" BitNumber="0"/>'
         '<Member Name="Speed" DataType="REAL" Dimension="0"/>'
         '<Member Name="Faults" DataType="DINT" Dimension="4"/>'
         '<Member Name="Name" DataType="STRING" Dimension="0"/></Members></DataType>')


def export(path: Path, count: int, structs: bool) -> Path:
    tags = []
    for i in range(count):
        kind = "Motor" if structs and i % 2 == 0 else "DINT"
        tags.append(f'<Tag Name="T{i}" TagType="Base" DataType="{kind}"/>')
    path.write_text('<?xml version="1.0"?><RSLogix5000Content SchemaRevision="1.0"><Controller Name="C">'
                    f'<DataTypes>{MOTOR if structs else ""}</DataTypes><Tags>{"".join(tags)}</Tags>'
                    '</Controller></RSLogix5000Content>')
    return path


def measure(path: Path, reads: int, structs: bool) -> dict[str, float]:
    from pycomm3 import LogixDriver

    started = time.perf_counter()
    device = Device.from_specs([], export=load_export(path), identity={"revision": (32, 11)})
    startup = time.perf_counter() - started
    tracemalloc.start()
    kept = Device.from_specs([], export=load_export(path))
    memory = tracemalloc.get_traced_memory()[0]  # while ``kept`` lives
    del kept
    tracemalloc.stop()
    out = {"startup_s": startup, "memory_mb": memory / 2**20}
    with serve_in_thread(device) as srv:
        started = time.perf_counter()
        with LogixDriver(f"127.0.0.1:{srv.port}") as plc:
            out["tag_upload_s"] = time.perf_counter() - started
            assert len(plc.tags) == len(device.tags)
            names = {"plain": "T1"} | ({"struct": "T0", "member": "T0.Speed"} if structs else {})
            for what, name in names.items():
                started = time.perf_counter()
                for _ in range(reads):
                    assert plc.read(name).error is None
                out[f"{what}_reads_per_s"] = reads / (time.perf_counter() - started)
    return out


def fleet(path: Path, count: int, octet: int) -> dict[str, float | str]:
    """`cpppo-fleet up` of ``count`` controllers of export ``path`` in one worker."""
    from fleet_scale import cpu_seconds, fleet_pids, rss_mb

    from fleet.backends.process import ProcessBackend
    from fleet.config import load
    from fleet.plan import expand
    from fleet.poller import run_sweep

    toml = path.with_suffix(".toml")
    toml.write_text(f"""
[fleet]
name = "udt{octet}"
address_pool = "127.{octet}.0.0/16"
health_interval = 5.0
health_timeout = 5.0
devices_per_worker = {count}

[[device]]
kind = "enip"
count = {count}
name = "plc{{n:04}}"
tags_from = "{path.name}"
""")
    state = path.parent / f"state{octet}"
    plan = expand(load(toml))
    cli = [sys.executable, "-c", "from fleet.cli import main; main()"]
    out: dict[str, float | str] = {}
    try:
        begun, before = time.monotonic(), resource.getrusage(resource.RUSAGE_CHILDREN)
        done = subprocess.run([*cli, "up", str(toml), "--state-dir", str(state), "--timeout", "300"],
                              capture_output=True, text=True, timeout=600)
        out["up to all healthy (s)"] = time.monotonic() - begun
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        out["up: CLI CPU (s)"] = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        if done.returncode != 0:
            out["note"] = (done.stdout + done.stderr).strip().splitlines()[-1]
            return out
        backend = ProcessBackend(plan, state)
        pids = fleet_pids(backend)
        names = {w.name for w in plan.workers}
        workers = [program.pid for name, program in backend.status().items() if name in names]
        out["up: worker CPU (s)"] = cpu_seconds(workers)
        out["processes"] = len(pids)
        out["total RSS (MB)"] = rss_mb(pids)
        begun = time.monotonic()
        results = run_sweep(plan.devices, 5.0, 200)
        out["health sweep (s)"] = time.monotonic() - begun
        out["healthy"] = sum(r.ok for r in results)
    finally:
        begun = time.monotonic()
        subprocess.run([*cli, "down", str(toml), "--state-dir", str(state)], capture_output=True, timeout=300)
        out["down (s)"] = time.monotonic() - begun
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tags", type=int, default=5000)
    ap.add_argument("--reads", type=int, default=2000)
    ap.add_argument("--fleet", type=int, default=0, metavar="N", help="run N-device fleets instead")
    args = ap.parse_args()
    if args.fleet:
        with tempfile.TemporaryDirectory(prefix="bench-udt-") as tmp:
            rows = {"half structures": fleet(export(Path(tmp) / "udt.L5X", args.tags, True), args.fleet, 83),
                    "plain tags": fleet(export(Path(tmp) / "plain.L5X", args.tags, False), args.fleet, 84)}
        for key in dict.fromkeys(k for row in rows.values() for k in row):
            udt, plain = rows["half structures"].get(key, ""), rows["plain tags"].get(key, "")
            ratio = f"{udt / plain:.2f}x" if all(isinstance(v, float) and v for v in (udt, plain)) else ""
            cells = [f"{v:.3f}" if isinstance(v, float) else str(v) for v in (udt, plain)]
            print(f"{key:<24} half structures: {cells[0]:>12}   plain tags: {cells[1]:>12}   {ratio}")
        return
    with tempfile.TemporaryDirectory() as tmp:
        udt = measure(export(Path(tmp) / "udt.L5X", args.tags, True), args.reads, True)
        plain = measure(export(Path(tmp) / "plain.L5X", args.tags, False), args.reads, False)
    for key in udt:
        peer = plain.get(key)
        ratio = f"{udt[key] / peer:.2f}x" if peer else "-"
        print(f"{key:<22} half structures: {udt[key]:10.3f}   plain tags: "
              f"{peer if peer is not None else float('nan'):10.3f}   ratio {ratio}")
    base = udt["plain_reads_per_s"]
    print(f"struct read / plain read (same device): {udt['struct_reads_per_s'] / base:.2f}x; "
          f"member / plain: {udt['member_reads_per_s'] / base:.2f}x")


if __name__ == "__main__":
    main()
