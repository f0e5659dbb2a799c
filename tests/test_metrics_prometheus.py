"""A real Prometheus (Debian's ``prometheus``, started here on a loopback port with a config
written here) scrapes a running fleet: ``cpppo_fleet_device_up`` for every device, the
file_sd targets file discovered, a hung worker's devices at 0 within a scrape interval of
the health poller noticing (the measured delay is printed), and a killed worker's restart."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fleet_support import CliFleet, until
from tests.support import free_port
from tests.web_support import fetch, live_fleet

pytestmark = pytest.mark.slow

SCRAPE = 1.0  # seconds between Prometheus scrapes


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def api(self, path: str, **query: str) -> Any:
        status, body, _ = fetch(f"{self.url}api/v1/{path}?{urllib.parse.urlencode(query)}")
        assert status == 200, body
        data = json.loads(body)
        assert data["status"] == "success", data
        return data["data"]

    def up(self) -> dict[str, float]:
        """device -> the last scraped cpppo_fleet_device_up."""
        result = self.api("query", query="cpppo_fleet_device_up")["result"]
        return {r["metric"]["device"]: float(r["value"][1]) for r in result}


@pytest.fixture
def prometheus_for(tmp_path: Path) -> Iterator[Any]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("needs Debian's prometheus (apt-get install prometheus)")
    procs: list[subprocess.Popen] = []

    def start(fleet: CliFleet) -> Prometheus:
        target = urllib.parse.urlsplit(fleet.status()["metrics"]).netloc
        port = free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text(json.dumps({  # YAML is a superset of JSON
            "global": {"scrape_interval": f"{SCRAPE:g}s", "evaluation_interval": f"{SCRAPE:g}s"},
            "scrape_configs": [
                {"job_name": "cpppo_fleet", "static_configs": [{"targets": [target]}]},
                {"job_name": "devices", "file_sd_configs": [{"files": [str(fleet.state / "file_sd.json")]}],
                 # discovered only: the devices speak EtherNet/IP and Modbus, not HTTP
                 "relabel_configs": [{"action": "drop", "source_labels": ["kind"], "regex": ".+"}]},
            ]}))
        proc = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
            stdout=subprocess.DEVNULL, stderr=open(tmp_path / "prometheus.log", "w"),  # noqa: SIM115
            start_new_session=True)
        procs.append(proc)
        prom = Prometheus(f"http://127.0.0.1:{port}/")
        until(lambda: proc.poll() is not None or fetch(prom.url + "-/ready")[0] == 200 if _listening(port)
              else proc.poll() is not None, 30, "prometheus ready")
        assert proc.poll() is None, (tmp_path / "prometheus.log").read_text()
        return prom

    try:
        yield start
    finally:
        for proc in procs:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_prometheus_scrapes_the_fleet(tmp_path: Path, prometheus_for: Any) -> None:
    with live_fleet(tmp_path, f"prom{os.getpid()}", 77) as fleet:
        prom = prometheus_for(fleet)
        names = {d.name for d in fleet.plan.devices}
        until(lambda: prom.up() == dict.fromkeys(names, 1.0), 30, "every device up in Prometheus")
        targets = prom.api("targets")
        assert [t["health"] for t in targets["activeTargets"]] == ["up"]
        discovered = {t["discoveredLabels"]["__address__"] for t in targets["droppedTargets"]}
        assert discovered == {d.endpoint for d in fleet.plan.devices}  # file_sd.json read
        requests = prom.api("query", query="sum by (kind) (cpppo_fleet_worker_requests_total)")["result"]
        assert {r["metric"]["kind"] for r in requests} == {"enip", "modbus"}
        assert prom.api("query", query='cpppo_fleet_devices{state="healthy"}')["result"][0]["value"][1] == "4"

        worker = fleet.plan.devices[0].worker
        hung = {d.name for d in fleet.plan.devices if d.worker == worker}
        pid = fleet.pids()[worker]
        os.kill(pid, signal.SIGSTOP)  # the worker hangs: its devices answer nothing
        begun = time.monotonic()
        try:
            until(lambda: fleet.status()["devices"] and all(
                d["state"] == "down" for d in fleet.status()["devices"] if d["name"] in hung), 30,
                "the poller sees them down")
            noticed = time.monotonic() - begun
            expected = {n: 0.0 if n in hung else 1.0 for n in names}
            until(lambda: prom.up() == expected, 3 * SCRAPE + 5, "Prometheus sees them at 0")
            seen = time.monotonic() - begun
        finally:
            os.kill(pid, signal.SIGCONT)
        print(f"hung worker: poller noticed after {noticed:.2f} s, Prometheus showed 0 after {seen:.2f} s "
              f"({(seen - noticed) / SCRAPE:.2f} scrape intervals later; scrape interval {SCRAPE:g} s, "
              f"health interval {fleet.plan.fleet.health_interval:g} s)")
        until(lambda: prom.up() == dict.fromkeys(names, 1.0), 30, "back up in Prometheus")
        worker_up = prom.api("query", query="cpppo_fleet_worker_up")["result"]
        assert {r["metric"]["worker"] for r in worker_up} == {d.worker for d in fleet.plan.devices}

        other = fleet.plan.devices[-1].worker  # a killed worker: supervisord restarts it
        restarted = {d.name for d in fleet.plan.devices if d.worker == other}
        os.kill(fleet.pids()[other], signal.SIGKILL)

        def restarts() -> dict[str, float]:
            result = prom.api("query", query="cpppo_fleet_device_restarts_total")["result"]
            return {r["metric"]["device"]: float(r["value"][1]) for r in result}

        until(lambda: restarts() == {n: 1.0 if n in restarted else 0.0 for n in names}, 30,
              "the restart counted in Prometheus")
        until(lambda: prom.up() == dict.fromkeys(names, 1.0), 30, "the restarted worker's devices up")
