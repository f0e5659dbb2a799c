"""Fuzz the live EtherNet/IP and Modbus servers for a while and report how they hold up.

    python benchmarks/fuzz_servers.py [--seconds 30] [--connections 16] [--per-connection 40]
                                      [--max-frames 5000000] [--only enip|modbus]

Each server runs as its own process (``enip_server SCADA=INT[100] Text=STRING[2]``, then
``modbus_sim 40001-40100=99 1-16=0 10001-10008=1 30001-30010=5``).  Batches of
``--connections`` connections at once each send ``--per-connection`` frames, most of them
valid requests with a mutated body, some mutated whole (which loses the stream: the server
closes it); every reply is checked to frame as a plausible reply.  Between batches a
well-behaved probe (one kept-open connection) reads a value and checks it.  Reported per
server: frames/s, the probe's median latency unloaded (the peer), its 99th percentile and
worst between batches (and worst/unloaded), and the server's RSS before and after.  The short version of this
run is ``tests/test_server_fuzz.py``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from tests.live_fuzz import EnipProbe, FuzzResult, ModbusProbe, fuzz, rss  # noqa: E402
from tests.support import free_port, python_module, running  # noqa: E402

HOST = "127.0.0.1"
SERVERS = {
    "enip": ("cpppo.server.enip", ["SCADA=INT[100]", "Text=STRING[2]"]),
    "modbus": ("cpppo.bin.modbus_sim", ["40001-40100=99", "1-16=0", "10001-10008=1", "30001-30010=5"]),
}


def unloaded_probe(kind: str, port: int, count: int = 200) -> float:
    """The probe's median latency with nothing else going on."""
    probe = (EnipProbe if kind == "enip" else ModbusProbe)(HOST, port)
    try:
        return statistics.median(probe() for _ in range(count))
    finally:
        probe.close()


def run(kind: str, args: argparse.Namespace, console: Console) -> tuple[FuzzResult, float]:
    module, specs = SERVERS[kind]
    port = free_port()
    with running(python_module(module, "-a", f"{HOST}:{port}", *specs), listen=(HOST, port)) as proc:
        quiet = unloaded_probe(kind, port)

        def progress(result: FuzzResult) -> None:
            if result.batches % 50 == 0:
                console.log(f"{kind}: {result.frames:,} frames, {result.frames_per_second:,.0f}/s, "
                            f"worst probe {result.worst_probe * 1e3:.1f} ms")

        result = fuzz(kind, HOST, port, seconds=args.seconds, max_frames=args.max_frames,
                      connections=args.connections, per_connection=args.per_connection,
                      server_rss=lambda: rss(proc.pid), progress=progress)
        assert proc.poll() is None, f"the {kind} server exited"
    return result, quiet


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=30.0, help="per server (default 30)")
    ap.add_argument("--connections", type=int, default=16, help="connections per batch (default 16)")
    ap.add_argument("--per-connection", type=int, default=40, help="frames per connection (default 40)")
    ap.add_argument("--max-frames", type=int, default=5_000_000, help="per server (default 5,000,000)")
    ap.add_argument("--only", choices=sorted(SERVERS), help="fuzz only this server")
    args = ap.parse_args(argv)
    console = Console(stderr=True)
    table = Table(title="live server fuzzing")
    for column in ("server", "frames", "frames/s", "replies", "connections", "probe unloaded (median)",
                   "probe p99", "probe worst", "worst / unloaded", "RSS before", "RSS after"):
        table.add_column(column, justify="right")
    for kind in [args.only] if args.only else list(SERVERS):
        result, quiet = run(kind, args, console)
        table.add_row(kind, f"{result.frames:,}", f"{result.frames_per_second:,.0f}", f"{result.replies:,}",
                      f"{result.connections:,}", f"{quiet * 1e3:.3f} ms", f"{result.p99_probe * 1e3:.1f} ms",
                      f"{result.worst_probe * 1e3:.1f} ms",
                      f"{result.worst_probe / quiet:.0f}x", f"{result.rss_before / 2**20:.1f} MiB",
                      f"{result.rss_after / 2**20:.1f} MiB")
    Console(width=200).print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
