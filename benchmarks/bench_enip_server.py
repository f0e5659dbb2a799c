"""EtherNet/IP server speed and memory, ours beside upstream cpppo in the same run.

    python benchmarks/bench_enip_server.py [--seconds 10] [--connections 8] [--depth 8]
                                           [--devices 1000] [--skip-upstream] [--before DIR]

1. Throughput: each server (ours, then upstream cpppo 5.2.5 from the cached virtualenv) is
   started as its own process serving ``SCADA=INT[1000]``; one load generator (a separate
   process, the same for both) keeps ``--connections`` registered sessions each with
   ``--depth`` pipelined SendRRData / Unconnected Send / Read Tag ``SCADA[0-9]`` requests in
   flight for ``--seconds``.  Reported: replies per second, and the server's CPU time per
   request (utime+stime from /proc/<pid>/stat before and after).
   With ``--before DIR`` (a ``git archive`` of an older commit), that tree's server is
   measured too, right after ours, under the same load: the before/after rows.
2. Many devices: one process serves ``--devices`` devices (each its own tags, identity and
   loopback address); reported: time until all listen, and RSS per device beyond the empty
   process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import selectors
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cpppo.enip.codec import cip, cpf, encapsulation, epath, logix  # noqa: E402
from tests.support import free_port, python_module, running  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def read_frame(session: int) -> bytes:
    path = (epath.Symbolic("SCADA"), epath.Logical("element", 0))
    request = cip.Request(0x4C, path, logix.ReadTag(10).encode())
    send = cip.UnconnectedSend(request.encode(), (epath.Port(1, 0),)).request()
    return encapsulation.encode(0x6F, cpf.encode_rr_data(send.encode(), timeout=5), session=session)


# --- the load generator (run as its own process) --------------------------------------------------

def loadgen(host: str, port: int, connections: int, depth: int, seconds: float) -> dict:
    """Keep ``depth`` requests in flight on each connection; count whole replies."""
    sel = selectors.DefaultSelector()
    states = []
    for _ in range(connections):
        sock = socket.create_connection((host, port), timeout=10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(encapsulation.encode(0x65, encapsulation.register_session_data()))
        head = b""
        while len(head) < 28:
            head += sock.recv(28 - len(head))
        session = struct.unpack_from("<I", head, 4)[0]
        sock.setblocking(False)
        state = {"sock": sock, "frame": read_frame(session), "buffer": bytearray(), "errors": 0}
        states.append(state)
        sel.register(sock, selectors.EVENT_READ, state)
    replies = 0
    for state in states:
        state["sock"].sendall(state["frame"] * depth)
    start = time.monotonic()
    deadline = start + seconds
    while time.monotonic() < deadline:
        for key, _ in sel.select(timeout=0.5):
            state = key.data
            try:
                chunk = state["sock"].recv(262144)
            except BlockingIOError:
                continue
            if not chunk:
                raise ConnectionError("server closed a connection")
            buffer = state["buffer"]
            buffer += chunk
            done = offset = 0
            while len(buffer) - offset >= 24:
                length = struct.unpack_from("<H", buffer, offset + 2)[0]
                if len(buffer) - offset < 24 + length:
                    break
                if buffer[offset + 24 + 16 + 2] != 0:  # CIP general status of the reply
                    state["errors"] += 1
                offset += 24 + length
                done += 1
            del buffer[:offset]
            replies += done
            if done:
                state["sock"].sendall(state["frame"] * done)
    elapsed = time.monotonic() - start
    for state in states:
        state["sock"].close()
    return {"replies": replies, "seconds": elapsed, "errors": sum(s["errors"] for s in states)}


def measure(argv: list[str], port: int, args: argparse.Namespace) -> dict:
    with running(argv, listen=("127.0.0.1", port), timeout=60) as proc:
        time.sleep(0.5)
        # warm up (and check that the server answers the load at all)
        subprocess.run([sys.executable, __file__, "--loadgen", str(port), "2", "2", "1.0"], check=True,
                       capture_output=True, timeout=120)
        before = cpu_seconds(proc.pid)
        out = subprocess.run([sys.executable, __file__, "--loadgen", str(port), str(args.connections),
                              str(args.depth), str(args.seconds)], check=True, capture_output=True, text=True,
                             timeout=args.seconds * 4 + 60)
        used = cpu_seconds(proc.pid) - before
    result = json.loads(out.stdout)
    result["rate"] = result["replies"] / result["seconds"]
    result["cpu_ms_per_request"] = 1000 * used / max(result["replies"], 1)
    result["cpu_seconds"] = used
    return result


# --- many devices in one process ----------------------------------------------------------------

def rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def many_devices(count: int) -> dict:
    """Run in a fresh process: serve ``count`` devices, report start time and RSS growth."""
    from cpppo.enip.device.model import Device
    from cpppo.enip.server.transport import serve
    from cpppo.server.hosting import ensure_fd_limit, new_event_loop

    ensure_fd_limit(2 * count + 256)

    async def main() -> dict:
        empty = rss_kb()
        start = time.perf_counter()
        servers = []
        for n in range(count):
            device = Device.from_specs(["SCADA=INT[1000]", "Motor_Speed=REAL", "Status@22/1/1=DINT[4]"],
                                       identity={"serial_number": n + 1, "product_name": f"PLC {n}"})
            host = f"127.77.{n // 250}.{n % 250 + 1}"
            servers.append(await serve(device, host, 0))
        listening = time.perf_counter() - start
        loaded = rss_kb()
        # check a few answer
        for srv in servers[:: max(1, count // 5)]:
            reader, writer = await asyncio.open_connection(srv.host, srv.port)
            writer.write(encapsulation.encode(0x63))
            head = await reader.readexactly(24)
            await reader.readexactly(struct.unpack_from("<H", head, 2)[0])
            writer.close()
        for srv in servers:
            srv.close()
        return {"devices": count, "start_seconds": listening, "empty_rss_kb": empty,
                "loaded_rss_kb": loaded, "kb_per_device": (loaded - empty) / count}

    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(main())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--depth", type=int, default=8)
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--skip-upstream", action="store_true")
    ap.add_argument("--before", type=Path, metavar="DIR",
                    help="an older source tree (git archive): its server measured beside ours")
    ap.add_argument("--loadgen", nargs=4, metavar=("PORT", "CONNS", "DEPTH", "SECONDS"),
                    help=argparse.SUPPRESS)
    ap.add_argument("--many", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.loadgen:
        port, conns, depth, seconds = args.loadgen
        print(json.dumps(loadgen("127.0.0.1", int(port), int(conns), int(depth), float(seconds))))
        return 0
    if args.many:
        print(json.dumps(many_devices(args.many)))
        return 0

    rows = []
    port = free_port()
    argv = python_module("cpppo.server.enip", "-a", f"127.0.0.1:{port}", "SCADA=INT[1000]")
    ours = measure(argv, port, args)
    rows.append(("ours", ours))
    if args.before:  # the older tree's `python -m cpppo.server.enip`, its tree first on sys.path
        port = free_port()
        run = "import runpy, sys; sys.path.insert(0, sys.argv.pop(1)); " \
              "runpy.run_module('cpppo.server.enip', run_name='__main__', alter_sys=True)"
        rows.append((f"before ({args.before.name})", measure(
            [sys.executable, "-I", "-c", run, str(args.before), "-a", f"127.0.0.1:{port}", "SCADA=INT[1000]"],
            port, args)))
    if not args.skip_upstream:
        from tests.upstream import upstream_python
        port = free_port()
        theirs = measure(python_module("cpppo.server.enip", "-a", f"127.0.0.1:{port}", "SCADA=INT[1000]",
                                       python=upstream_python()), port, args)
        rows.append(("upstream cpppo 5.2.5", theirs))
    print(f"Read Tag SCADA[0-9] via Unconnected Send: {args.connections} connections x depth {args.depth}, "
          f"{args.seconds:g} s each")
    print(f"{'server':<22} {'requests/s':>11} {'CPU ms/request':>15} {'errors':>7}")
    for name, row in rows:
        print(f"{name:<22} {row['rate']:>11.0f} {row['cpu_ms_per_request']:>15.4f} {row['errors']:>7}")
    if not args.skip_upstream:
        peer = rows[-1][1]
        for name, mine in rows[:-1]:
            print(f"ratio ({name} / upstream): {mine['rate'] / peer['rate']:.1f}x requests/s, "
                  f"{peer['cpu_ms_per_request'] / mine['cpu_ms_per_request']:.1f}x less CPU per request")
    if args.before:
        (_, after), (name, before) = rows[:2]
        print(f"ratio (ours / {name}): {after['rate'] / before['rate']:.2f}x requests/s, "
              f"{before['cpu_ms_per_request'] / after['cpu_ms_per_request']:.2f}x less CPU per request")

    out = subprocess.run([sys.executable, __file__, "--many", str(args.devices)], check=True,
                         capture_output=True, text=True, timeout=600)
    many = json.loads(out.stdout)
    print(f"\n{many['devices']} devices in one process: all listening in {many['start_seconds']:.2f} s; "
          f"RSS {many['empty_rss_kb'] / 1024:.1f} MB empty -> {many['loaded_rss_kb'] / 1024:.1f} MB, "
          f"{many['kb_per_device']:.1f} KB per device")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
