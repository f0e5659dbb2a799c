"""Modbus/TCP server speed and footprint, ours against pymodbus 3.x, in the same run.

    python benchmarks/bench_modbus.py [--seconds 4] [--rounds 3] [--clients 20] [--devices 1000]

1. Requests per second served with ``--clients`` concurrent connections each reading 10
   holding registers, one request in flight per connection (pymodbus drops pipelined
   requests).  Each server runs alone in its own process (ours: the `modbus_sim` command, on
   uvloop; pymodbus: ``StartAsyncTcpServer``) and one load generator, a stdlib-asyncio client
   writing raw MBAP frames, runs in another process against each in turn.  The servers
   alternate for ``--rounds`` rounds and the best round of each is compared, as the load of
   other work on the machine comes and goes; the server CPU time per request (from /proc) is
   the figure least disturbed by that load.
2. ``--devices`` simulated devices in one process, each on its own (ip, port): the time to
   start them all, the RSS they add per device, and one concurrent poll of every device.

Bounded to about a minute by default.  The machine may be shared: numbers are noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cpppo.server.hosting import new_event_loop  # noqa: E402
from tests.support import free_port, running  # noqa: E402
from tests.test_modbus_support import pymodbus_server_argv  # noqa: E402

HOST = "127.0.0.1"


# The load generator (run as a subprocess: --loadgen).

class _LoadClient(asyncio.Protocol):
    """Keeps ``depth`` read requests in flight; counts whole replies.  Kept lean so that the
    load generator costs less CPU than the servers it measures."""

    REQUEST = struct.pack(">HHHBBHH", 1, 0, 6, 1, 3, 0, 10)     # read 10 holding registers
    REPLY_SIZE = 9 + 20

    def __init__(self, depth: int, done: asyncio.Future) -> None:
        self.depth, self.done = depth, done
        self.buffer = b""
        self.replies = 0
        self.stopped = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.write = transport.write
        self.write(self.REQUEST * self.depth)

    def data_received(self, data: bytes) -> None:
        if self.buffer:
            data = self.buffer + data
        whole, rest = divmod(len(data), self.REPLY_SIZE)
        if data[7] != 3:
            self.done.set_exception(RuntimeError(f"bad reply {data.hex()}"))
        self.buffer = data[len(data) - rest:] if rest else b""
        if whole:
            self.replies += whole
            if not self.stopped:
                self.write(self.REQUEST * whole)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done() and not self.stopped:
            self.done.set_exception(RuntimeError(f"connection lost: {exc}"))


async def _loadgen(port: int, seconds: float, clients: int, depth: int, warmup: float) -> dict:
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    protocols = []
    for _ in range(clients):
        _, protocol = await loop.create_connection(lambda: _LoadClient(depth, done), HOST, port)
        protocols.append(protocol)
    await asyncio.sleep(warmup)
    start_count, start = sum(p.replies for p in protocols), time.perf_counter()
    try:
        await asyncio.wait_for(asyncio.shield(done), seconds)
    except TimeoutError:
        pass
    count, elapsed = sum(p.replies for p in protocols) - start_count, time.perf_counter() - start
    for p in protocols:
        p.stopped = True
        p.transport.close()
    return {"requests": count, "seconds": elapsed, "warmup_requests": start_count,
            "cpu": time.process_time()}


def _pin(cpu: int | None) -> Callable[[], None] | None:
    """A preexec function pinning a child to ``cpu`` (None: no pinning)."""
    return None if cpu is None else (lambda: os.sched_setaffinity(0, {cpu}))


def run_loadgen(port: int, seconds: float, clients: int, depth: int, cpu: int | None = None) -> dict:
    argv = [sys.executable, __file__, "--loadgen", str(port), "--seconds", str(seconds),
            "--clients", str(clients), "--depth", str(depth)]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=True,
                         preexec_fn=_pin(cpu))
    return json.loads(out.stdout)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by process ``pid``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def throughput(name: str, argv: list[str], port: int, args: argparse.Namespace) -> tuple[float, float]:
    """(requests/s, server CPU microseconds per request) of the server run by ``argv``."""
    with running(argv, listen=(HOST, port)) as proc:
        if args.pin:  # the server on CPU 0, the load generator on CPU 1: one core each
            os.sched_setaffinity(proc.pid, {0})
        cpu = _cpu_seconds(proc.pid)
        result = run_loadgen(port, args.seconds, args.clients, args.depth, 1 if args.pin else None)
        cpu = _cpu_seconds(proc.pid) - cpu
    rate = result["requests"] / result["seconds"]
    cost = cpu / max(result["requests"] + result["warmup_requests"], 1) * 1e6
    load_cost = result["cpu"] / max(result["requests"] + result["warmup_requests"], 1) * 1e6
    print(f"  {name:<28} {rate:>10,.0f} req/s {cost:>9.1f} us {load_cost:>12.1f} us   "
          f"({result['requests']:,} in {result['seconds']:.1f}s)", flush=True)
    return rate, cost


# Many devices in one process (run as a subprocess: --fleet).

def _rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def _fleet(count: int) -> dict:
    from cpppo.modbus.aclient import AsyncModbusClient
    from cpppo.modbus.device import ModbusDevice
    from cpppo.modbus.server import serve

    specs = ["40001-40100=0", "1-16=0", "30001-30010=0"]
    base_rss = _rss_kb()
    start = time.perf_counter()
    servers = []
    for i in range(count):
        device = ModbusDevice.from_specs([*specs, f"40001={i % 65536}"], unit_ids=(1,))
        host = f"127.1.{i // 250}.{1 + i % 250}"          # every device on its own ip
        servers.append(await serve(device, host, 5020))
    started = time.perf_counter() - start
    rss = _rss_kb() - base_rss

    async def poll(server) -> int:
        async with AsyncModbusClient(server.host, server.port, timeout=10) as client:
            return (await client.read_holding_registers(0, 1))[0]
    start = time.perf_counter()
    values = []
    for i in range(0, count, 250):                         # 250 connections at a time
        values += await asyncio.gather(*(poll(s) for s in servers[i:i + 250]))
    polled = time.perf_counter() - start
    assert values == [i % 65536 for i in range(count)], "a device answered the wrong value"
    for server in servers:
        server.close()
    return {"devices": count, "startup": started, "rss_kb": rss, "poll_all": polled}


def fleet(count: int) -> dict:
    argv = [sys.executable, __file__, "--fleet", str(count)]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    if out.returncode:
        raise RuntimeError(out.stderr.strip().splitlines()[-1] if out.stderr else "fleet failed")
    return json.loads(out.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="measured seconds per run")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each server, alternating")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--depth", type=int, default=1, help="requests in flight per connection")
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--no-pin", dest="pin", action="store_false",
                        default=len(os.sched_getaffinity(0)) >= 2,
                        help="don't pin the server to CPU 0 and the load generator to CPU 1")
    parser.add_argument("--loadgen", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--fleet", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.loadgen:
        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            print(json.dumps(runner.run(_loadgen(args.loadgen, args.seconds, args.clients, args.depth, 1.0))))
        return 0
    if args.fleet:
        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            print(json.dumps(runner.run(_fleet(args.fleet))))
        return 0

    print(f"Modbus/TCP read 10 holding registers, {args.clients} clients x {args.depth} in flight, "
          f"{args.seconds:g}s each (cpus: {os.cpu_count()}; "
          f"{'server on CPU 0, load on CPU 1' if args.pin else 'not pinned'})")
    print(f"  {'server':<28} {'rate':>16} {'server CPU/req':>14} {'loadgen CPU/req':>15}")
    ours: list[tuple[float, float]] = []
    theirs: list[tuple[float, float]] = []
    for _ in range(args.rounds):                # alternate, so both see the same background load
        port = free_port()
        ours.append(throughput("cpppo modbus_sim (uvloop)",
                               [sys.executable, "-m", "cpppo.bin.modbus_sim", "-a", f"{HOST}:{port}",
                                "40001-40100=99"], port, args))
        port = free_port()
        theirs.append(throughput(f"pymodbus {_pymodbus_version()} server",
                                 pymodbus_server_argv(port), port, args))
    our_rate, their_rate = max(r for r, _ in ours), max(r for r, _ in theirs)
    print(f"  best of {args.rounds}: cpppo {our_rate:,.0f} req/s, pymodbus {their_rate:,.0f} req/s")
    print(f"  ratio cpppo / pymodbus: {our_rate / their_rate:.1f}x requests/s (best rounds), "
          f"{min(c for _, c in theirs) / min(c for _, c in ours):.1f}x less server CPU per request")
    print()
    result = fleet(args.devices)
    print(f"{result['devices']} Modbus devices in one process, each on its own ip:5020")
    print(f"  startup               {result['startup']:.2f} s")
    print(f"  RSS per device        {result['rss_kb'] / result['devices']:.1f} KB "
          f"({result['rss_kb'] / 1024:.1f} MB for all)")
    print(f"  poll every device     {result['poll_all']:.2f} s (AsyncModbusClient, 250 at a time)")
    return 0


def _pymodbus_version() -> str:
    import pymodbus
    return pymodbus.__version__


if __name__ == "__main__":
    raise SystemExit(main())
