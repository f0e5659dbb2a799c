"""What moving values cost: a still plant against a moving one, in the same run.

    python benchmarks/bench_behaviour.py [--devices 1000] [--tags 20] [--idle 10]
                                         [--seconds 4] [--rounds 2] [--skip-idle] [--skip-rates]
                                         [--skip-fleet] [--samples 3]

0. Idle CPU of a fleet: ``cpppo-fleet up`` of two ``--devices`` fleets on the process backend
   (half ENIP, half Modbus, 100 devices a worker, the health poller sweeping every 5 s), one
   still and one with ``--tags`` moving tags (registers) per device, both up at once; the CPU
   of every process of each fleet (supervisord, workers, health poller) is sampled over the
   same ``--idle`` seconds (so both see the same machine load), ``--samples`` times, with the
   health pollers sweeping and again with them stopped (the workers and supervisord alone);
   reported: the medians of each and of the difference.
1. Idle CPU: one process (as one fleet worker) serves ``--devices`` ENIP devices with
   ``--tags`` tags each, and another as many Modbus devices with as many register ranges,
   every one on its own loopback address; still (plain values) and moving (sine, ramp,
   counter, walk, lag, expression, noise: every tag) in turn.  Nobody polls them; reported:
   the process's CPU (utime+stime from /proc) over ``--idle`` seconds, in cores.
2. Request rates: the ENIP server (``bench_enip_server``'s load generator: pipelined Read Tag
   ``SCADA[0-9]``) and the Modbus simulator (``bench_modbus``'s load generator: 20 clients
   reading 10 holding registers), with every read value moving and still; the peer is
   pymodbus's simulator (``ModbusSimulatorContext``) with its ``increment`` and ``random``
   actions on the same 100 registers, under the same load generator.  Servers alternate for
   ``--rounds`` rounds; the best round of each is kept.

The machine may be shared: compare the ratios, not the absolute numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import bench_enip_server, bench_modbus  # noqa: E402
from tests.support import free_port, python_module  # noqa: E402

HOST = "127.0.0.1"
MOVING_ENIP = ["sine(amplitude=10, period=60, offset=50, phase=n / 100)", "ramp(amplitude=100, period=30)",
               "counter(rate=5)", "walk(step=0.5, low=0, high=100, seed=n)", "lag(T0, tau=5)",
               "expr(T1 * 2 + noise(0.5))", "square(amplitude=1, period=10, noise=0.1)"]
MOVING_MODBUS = ["sine(amplitude=10, period=60, offset=50, phase=n / 100)", "ramp(amplitude=100, period=30)",
                 "counter(rate=5)", "walk(step=0.5, low=0, high=100, seed=n)", "lag(r30001, tau=5)",
                 "expr(r30002 * 2 + noise(0.5))", "square(amplitude=1, period=10, noise=0.1)"]
PYMODBUS_SIMULATOR = """
import asyncio, logging, sys, warnings
warnings.simplefilter("ignore")
logging.disable(logging.CRITICAL)
from pymodbus.server import StartAsyncTcpServer
from pymodbus.datastore import ModbusServerContext, ModbusSimulatorContext
config = {"setup": {"co size": 0, "di size": 0, "hr size": 100, "ir size": 0, "shared blocks": True,
                    "type exception": False,
                    "defaults": {"value": {"bits": 0, "uint16": 0, "uint32": 0, "float32": 0.0,
                                           "string": " "},
                                 "action": {"bits": None, "uint16": None, "uint32": None, "float32": None,
                                            "string": None}}},
          "invalid": [], "write": [[0, 99]], "bits": [], "uint32": [], "float32": [], "string": [],
          "uint16": [{"addr": [0, 99], "value": 0, "action": sys.argv[3],
                      "parameters": {"minval": 0, "maxval": 1000}}], "repeat": []}
context = ModbusServerContext(devices=ModbusSimulatorContext(config, None), single=True)
asyncio.run(StartAsyncTcpServer(context, address=(sys.argv[1], int(sys.argv[2]))))
"""


# 1. Idle CPU (each plant run as its own process: --plant).

def enip_tags(count: int, moving: bool) -> list[str]:
    return [f"T{k}=REAL" + (f"~{MOVING_ENIP[k % len(MOVING_ENIP)]}" if moving else "") for k in range(count)]


def modbus_ranges(count: int, moving: bool) -> list[str]:
    return [f"{30001 + k}" + (f"~{MOVING_MODBUS[k % len(MOVING_MODBUS)]}" if moving else "=0")
            for k in range(count)]


async def _plant(kind: str, devices: int, tags: int, moving: bool, seconds: float) -> dict:
    from cpppo.enip.device.model import Device
    from cpppo.enip.server.transport import serve as serve_enip
    from cpppo.modbus.device import ModbusDevice
    from cpppo.modbus.server import serve as serve_modbus

    servers = []
    for i in range(devices):
        host = f"127.2.{i // 250}.{1 + i % 250}"
        if kind == "enip":
            device = Device.from_specs(enip_tags(tags, moving), n=i)
            servers.append(await serve_enip(device, host, 44818, udp=True))
        else:
            device = ModbusDevice.from_specs(modbus_ranges(tags, moving), n=i)
            servers.append(await serve_modbus(device, host, 5020))
    await asyncio.sleep(1.0)  # settle after start-up
    start_cpu, start = time.process_time(), time.perf_counter()
    await asyncio.sleep(seconds)
    cores = (time.process_time() - start_cpu) / (time.perf_counter() - start)
    for server in servers:
        server.close()
    return {"kind": kind, "moving": moving, "devices": devices, "tags": tags, "cores": cores}


def plant(kind: str, devices: int, tags: int, moving: bool, seconds: float) -> dict:
    argv = [sys.executable, __file__, "--plant", kind, "--devices", str(devices), "--tags", str(tags),
            "--idle", str(seconds)] + (["--moving"] if moving else [])
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 300)
    if out.returncode:
        raise RuntimeError((out.stderr.strip().splitlines() or ["plant failed"])[-1])
    return json.loads(out.stdout)


# 0. Idle CPU of a whole fleet, still beside moving.

def fleet_text(name: str, octet: int, devices: int, tags: int, moving: bool) -> str:
    enip, modbus = devices - devices // 2, devices // 2
    tag_list = ", ".join(json.dumps(t) for t in enip_tags(tags, moving))
    ranges = ", ".join(json.dumps(r) for r in ["40001-40010=0", *modbus_ranges(tags, moving)])
    return f"""
[fleet]
name = "{name}"
address_pool = "127.{octet}.0.0/16"
health_interval = 5.0
health_timeout = 2.0
devices_per_worker = 100

[[device]]
kind = "enip"
count = {enip}
name = "plc{{n:04}}"
tags = [{tag_list}]

[[device]]
kind = "modbus"
count = {modbus}
name = "mb{{n:04}}"
port = 1502
registers = [{ranges}]
"""


def moves(plan) -> None:
    """RuntimeError unless the moving fleet's values move: a Modbus device's counter, read
    twice by pymodbus."""
    from pymodbus.client import ModbusTcpClient

    device = next(d for d in plan.devices if d.kind == "modbus")
    client = ModbusTcpClient(device.host, port=device.port, timeout=5, retries=1)
    try:
        if not client.connect():
            raise RuntimeError(f"{device.name} does not answer")
        first = client.read_input_registers(2, count=1, device_id=1).registers[0]  # 30003: counter(rate=5)
        time.sleep(1.0)
        if client.read_input_registers(2, count=1, device_id=1).registers[0] == first:
            raise RuntimeError(f"{device.name}'s 30003 does not move")
    finally:
        client.close()


def sample(backends: dict, idle: float, samples: int, what: str) -> dict[str, list[float]]:
    """CPU (cores) of the still and the moving fleet over the same ``idle`` seconds, ``samples``
    times; ``median``: the medians of still, moving and the difference."""
    import statistics

    from benchmarks.fleet_scale import cpu_seconds, fleet_pids

    print(f"  {what}:", flush=True)
    cores: dict[str, list[float]] = {"still": [], "moving": [], "difference": []}
    for _ in range(samples):  # both fleets over the same seconds: the same machine load
        pids = {moving: fleet_pids(backend) for moving, backend in backends.items()}
        before, begun = {m: cpu_seconds(p) for m, p in pids.items()}, time.monotonic()
        time.sleep(idle)
        elapsed = time.monotonic() - begun
        used = {m: (cpu_seconds(p) - before[m]) / elapsed for m, p in pids.items()}
        cores["still"].append(used[False])
        cores["moving"].append(used[True])
        cores["difference"].append(used[True] - used[False])
        print(f"    still {used[False]:.4f} cores ({len(pids[False])} processes), moving "
              f"{used[True]:.4f} cores ({len(pids[True])}), load average {os.getloadavg()[0]:.1f}",
              flush=True)
    cores["median"] = [statistics.median(cores[k]) for k in ("still", "moving", "difference")]
    still, moving, difference = cores["median"]
    print(f"    median: still {still:.4f} cores   moving {moving:.4f} cores   "
          f"difference {difference:+.4f} cores (goal: within 0.01)", flush=True)
    return cores


def fleet_idle(devices: int, tags: int, idle: float, samples: int) -> dict[str, dict[str, list[float]]]:
    import tempfile

    from fleet.backends.base import health_programs
    from fleet.backends.process import ProcessBackend
    from fleet.config import load
    from fleet.plan import expand

    cli = [sys.executable, "-c", "from fleet.cli import main; main()"]
    with tempfile.TemporaryDirectory(prefix="bench-behaviour-") as tmp:
        fleets = {}
        for moving, octet in ((False, 81), (True, 82)):
            folder = Path(tmp) / ("moving" if moving else "still")
            folder.mkdir()
            path = folder / "fleet.toml"
            path.write_text(fleet_text(f"plant-{folder.name}", octet, devices, tags, moving))
            fleets[moving] = (path, folder / "state")
        try:
            for moving, (path, state) in fleets.items():
                begun = time.monotonic()
                proc = subprocess.run([*cli, "up", str(path), "--state-dir", str(state), "--timeout", "600"],
                                      capture_output=True, text=True, timeout=900)
                if proc.returncode:
                    raise RuntimeError((proc.stdout + proc.stderr).strip().splitlines()[-1])
                print(f"  {'moving' if moving else 'still'} fleet of {devices} up and healthy in "
                      f"{time.monotonic() - begun:.1f} s", flush=True)
            backends = {moving: ProcessBackend(expand(load(path)), state)
                        for moving, (path, state) in fleets.items()}
            moves(backends[True].plan)
            time.sleep(5)  # settle after start-up
            results = {"polling": sample(backends, idle, samples, "health poller sweeping every 5 s")}
            for backend in backends.values():  # the workers and supervisord alone
                rpc = backend._rpc()
                for name in health_programs(8):
                    if name in backend.status():
                        rpc.stopProcess(name, True)
            results["polling off"] = sample(backends, idle, samples, "health poller stopped")
            return results
        finally:
            for path, state in fleets.values():
                subprocess.run([*cli, "down", str(path), "--state-dir", str(state)], capture_output=True,
                               timeout=600)


# 2. Request rates.

def enip_rate(moving: bool, args: argparse.Namespace) -> tuple[float, float]:
    port = free_port()
    spec = "SCADA=INT[1000]" + ("~sine(amplitude=1000, period=60, phase=i / 1000, noise=5)" if moving else "")
    argv = python_module("cpppo.server.enip", "-a", f"{HOST}:{port}", spec)
    ns = argparse.Namespace(connections=8, depth=8, seconds=args.seconds)
    result = bench_enip_server.measure(argv, port, ns)
    if result["errors"]:
        raise RuntimeError(f"{result['errors']} error replies")
    return result["rate"], result["cpu_ms_per_request"] * 1000


def modbus_rate(name: str, argv_of: object, args: argparse.Namespace) -> tuple[float, float]:
    port = free_port()
    ns = argparse.Namespace(pin=args.pin, seconds=args.seconds, clients=20, depth=1)
    return bench_modbus.throughput(name, argv_of(port), port, ns)  # type: ignore[operator]


def modbus_servers() -> dict[str, object]:
    def ours(moving: bool):
        spec = "40001-40100" + ("~sine(amplitude=100, period=60, offset=1000, phase=i / 100, noise=2)"
                                if moving else "=99")
        return lambda port: python_module("cpppo.bin.modbus_sim", "-a", f"{HOST}:{port}", spec)

    def peer(action: str):
        return lambda port: [sys.executable, "-c", PYMODBUS_SIMULATOR, HOST, str(port), action]

    return {"ours, still": ours(False), "ours, moving": ours(True),
            "pymodbus simulator, increment": peer("increment"), "pymodbus simulator, random": peer("random")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--tags", type=int, default=20, help="moving tags (registers) per device")
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of idle CPU measured per plant")
    parser.add_argument("--seconds", type=float, default=4.0, help="seconds per request-rate run")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--samples", type=int, default=3, help="idle samples of each fleet (still, moving)")
    parser.add_argument("--skip-fleet", action="store_true")
    parser.add_argument("--skip-idle", action="store_true")
    parser.add_argument("--skip-rates", action="store_true")
    parser.add_argument("--no-pin", dest="pin", action="store_false",
                        default=len(os.sched_getaffinity(0)) >= 2,
                        help="don't pin the Modbus server to CPU 0 and its load generator to CPU 1")
    parser.add_argument("--plant", choices=("enip", "modbus"), help=argparse.SUPPRESS)
    parser.add_argument("--moving", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plant:
        from cpppo.server.hosting import new_event_loop
        from fleet.limits import raise_fd_limit

        raise_fd_limit()
        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            print(json.dumps(runner.run(_plant(args.plant, args.devices, args.tags, args.moving, args.idle))))
        return 0
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (shared: numbers are noisy)")
    if not args.skip_fleet:
        print(f"\n0. idle CPU of a fleet of {args.devices} devices (half ENIP, half Modbus) x {args.tags} "
              f"tags, still beside moving, {args.samples} x {args.idle:g} s each")
        fleet_idle(args.devices, args.tags, args.idle, args.samples)
    if not args.skip_idle:
        print(f"\n1. idle CPU, {args.devices} devices x {args.tags} tags in one process, "
              f"{args.idle:g} s each")
        for kind in ("enip", "modbus"):
            results = {moving: plant(kind, args.devices, args.tags, moving, args.idle)
                       for moving in (False, True)}
            still, moving = results[False]["cores"], results[True]["cores"]
            print(f"  {kind:<7} still {still:.5f} cores   moving {moving:.5f} cores   "
                  f"difference {moving - still:+.5f} cores (goal: within 0.01)", flush=True)
    if not args.skip_rates:
        print(f"\n2. request rates, best of {args.rounds} rounds of {args.seconds:g} s")
        rates: dict[str, float] = {}
        costs: dict[str, float] = {}

        def keep(name: str, rate: float, cost: float) -> None:
            rates[name] = max(rates.get(name, 0.0), rate)
            costs[name] = min(costs.get(name, float("inf")), cost)

        for _ in range(args.rounds):
            for moving in (False, True):
                name = f"ENIP ours, {'moving' if moving else 'still'}"
                rate, cost = enip_rate(moving, args)
                print(f"  {name:<28} {rate:>10,.0f} req/s {cost:>9.1f} us", flush=True)
                keep(name, rate, cost)
            for name, argv_of in modbus_servers().items():
                name = f"Modbus {name}"
                keep(name, *modbus_rate(name, argv_of, args))
        print("\n  best rate, least server CPU per request:")
        for name, rate in rates.items():
            print(f"  {name:<36} {rate:>10,.0f} req/s {costs[name]:>9.1f} us")
        for proto in ("ENIP", "Modbus"):
            moving, still = f"{proto} ours, moving", f"{proto} ours, still"
            print(f"  {proto} moving / still: rate {rates[moving] / rates[still]:.3f}, "
                  f"CPU per request {costs[moving] / costs[still]:.3f}")
        for action in ("increment", "random"):
            peer, ours = f"Modbus pymodbus simulator, {action}", "Modbus ours, moving"
            print(f"  Modbus ours moving / pymodbus {action}: rate {rates[ours] / rates[peer]:.2f}x, "
                  f"CPU per request {costs[peer] / costs[ours]:.2f}x less")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
