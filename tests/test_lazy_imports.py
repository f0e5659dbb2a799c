"""A process that does not use a feature does not import what the feature needs: `enip_server`
without ``--web`` imports no aiohttp, `modbus_sim` none either, and a fleet worker (a device
container's main process) serves its devices without aiohttp or prometheus-client until its
``/metrics`` is first scraped, and never imports rich, typer or the docker SDK (each costs
every container memory and start-up CPU: about 20 MiB and 0.2 s for aiohttp alone)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path

import pytest

from fleet.config import parse
from fleet.plan import expand
from tests.support import ROOT, free_port, wait_port

HEAVY = ("aiohttp", "prometheus_client", "simpleeval", "rich", "typer", "docker", "yarl", "multidict",
         "cpppo.enip.web", "cpppo.enip.device.l5x", "fleet.web", "fleet.cli", "fleet.metrics")
#: the container's main process past its root-only steps (adding addresses, dropping privileges)
ENTRY = ("import json, os, sys; from fleet.backends.docker import entry; "
         "sys.exit(entry.run(json.loads(os.environ[entry.SPEC_VARIABLE])))")


def heavy(names: set[str] | list[str]) -> list[str]:
    return sorted(h for h in HEAVY if h in names)


def serve(argv: list[str], port: int, env: dict[str, str] | None = None, scrape: Path | None = None,
          ) -> tuple[set[str], str | None]:
    """Run ``python -X importtime <argv>`` until it listens on ``port`` (and, with ``scrape``: a
    worker's metrics record, until its /metrics answered), stop it; the modules it imported
    and the /metrics text."""
    command = [sys.executable, "-X", "importtime", *argv]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env={**os.environ, **(env or {})})
    text = None
    try:
        wait_port("127.0.0.1", port, timeout=60, proc=proc)
        if scrape is not None:
            url = json.loads(scrape.read_text())["url"]
            with urllib.request.urlopen(url, timeout=30) as reply:
                text = reply.read().decode()
    finally:
        proc.terminate()
        try:
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
    names = {line.split("|")[-1].strip() for line in err.splitlines() if line.startswith("import time:")}
    assert names, f"no -X importtime output from {command}: {err[-500:]}"
    return names, text


def test_entry_modules_import_nothing_heavy() -> None:
    """Importing the commands' and the worker's entry modules imports none of the heavy packages."""
    code = textwrap.dedent(f"""
        import json, sys
        import cpppo.server.enip.main, cpppo.enip.cli.server, cpppo.bin.modbus_sim
        import fleet.worker, fleet.backends.docker.entry
        print(json.dumps(sorted(h for h in {HEAVY!r} if h in sys.modules)))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=ROOT, check=True).stdout
    assert heavy(json.loads(out)) == []


@pytest.mark.parametrize(("module", "args", "server"), [
    ("cpppo.enip.cli.server", ["--no-print", "SCADA=INT[100]"], "cpppo.enip.server.transport"),
    ("cpppo.bin.modbus_sim", ["40001-40100=0"], "cpppo.modbus.server"),
], ids=["enip_server", "modbus_sim"])
def test_serving_without_web_imports_nothing_heavy(module: str, args: list[str], server: str) -> None:
    """A running `enip_server` (one tag, no --web) and `modbus_sim` serve without the heavy packages."""
    port = free_port()
    names, _ = serve(["-c", f"import sys; from {module} import main; sys.exit(main())",
                      "-a", f"127.0.0.1:{port}", *args], port)
    assert server in names
    assert heavy(names) == []


def test_enip_server_with_web_imports_aiohttp() -> None:
    """--web still serves its API (the lazily imported aiohttp) beside the tags."""
    port, web = free_port(), free_port()
    names, _ = serve(["-c", "import sys; from cpppo.enip.cli.server import main; sys.exit(main())",
                      "-a", f"127.0.0.1:{port}", "--web", f"127.0.0.1:{web}", "--no-print", "SCADA=INT[100]"],
                     port)
    assert {"aiohttp", "cpppo.enip.web"} <= names


@pytest.mark.parametrize("kind", ["enip", "modbus"])
def test_worker_imports_metrics_packages_only_when_scraped(kind: str, tmp_path: Path) -> None:
    """A device container's worker serves its device without aiohttp/prometheus-client; its
    /metrics, bound from the start, imports prometheus-client (never aiohttp) at the first
    scrape and answers it."""
    port = free_port()
    body = 'tags = ["SCADA=INT[100]"]' if kind == "enip" else 'registers = ["40001-40100=0"]'
    text = (f'[fleet]\nname = "lazy"\n[[device]]\nname = "d{{n}}"\nkind = "{kind}"\n'
            f'address = "127.0.0.1"\nport = {port}\n{body}\n')
    devices = expand(parse(text, source=str(tmp_path / "fleet.toml"))).devices
    spec = {"worker": "w0", "devices": [d.to_json() for d in devices], "state_dir": str(tmp_path)}
    env = {"CPPPO_FLEET_SPEC": json.dumps(spec)}
    names, _ = serve(["-c", ENTRY], port, env)
    assert "fleet.worker" in names
    assert heavy(names) == []
    names, metrics = serve(["-c", ENTRY], port, env, scrape=tmp_path / "metrics" / "w0.json")
    assert metrics is not None and "cpppo_fleet_worker_connections" in metrics
    assert {"prometheus_client", "fleet.metrics"} <= names
    assert heavy(names) == sorted({"prometheus_client", "fleet.metrics", "fleet.web"} & names)  # no aiohttp


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_metrics_site_collects_on_the_loop(loop: str) -> None:
    """A worker's /metrics (:func:`fleet.scrape.serve_metrics`) makes its collector once, at the
    first request, reads it on the worker's event loop (not the server's thread), and answers
    requests that arrive together."""
    import asyncio
    import threading
    import urllib.request

    from prometheus_client.core import GaugeMetricFamily

    from cpppo.server.hosting import new_event_loop
    from fleet.scrape import serve_metrics

    made, threads = [], []

    class Counting:
        def collect(self):
            threads.append(threading.get_ident())
            yield GaugeMetricFamily("test_collections", "collections so far", value=len(threads))

    def make():
        made.append(1)
        return Counting()

    def get(port: int) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as reply:
            return reply.read().decode()

    async def main() -> list[str]:
        site = serve_metrics(make, "127.0.0.1", 0, "test metrics")
        try:
            assert made == []  # nothing made before the first scrape
            return await asyncio.gather(*(asyncio.to_thread(get, site.port) for _ in range(4)))
        finally:
            await site.cleanup()

    factory = asyncio.new_event_loop if loop == "asyncio" else new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        texts = runner.run(main())
        loop_thread = threading.get_ident()
    assert made == [1]
    assert threads == [loop_thread] * 4
    assert sorted(float(t.split("test_collections ")[-1]) for t in texts) == [1.0, 2.0, 3.0, 4.0]


def test_metrics_site_bind_error_is_one_line() -> None:
    """A taken port is refused as start_site refuses it: a WebBindError naming the address."""
    import asyncio
    import socket

    from cpppo.server.hosting import WebBindError
    from fleet.scrape import serve_metrics

    async def bind(port: int) -> None:
        serve_metrics(dict, "127.0.0.1", port, "the test's metrics")

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(WebBindError) as refused:
            asyncio.run(bind(port))
    assert refused.value.strerror.startswith(f"cannot serve the test's metrics on 127.0.0.1:{port}: ")
    assert "\n" not in refused.value.strerror
