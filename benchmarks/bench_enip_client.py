"""EtherNet/IP client speed: ours against the upstream cpppo client and pycomm3, same server,
same tags, same run.

    python benchmarks/bench_enip_client.py [--ops 4000] [--upstream-ops 600] [--devices 1000]
                                           [--before DIR]

1. Tag reads per second against one server (ours, `python -m cpppo.server.enip`, if it is
   built; else upstream's), reading "SCADA[1]" and "FLOAT" alternately:
   synchronous (one request in flight) and pipelined (depth 10, Multiple Service Packets of
   up to 250 bytes).  The upstream client runs in its cached virtualenv (fewer operations:
   it is slow); pycomm3's "pipelined" equivalent is ``read(*tags)`` in batches of 50 (it
   packs them into Multiple Service Packets itself; it has no request pipelining).
   With ``--before DIR`` (a ``git archive`` of an older commit), the older tree's blocking
   client and this tree's run the same spec-path script (``cpppo.server.enip.client``) in
   turn, twice each, against the same server: the before/after rows.
2. The asyncio client (``aclient.AsyncClient``) polling ``--devices`` simulated devices
   (ours, all served from one process) once each -- connect, register, List Identity, read
   SCADA[0-9], close -- all concurrently: the wall time.

Bounded to about a minute by default.  The machine is shared: the numbers are noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support import free_port, python_module, running  # noqa: E402

HOST = "127.0.0.1"
TAGS = ["SCADA[1]", "FLOAT"]

UPSTREAM_SCRIPT = """
import json, sys, time
from cpppo.server.enip import client
host, port, ops = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
tags = ["SCADA[1]", "FLOAT"] * (ops // 2)
out = {}
with client.connector(host=host, port=port, timeout=10.0) as conn:
    for name, kwds in (("sync", dict(depth=1, multiple=0)), ("pipelined", dict(depth=10, multiple=250))):
        operations = list(client.parse_operations(tags))
        start, cpu = time.perf_counter(), time.process_time()
        results = conn.pipeline(operations=operations, timeout=10.0, **kwds)
        failed = sum(1 for *_, val in results if val is None)
        out[name] = len(operations) / (time.perf_counter() - start)
        out[name + "_cpu"] = (time.process_time() - cpu) / len(operations) * 1e6
        assert not failed
print(json.dumps(out))
"""

MANY_SERVER_SCRIPT = """
import asyncio, json, resource, sys
from cpppo.enip.device.model import Device
from cpppo.enip.server.transport import serve
count = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)
async def main():
    handles = []
    for n in range(count):
        ident = {"product_name": f"Device {n}", "serial_number": n}
        dev = Device.from_specs(["SCADA=INT[100]"], identity=ident)
        handles.append(await serve(dev, host="127.0.0.1", port=0, udp=False))
    print(json.dumps([h.port for h in handles]), flush=True)
    await asyncio.Event().wait()
try:
    import uvloop
    uvloop.run(main())
except ImportError:
    asyncio.run(main())
"""


def tree_client(tree: Path, port: int, ops: int) -> dict[str, float]:
    """The blocking client of the source tree ``tree`` (first on sys.path), through the spec's
    ``cpppo.server.enip.client`` path, which every version has: the UPSTREAM_SCRIPT loop."""
    script = f"import sys; sys.path.insert(0, {str(tree)!r})\n" + UPSTREAM_SCRIPT
    done = subprocess.run([sys.executable, "-I", "-c", script, HOST, str(port), str(ops)],
                          capture_output=True, text=True, timeout=300)
    if done.returncode:
        raise RuntimeError(f"the client of {tree} failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout)


def ours_client(port: int, ops: int) -> dict[str, float]:
    from cpppo.enip.client import connector as client
    out = {}
    with client.connector(host=HOST, port=port, timeout=10.0) as conn:
        for name, kwds in (("sync", {"depth": 1, "multiple": 0}),
                           ("pipelined", {"depth": 10, "multiple": 250})):
            operations = list(client.parse_operations(TAGS * (ops // 2)))
            start, cpu = time.perf_counter(), time.process_time()
            results = conn.pipeline(operations=operations, timeout=10.0, **kwds)
            failed = sum(1 for *_, val in results if val is None)
            out[name] = len(operations) / (time.perf_counter() - start)
            out[name + "_cpu"] = (time.process_time() - cpu) / len(operations) * 1e6
            assert not failed, f"{failed} reads failed"
    return out


def pycomm3_client(port: int, ops: int) -> dict[str, float] | None:
    try:
        from pycomm3 import LogixDriver
    except ImportError:
        return None
    out = {}
    try:
        with LogixDriver(f"{HOST}:{port}/0") as plc:
            start, cpu = time.perf_counter(), time.process_time()
            for n in range(ops):
                if plc.read(TAGS[n % 2]).error:
                    raise RuntimeError("pycomm3 read failed")
            out["sync"] = ops / (time.perf_counter() - start)
            out["sync_cpu"] = (time.process_time() - cpu) / ops * 1e6
            start, cpu = time.perf_counter(), time.process_time()
            for _ in range(ops // 50):
                plc.read(*(TAGS * 25))
            out["pipelined"] = (ops // 50 * 50) / (time.perf_counter() - start)
            out["pipelined_cpu"] = (time.process_time() - cpu) / (ops // 50 * 50) * 1e6
    except Exception as exc:
        print(f"pycomm3 failed against this server: {exc}")
        return None
    return out


def upstream_client(port: int, ops: int) -> dict[str, float] | None:
    try:
        from tests.upstream import upstream_python
        python = upstream_python()
    except Exception as exc:
        print(f"upstream cpppo virtualenv unavailable: {exc}")
        return None
    done = subprocess.run([str(python), "-I", "-c", UPSTREAM_SCRIPT, HOST, str(port), str(ops)],
                          capture_output=True, text=True, timeout=120)
    if done.returncode:
        print(f"upstream client failed: {done.stderr.strip().splitlines()[-1:]}")
        return None
    return json.loads(done.stdout)


def server_argv(port: int) -> tuple[list[str], str]:
    tags = ["SCADA=INT[1000]", "FLOAT=REAL"]
    try:
        import cpppo.enip.server.transport  # noqa: F401
        return python_module("cpppo.server.enip", "-a", f"{HOST}:{port}", *tags), "ours"
    except ImportError:
        from tests.upstream import upstream_python
        return python_module("cpppo.server.enip", "-a", f"{HOST}:{port}", *tags,
                             python=upstream_python()), "upstream cpppo"


def bench_one_server(args: argparse.Namespace) -> None:
    port = free_port()
    argv, which = server_argv(port)
    with running(argv, listen=(HOST, port)):
        ours_client(port, 200)  # warm up
        results = {"ours": ours_client(port, args.ops),
                   "upstream cpppo": upstream_client(port, args.upstream_ops),
                   "pycomm3": pycomm3_client(port, args.ops)}
        if args.before:
            for run in (1, 2):  # alternating, so that a change in the machine's load hits both
                results[f"before #{run}"] = tree_client(args.before, port, args.ops)
                results[f"after #{run}"] = tree_client(ROOT, port, args.ops)
    print(f"\n1. Tag reads per second against one server ({which}), {args.ops} ops "
          f"({args.upstream_ops} for upstream)")
    print("reads/s, and the client's CPU time per read (its whole process: the engine, the "
          "socket calls; not the server's)")
    print(f"{'client':<16} {'synchronous':>12} {'CPU us/read':>12} {'pipelined d10 m250':>20} "
          f"{'CPU us/read':>12}")
    for name, res in results.items():
        if res:
            print(f"{name:<16} {res['sync']:>12.0f} {res['sync_cpu']:>12.1f} {res['pipelined']:>20.0f} "
                  f"{res['pipelined_cpu']:>12.1f}")
        else:
            print(f"{name:<16} {'n/a':>12} {'':>12} {'n/a':>20}")
    mine = ["ours", *(name for name in results if name.startswith(("before", "after")))]
    for name in mine:
        ours = results[name]
        for peer in ("upstream cpppo", "pycomm3"):
            if results[peer]:
                peer_res = results[peer]
                print(f"ratio {name}/{peer}: synchronous {ours['sync'] / peer_res['sync']:.1f}x "
                      f"({peer_res['sync_cpu'] / ours['sync_cpu']:.1f}x less CPU per read), "
                      f"pipelined {ours['pipelined'] / peer_res['pipelined']:.1f}x "
                      f"({peer_res['pipelined_cpu'] / ours['pipelined_cpu']:.1f}x less CPU per read)")


async def poll_all(ports: list[int]) -> tuple[float, int]:
    from cpppo.enip.client.aclient import AsyncClient

    async def one(port: int) -> bool:
        async with AsyncClient(HOST, port, timeout=10.0) as c:
            await c.list_identity()
            return len(await c.read("SCADA[0-9]")) == 10

    start = time.perf_counter()
    ok = await asyncio.gather(*(one(p) for p in ports), return_exceptions=True)
    return time.perf_counter() - start, sum(1 for r in ok if r is True)


def bench_many_devices(args: argparse.Namespace) -> None:
    print(f"\n2. asyncio client polling {args.devices} devices once each (connect, register, "
          "List Identity, read SCADA[0-9], close), all concurrently")
    try:
        import cpppo.enip.server.transport  # noqa: F401
    except ImportError:
        print("skipped: our ENIP server (cpppo.enip.server.transport.serve) is not built yet")
        return
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    proc = subprocess.Popen([sys.executable, "-c", MANY_SERVER_SCRIPT, str(args.devices)],
                            stdout=subprocess.PIPE,
                            text=True, cwd=ROOT, start_new_session=True)
    try:
        ports = json.loads(proc.stdout.readline())
        for loop_name in ("asyncio", "uvloop"):
            if loop_name == "uvloop":
                try:
                    import uvloop
                except ImportError:
                    continue
                elapsed, ok = uvloop.run(poll_all(ports))
            else:
                elapsed, ok = asyncio.run(poll_all(ports))
            print(f"{loop_name:<8} {ok}/{len(ports)} devices polled in {elapsed:.2f}s wall "
                  f"({len(ports) / elapsed:.0f} devices/s)")
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ops", type=int, default=4000)
    ap.add_argument("--upstream-ops", type=int, default=600)
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--before", type=Path, metavar="DIR",
                    help="an older source tree (git archive): its blocking client beside this one's")
    args = ap.parse_args()
    bench_one_server(args)
    bench_many_devices(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
