"""Faults on a running fleet: how fast they take effect and clear, and what they cost the rest.

    python benchmarks/bench_faults.py              # N = 1000 (half ENIP, half Modbus)
    python benchmarks/bench_faults.py --n 200      # quicker

Measured on the process backend, with the real CLI (`cpppo-fleet fault ...` as a subprocess):

- fault -> effect: from starting `fault 'plc*' offline` until every ENIP device refuses
  connections (the CLI's own run time included; the CLI runs as an installed one does, with
  its bytecode cached: one warm-up run first);
- clear -> healthy: from starting `fault --clear` until every one of them is healthy in the
  fleet's health store (what `status` shows), and until every one answers this script's own
  fresh-connection sweep; measured once the poller's quick re-polls after `up` are over (a
  minute), as a fault long after `up` meets them;
- the poll latency (p50/p99 of 300 polls) of a healthy device on a worker shared with flapping
  devices, without and with `flap 1s` on 100 other devices (the "neighbour" ratio).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.fleet_scale import fleet_toml  # noqa: E402
from fleet.backends.process import ProcessBackend  # noqa: E402
from fleet.config import load  # noqa: E402
from fleet.health import SETTLE  # noqa: E402
from fleet.plan import expand  # noqa: E402
from fleet.poller import run_sweep  # noqa: E402

CLI = [sys.executable, "-c", "import sys; from fleet.cli import main; sys.exit(main())"]
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}  # as installed: .pyc cached


CPU = {}  # command -> CPU seconds its last run took (user + system)


def cli(*args: str, path: Path) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    begun = time.monotonic()
    subprocess.run([*CLI, *args, str(path)], check=True, capture_output=True, timeout=120, env=ENV)
    took = time.monotonic() - begun
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU[args[0] if args[1:2] != ("--clear",) else "clear"] = (after.ru_utime - before.ru_utime
                                                             + after.ru_stime - before.ru_stime)
    return took


def healthy_since(database: Path, devices, since: float) -> int:
    """How many of ``devices`` the fleet's health store has healthy in a result since ``since``."""
    from fleet.store import Store, StoreError

    try:
        with Store(database) as store:
            history = store.history(latencies=False)
    except StoreError:
        return 0
    lasts = [h.last for d in devices if (h := history.get(d.name))]
    return sum(1 for last in lasts if last and last.ok and last.time >= since)


def refusing(devices) -> int:
    count = 0
    for d in devices:
        try:
            socket.create_connection((d.host, d.port), timeout=0.5).close()
        except OSError:
            count += 1
    return count


async def latencies(device, count: int) -> list[float]:
    from cpppo.modbus.aclient import AsyncModbusClient

    out = []
    async with AsyncModbusClient(device.host, device.port, unit=1, timeout=2.0) as client:
        for _ in range(count):
            begun = time.perf_counter()
            await client.read_holding_registers(0, 1)
            out.append(time.perf_counter() - begun)
            await asyncio.sleep(0.01)
    return out


def pct(values: list[float], q: float) -> float:
    return sorted(values)[max(0, int(q * len(values)) - 1)] * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--per-worker", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fleet.toml"
        path.write_text(fleet_toml(args.n, args.per_worker, 81))
        plan = expand(load(path))
        backend = ProcessBackend(plan, Path(tmp) / ".fleet" / plan.fleet.name)
        try:
            begun = time.monotonic()
            subprocess.run([*CLI, "up", str(path)], check=True, capture_output=True, timeout=600)
            print(f"up: {len(plan.devices)} devices healthy in {time.monotonic() - begun:.1f} s")
            enip = [d for d in plan.devices if d.kind == "enip"]
            modbus = [d for d in plan.devices if d.kind == "modbus"]

            cli("faults", path=path)  # warm-up: bytecode cached, as an installed CLI has it
            time.sleep(SETTLE + 2 * plan.fleet.health_interval)  # past the poller's quick re-polls after up
            begun = time.monotonic()
            took = cli("fault", "plc*", "offline", path=path)
            deadline = time.monotonic() + 30
            while refusing(enip) < len(enip) and time.monotonic() < deadline:
                time.sleep(0.02)
            print(f"fault -> effect ({len(enip)} ENIP devices offline): {time.monotonic() - begun:.2f} s "
                  f"(the CLI itself {took:.2f} s, {CPU['fault']:.2f} s CPU)")
            time.sleep(2 * plan.fleet.health_timeout)  # the poller has seen them refuse
            begun, asked = time.monotonic(), time.time()
            took = cli("fault", "--clear", path=path)
            deadline = time.monotonic() + 30
            database = backend.state.database
            listening = store = None
            while (listening is None or store is None) and time.monotonic() < deadline:
                if listening is None and not refusing(enip):
                    listening = time.monotonic() - begun
                if store is None and healthy_since(database, enip, asked) == len(enip):
                    store = time.monotonic() - begun
                time.sleep(0.02)
            print(f"clear -> listening ({len(enip)} ENIP devices accept connections): "
                  f"{listening or -1:.2f} s (the CLI itself {took:.2f} s, {CPU['clear']:.2f} s CPU)")
            print(f"clear -> healthy in the fleet's store (status): {store or -1:.2f} s")
            pending = enip
            deadline = time.monotonic() + 60
            while pending and time.monotonic() < deadline:
                results = run_sweep(pending, 2.0, 200)
                ok = {r.device for r in results if r.ok}
                pending = [d for d in pending if d.name not in ok]
            print(f"clear -> healthy in this script's fresh-connection sweeps ({len(enip)} devices): "
                  f"{time.monotonic() - begun:.2f} s, {len(pending)} still down")

            # the probe mb00200 shares its worker with mb00101..mb00199, 99 of the 100 flapping
            probe = next(d for d in modbus if d.name == "mb00200")
            still = asyncio.run(latencies(probe, 300))
            cli("fault", "mb001??", "flap", "1s", path=path)
            flapping = asyncio.run(latencies(probe, 300))
            cli("fault", "--clear", path=path)
            print(f"neighbour poll latency, ms: still p50 {pct(still, .5):.2f} p99 {pct(still, .99):.2f}; "
                  f"with flapping devices p50 {pct(flapping, .5):.2f} p99 {pct(flapping, .99):.2f} "
                  f"(p50 ratio {statistics.median(flapping) / statistics.median(still):.2f})")
        finally:
            backend.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
