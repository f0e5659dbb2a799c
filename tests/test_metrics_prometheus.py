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


def next_scrape_shows_down(fleet: CliFleet, prom: Prometheus, devices: set[str]) -> dict[str, float]:
    """Wait for the health poller to record each of ``devices`` down (in its store), then for
    Prometheus' next scrape of the fleet after that poll; assert that scrape has it at 0.
    Returns the figures (seconds): the poller noticing, and the scrape after it."""
    from fleet.store import open_store

    begun = time.time()
    failed: dict[str, float] = {}  # device -> time of a failed poll the poller recorded

    def recorded() -> bool:
        with open_store(fleet.state / "health.sqlite") as store:
            for name, history in store.history(devices, latencies=False).items():
                last = history.last
                if name not in failed and last is not None and not last.ok and last.time > begun:
                    failed[name] = last.time
        return set(failed) == devices

    until(recorded, 30, "the poller records them down")
    selector = "|".join(sorted(devices))
    seen: dict[str, tuple[float, float]] = {}  # device -> (time, value) of the first scrape after

    def scraped() -> bool:
        result = prom.api("query", query=f'cpppo_fleet_device_up{{device=~"{selector}"}}[2m]')["result"]
        for series in result:
            name = series["metric"]["device"]
            after = [(float(t), float(v)) for t, v in series["values"] if float(t) > failed[name] + 0.001]
            if after:
                seen[name] = after[0]
        return set(seen) == devices

    until(scraped, 10 * SCRAPE + 10, "a scrape after the poller recorded them down")
    assert {name: value for name, (_t, value) in seen.items()} == dict.fromkeys(devices, 0.0)
    return {"noticed": max(failed.values()) - begun,
            "scrape after": max(t - failed[name] for name, (t, _v) in seen.items()),
            "shown at 0": max(t for t, _v in seen.values()) - begun}


def report(what: str, figures: dict[str, float]) -> None:
    print(f"{what} worker: the poller had its devices down {figures['noticed']:.2f} s after, Prometheus' "
          f"next scrape ({figures['scrape after']:.2f} s later; interval {SCRAPE:g} s) had them at 0, "
          f"{figures['shown at 0']:.2f} s after")


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
        try:
            report("hung", next_scrape_shows_down(fleet, prom, hung))
        finally:
            os.kill(pid, signal.SIGCONT)
        until(lambda: prom.up() == dict.fromkeys(names, 1.0), 30, "back up in Prometheus")
        worker_up = prom.api("query", query="cpppo_fleet_worker_up")["result"]
        assert {r["metric"]["worker"] for r in worker_up} == {d.worker for d in fleet.plan.devices}

        # a killed worker, its supervisord paused so that the restart waits until Prometheus
        # has seen the devices at 0; then the restart is counted and they come back
        other = fleet.plan.devices[-1].worker
        killed = {d.name for d in fleet.plan.devices if d.worker == other}
        pids, supervisor = fleet.pids(), fleet.backend._supervisord_pid()
        assert supervisor is not None
        os.kill(supervisor, signal.SIGSTOP)
        try:
            os.kill(pids[other], signal.SIGKILL)
            report("killed", next_scrape_shows_down(fleet, prom, killed))
        finally:
            os.kill(supervisor, signal.SIGCONT)

        def restarts() -> dict[str, float]:
            result = prom.api("query", query="cpppo_fleet_device_restarts_total")["result"]
            return {r["metric"]["device"]: float(r["value"][1]) for r in result}

        until(lambda: restarts() == {n: 1.0 if n in killed else 0.0 for n in names}, 30,
              "the restart counted in Prometheus")
        until(lambda: prom.up() == dict.fromkeys(names, 1.0), 30, "the restarted worker's devices up")
