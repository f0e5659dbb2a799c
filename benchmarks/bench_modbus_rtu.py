"""Modbus/RTU server speed over a pseudo-terminal pair, ours against pymodbus 3.x's serial
server, in the same run.

    python benchmarks/bench_modbus_rtu.py [--seconds 3] [--rounds 2] [--units 32]

1. Requests per second: one master (a lean stdlib loop on one end of a socat pty pair) reads
   10 holding registers of unit 1, one request at a time as on a real line, from each server
   on the other end (ours: `modbus_sim --serial`; pymodbus: ``StartAsyncSerialServer``), with
   baud timing off (a pty moves bytes at memory speed) and on at 19200 baud (ours keeps the
   wire's timing with ``--timing``: each reply leaves after the request and the reply would
   take on the wire plus t3.5; pymodbus has no such mode and is configured at 19200 only).
   The servers alternate for ``--rounds`` rounds; the best round of each is kept, and the
   server's CPU time per request (from /proc) is the figure least disturbed by other load.
2. A ``--units``-unit multidrop line polled round-robin, one read of each unit per cycle: the
   cycle time, both servers, timing off and (ours) on.

Bounded to about a minute by default.  The machine may be shared: numbers are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_modbus import _cpu_seconds  # noqa: E402

from cpppo.modbus import rtu  # noqa: E402
from cpppo.modbus.serial_line import LineSettings, open_serial  # noqa: E402
from tests.support import python_module  # noqa: E402
from tests.test_modbus_rtu_support import pty_pair, pymodbus_serial_server_argv, started  # noqa: E402

READ = bytes.fromhex("03 0000 000a")         # 10 holding registers
REPLY = 5 + 20


class Master:
    """One request in flight on the line: write a frame, read its whole reply."""

    def __init__(self, path: str) -> None:
        self.port = open_serial(path, LineSettings(19200, "N", 1))
        self.fd = self.port.fileno()
        self.frames = {unit: rtu.encode(unit, READ) for unit in range(1, 248)}

    def transact(self, unit: int, timeout: float = 1.0) -> bool:
        os.write(self.fd, self.frames[unit])
        got = 0
        deadline = time.monotonic() + timeout
        while got < REPLY:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                return False
            try:
                got += len(os.read(self.fd, 512))
            except BlockingIOError:
                continue
        return True

    def ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.transact(1, 0.2):
            if time.monotonic() > deadline:
                raise RuntimeError("the server never answered")

    def close(self) -> None:
        self.port.close()


def rate(master: Master, seconds: float, units: int = 1) -> int:
    """Requests answered in ``seconds``, polling units 1..units round-robin."""
    done = 0
    end = time.monotonic() + seconds
    unit = 1
    while time.monotonic() < end:
        done += master.transact(unit)
        unit = unit % units + 1
    return done


def servers(units: int, timing: bool) -> dict[str, callable]:
    ours = ["--parity", "N", "-u", f"1-{units}", "40001-40100=99"] + (["--timing"] if timing else [])
    return {
        "ours": lambda port: (python_module("cpppo.bin.modbus_sim", "--serial", port, *ours),
                              r"^Success; Started Modbus/RTU"),
        "pymodbus": lambda port: (pymodbus_serial_server_argv(port, units=range(1, units + 1)), r"^serving"),
    }


def measure(name: str, argv_expect: tuple[list[str], str], seconds: float, units: int) -> dict:
    with pty_pair() as (server_end, master_end):
        argv, expect = argv_expect(server_end) if callable(argv_expect) else argv_expect
        with started(argv, expect) as (proc, _):
            master = Master(master_end)
            try:
                master.ready()
                cpu0 = _cpu_seconds(proc.pid)
                began = time.monotonic()
                done = rate(master, seconds, units)
                took = time.monotonic() - began
                cpu = _cpu_seconds(proc.pid) - cpu0
            finally:
                master.close()
    return {"server": name, "requests": done, "rate": done / took,
            "cpu_us": cpu / max(done, 1) * 1e6, "cycle_ms": took / max(done, 1) * units * 1e3}


def best(args: argparse.Namespace, units: int, timing: bool, who: tuple[str, ...]) -> dict[str, dict]:
    table = servers(units, timing)
    results: dict[str, dict] = {}
    for _ in range(args.rounds):
        for name in who:
            r = measure(name, table[name], args.seconds, units)
            if name not in results or r["rate"] > results[name]["rate"]:
                results[name] = r
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--units", type=int, default=32)
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    wire = LineSettings(19200, "N", 1)                   # what the pty line is set to
    limit = 1 / ((8 + REPLY) * wire.char_time + wire.silences[1])
    report = {
        "off": best(args, 1, False, ("ours", "pymodbus")),
        "on": best(args, 1, True, ("ours", "pymodbus")),
        "multidrop_off": best(args, args.units, False, ("ours", "pymodbus")),
        "multidrop_on": best(args, args.units, True, ("ours",)),
        "wire_limit_19200": limit,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    ours, theirs = report["off"]["ours"], report["off"]["pymodbus"]
    print(f"timing off: ours {ours['rate']:.0f} req/s ({ours['cpu_us']:.0f} µs CPU/req), pymodbus "
          f"{theirs['rate']:.0f} req/s ({theirs['cpu_us']:.0f} µs CPU/req): "
          f"{ours['rate'] / theirs['rate']:.2f}x rate, {theirs['cpu_us'] / ours['cpu_us']:.2f}x less CPU")
    ours, theirs = report["on"]["ours"], report["on"]["pymodbus"]
    print(f"19200 baud timing on: ours {ours['rate']:.1f} req/s = {ours['rate'] / limit:.2f}x the 19200 8N1 "
          f"wire limit of {limit:.1f} req/s; pymodbus at baudrate=19200 (it keeps no line timing on a "
          f"pty) {theirs['rate']:.0f} req/s")
    off, on = report["multidrop_off"], report["multidrop_on"]
    print(f"{args.units}-unit line, round-robin cycle: timing off ours {off['ours']['cycle_ms']:.1f} ms, "
          f"pymodbus {off['pymodbus']['cycle_ms']:.1f} ms "
          f"({off['pymodbus']['cycle_ms'] / off['ours']['cycle_ms']:.2f}x); timing on ours "
          f"{on['ours']['cycle_ms']:.0f} ms (wire limit {args.units / limit * 1e3:.0f} ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
