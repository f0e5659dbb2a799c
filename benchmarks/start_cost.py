"""Start-up cost of one simulated PLC process: RSS, CPU and modules imported.

Runs, for each source tree given (``--tree``; default: the installed one), ``enip_server`` with
one tag, ``modbus_sim`` with 100 registers and a device container's main process
(:mod:`fleet.backends.docker.entry` with a worker spec of one ENIP device and one of one
Modbus device, run here on loopback: the same process a container runs), waits until each
answers a TCP connect, then reads its RSS and CPU time from /proc and the heavy packages it
imported (``-X importtime``), and stops it.  Each row is the median of ``--repeat`` starts.

    python benchmarks/start_cost.py --tree /path/to/old/checkout --tree .
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fleet.metrics import WORKER_PORT  # noqa: E402  (both trees have it there)
from tests.support import free_port, wait_port  # noqa: E402

HEAVY = ("aiohttp", "prometheus_client", "simpleeval", "rich", "typer", "docker", "yarl", "multidict",
         "cpppo.enip.web", "cpppo.behaviour", "cpppo.enip.device.l5x", "fleet.web", "fleet.cli",
         "fleet.metrics")
TICKS = os.sysconf("SC_CLK_TCK")
SCRAPED_HOST = f"127.{random.randrange(64, 250)}.{random.randrange(1, 250)}.{random.randrange(1, 250)}"
# the container's main process past its root-only steps (adding addresses, dropping to its user)
ENTRY = ("import json, os, sys; from fleet.backends.docker import entry; "
         "sys.exit(entry.run(json.loads(os.environ[entry.SPEC_VARIABLE])))")


def spec(kind: str, port: int, host: str = "127.0.0.1") -> str:
    """A worker spec of one device, as the docker backend writes it (fleet.backends.docker.containers)."""
    from fleet.config import parse
    from fleet.plan import expand

    body = 'tags = ["SCADA=INT[100]"]' if kind == "enip" else 'registers = ["40001-40100=0"]'
    text = (f'[fleet]\nname = "bench"\n[[device]]\nname = "d{{n}}"\nkind = "{kind}"\n'
            f'address = "{host}"\nport = {port}\n{body}\n')
    devices = expand(parse(text, source="/tmp/start_cost.toml")).devices
    return json.dumps({"worker": "w0", "devices": [d.to_json() for d in devices], "max_connections": 100})


def commands(port: int) -> dict[str, tuple[list[str], dict[str, str]]]:
    py = [sys.executable, "-X", "importtime", "-c"]
    run = "import sys; from {} import main; sys.exit(main())".format
    address = ["-a", f"127.0.0.1:{port}"]
    return {
        "enip_server, one tag": ([*py, run("cpppo.enip.cli.server"), *address, "--no-print",
                                  "SCADA=INT[100]"], {}),
        "modbus_sim, 100 registers": ([*py, run("cpppo.bin.modbus_sim"), *address, "40001-40100=0"], {}),
        "container worker, one ENIP device": ([*py, ENTRY], {"CPPPO_FLEET_SPEC": spec("enip", port)}),
        "container worker, one Modbus device": ([*py, ENTRY], {"CPPPO_FLEET_SPEC": spec("modbus", port)}),
        # as in a fleet, whose poller scrapes every worker's /metrics each health interval; its
        # own loopback address, so that its /metrics port (WORKER_PORT) is its own
        "container worker, one ENIP device, after a /metrics scrape":
            ([*py, ENTRY], {"CPPPO_FLEET_SPEC": spec("enip", port, SCRAPED_HOST)}),
    }


def measure(argv: list[str], env: dict[str, str], host: str, port: int, timeout: float = 60.0,
            scrape: str | None = None) -> dict[str, object]:
    """Start ``argv``, wait for its port (then GET ``scrape``), read RSS and CPU, stop it; the
    modules it imported."""
    begun = time.monotonic()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            cwd="/")  # (``-c`` puts the working directory first on sys.path)
    try:
        wait_port(host, port, timeout, proc)
        up = time.monotonic() - begun
        if scrape:
            with urllib.request.urlopen(scrape, timeout=timeout) as reply:
                reply.read()
        time.sleep(0.3)  # let start-up finish whatever it does after listening
        status = Path(f"/proc/{proc.pid}/status").read_text()
        rss = int(status.split("VmRSS:")[1].split()[0]) / 1024
        fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / TICKS
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
    imported = {line.split("|")[-1].strip() for line in err.splitlines() if line.startswith("import time:")}
    imported.discard("package")
    heavy = sorted(h for h in HEAVY if h in imported)
    return {"rss": rss, "cpu": cpu, "up": up, "modules": len(imported), "heavy": heavy}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", action="append", default=[],
                        help="a cpppo-fleet source tree to run (put first on PYTHONPATH); repeatable")
    parser.add_argument("--repeat", type=int, default=5, help="starts of each command (median reported)")
    args = parser.parse_args()
    trees = args.tree or [""]
    results: dict[str, dict[str, list[dict[str, object]]]] = {}
    for _ in range(args.repeat):
        for tree in trees:  # interleaved, so load changes hit every tree alike
            env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
            if tree:
                env["PYTHONPATH"] = str(Path(tree).resolve())
            for name, (argv, extra) in commands(free_port()).items():
                if "-a" in argv:
                    host, port, scrape = "127.0.0.1", int(argv[argv.index("-a") + 1].split(":")[1]), None
                else:
                    device = json.loads(extra["CPPPO_FLEET_SPEC"])["devices"][0]
                    host, port = device["host"], device["port"]
                    scrape = f"http://{host}:{WORKER_PORT}/metrics" if "scrape" in name else None
                runs = results.setdefault(name, {}).setdefault(tree, [])
                runs.append(measure(argv, {**env, **extra}, host, port, scrape=scrape))
    print(f"uptime: {os.getloadavg()}")
    print("| process | tree | RSS (MiB) | CPU to listening (s) | time to listening (s) | modules "
          "| heavy modules |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, by_tree in results.items():
        for tree, runs in by_tree.items():
            med = {k: statistics.median(r[k] for r in runs) for k in ("rss", "cpu", "up", "modules")}
            print(f"| {name} | {tree or 'installed'} | {med['rss']:.1f} | {med['cpu']:.2f} | {med['up']:.2f} "
                  f"| {med['modules']:.0f} | {', '.join(runs[-1]['heavy']) or '-'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
