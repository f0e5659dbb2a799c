"""A Modbus/RTU fleet: time from ``cpppo-fleet up`` to every unit healthy, and the poll rate of
one line through its link against the wire limit, beside pymodbus's serial server in the same run.

    python benchmarks/bench_modbus_rtu_fleet.py [--lines 4] [--units 32] [--seconds 3]

1. ``--lines`` lines of ``--units`` units each (a fleet.toml made in a temporary folder; one
   worker per line; the last line keeps the wire's timing at 19200 8N1) brought up through the
   real CLI: ``up`` returns once the health poller has seen every unit answer over its line's
   health pty, so its wall time is the time to healthy.
   Then ``down``, timed too.
   The same number of Modbus/TCP devices, as many to a worker, through the same CLI: the
   reference.
2. One master (the lean loop of ``bench_modbus_rtu.py``) on the link of ``bus0`` reads 10
   holding registers, one request at a time, round-robin over the line's units: requests per
   second with timing off (a pty moves bytes at memory speed), while the fleet's health poller
   polls the same units over ``bus0.health``; pymodbus 3.x's serial server with as many devices,
   on a socat pty pair, in the same run.  Then a line with ``timing = true`` at 19200 8N1: the
   rate against the wire limit (request and reply on the wire, plus t3.5).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_modbus_rtu import REPLY, Master, measure, rate, servers  # noqa: E402

from cpppo.modbus.serial_line import LineSettings  # noqa: E402

CLI = [sys.executable, "-c", "import sys; from fleet.cli import main; sys.exit(main())"]


def fleet_text(lines: int, units: int) -> str:
    groups = "".join(f"""
[[device]]
kind = "modbus-rtu"
count = {units}
name = "u{line}x{{n:03}}"
line = "bus{line}"
parity = "N"
timing = {"true" if line == lines - 1 else "false"}
registers = ["40001-40010=99", "30001~counter(rate=1, high=999)"]
""" for line in range(lines))  # the last line keeps the wire's timing
    return f"""
[fleet]
name = "rtubench"
devices_per_worker = {units}
health_interval = 5.0
{groups}"""


def tcp_fleet_text(lines: int, units: int) -> str:
    """The same number of Modbus/TCP devices, as many to a worker: the reference for ``up``."""
    return f"""
[fleet]
name = "tcpbench"
address_pool = "127.67.0.0/24"
devices_per_worker = {units}
health_interval = 5.0

[[device]]
kind = "modbus"
count = {lines * units}
name = "d{{n:03}}"
port = 1502
registers = ["40001-40010=99", "30001~counter(rate=1, high=999)"]
"""


def cli(folder: Path, *args: str) -> float:
    began = time.monotonic()
    done = subprocess.run([*CLI, *args, str(folder / "fleet.toml")], capture_output=True, text=True,
                          timeout=600, cwd=folder)
    if done.returncode != 0:
        raise RuntimeError(f"cpppo-fleet {' '.join(args)}: {done.stdout}{done.stderr}")
    return time.monotonic() - began


def poll(link: str, seconds: float, units: int) -> dict:
    master = Master(link)
    try:
        master.ready()
        began = time.monotonic()
        done = rate(master, seconds, units)
        took = time.monotonic() - began
    finally:
        master.close()
    return {"requests": done, "rate": done / took, "cycle_ms": took / max(done, 1) * units * 1e3}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=4)
    parser.add_argument("--units", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.lines < 2:
        parser.error("--lines must be at least 2 (the last one keeps the wire's timing)")
    wire = LineSettings(19200, "N", 1)
    limit = 1 / ((8 + REPLY) * wire.char_time + wire.silences[1])
    with tempfile.TemporaryDirectory(prefix="rtubench") as tmp:
        folder = Path(tmp)
        (folder / "fleet.toml").write_text(fleet_text(args.lines, args.units))
        tty = folder / ".fleet" / "rtubench" / "tty"
        try:
            up = cli(folder, "up")
            fleet = poll(str(tty / "bus0"), args.seconds, args.units)
            timed = poll(str(tty / f"bus{args.lines - 1}"), args.seconds, args.units)
        finally:
            down = cli(folder, "down")
    with tempfile.TemporaryDirectory(prefix="tcpbench") as tmp:
        folder = Path(tmp)
        (folder / "fleet.toml").write_text(tcp_fleet_text(args.lines, args.units))
        try:
            tcp_up = cli(folder, "up")
        finally:
            tcp_down = cli(folder, "down")
    theirs = measure("pymodbus", servers(args.units, False)["pymodbus"], args.seconds, args.units)
    report = {"lines": args.lines, "units": args.units, "up_to_healthy_s": up, "down_s": down,
              "modbus_tcp_up_to_healthy_s": tcp_up, "modbus_tcp_down_s": tcp_down,
              "fleet_line_off": fleet, "pymodbus_line_off": theirs, "fleet_line_19200_timing": timed,
              "wire_limit_19200": limit}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    total = args.lines * args.units
    print(f"{args.lines} lines x {args.units} units ({total} units): up to all healthy {up:.1f} s, "
          f"down {down:.1f} s; as many Modbus/TCP devices: up {tcp_up:.1f} s, down {tcp_down:.1f} s")
    print(f"one line, {args.units} units round-robin, timing off: fleet {fleet['rate']:.0f} req/s "
          f"(cycle {fleet['cycle_ms']:.1f} ms, health poller on the same units); pymodbus serial server "
          f"{theirs['rate']:.0f} req/s (cycle {theirs['cycle_ms']:.1f} ms): "
          f"{fleet['rate'] / theirs['rate']:.2f}x")
    print(f"one line with timing = true at 19200 8N1: {timed['rate']:.1f} req/s = "
          f"{timed['rate'] / limit:.2f}x the wire limit of {limit:.1f} req/s "
          f"(cycle {timed['cycle_ms']:.0f} ms, wire {args.units / limit * 1e3:.0f} ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
