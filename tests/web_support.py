"""Shared by the fleet page and metrics tests: a small live fleet on the process backend, an
aiohttp application served from a thread, and headless Chromium driven by selenium."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fleet_support import CliFleet, until
from tests.support import free_port

ARTIFACTS = Path(__file__).resolve().parent.parent / ".cache" / "artifacts"


def fleet_text(name: str, octet: int, port: int, web: str | None = None) -> str:
    web_key = "" if web is None else f'web = "{web}"\n'
    return f"""
[fleet]
name = "{name}"
{web_key}address_pool = "127.78.{octet}.0/24"
health_interval = 0.5
health_timeout = 0.5
devices_per_worker = 2

[[device]]
kind = "enip"
count = 2
name = "line{{n}}"
port = {port}
tags = ["SCADA=INT[10]", "Speed=REAL"]

[[device]]
kind = "modbus"
count = 2
name = "pump{{n}}"
port = {port}
registers = ["40001-40010=7", "1-8=0"]
"""


@contextlib.contextmanager
def live_fleet(tmp: Path, name: str, salt: int, web: str | None = None) -> Iterator[CliFleet]:
    """A fleet of 2 ENIP + 2 Modbus devices, up (and healthy); always brought down.  ``web``:
    its ``[fleet] web`` (default: none given)."""
    octet = (os.getpid() + salt) % 200 + 20
    fleet = CliFleet(tmp, fleet_text(name, octet, free_port(f"127.78.{octet}.1"), web))
    try:
        fleet.cli("up")
        until(lambda: fleet.status().get("web") is not None or "web_error" in fleet.status(), 20,
              "the fleet page's address")
        yield fleet
    finally:
        fleet.backend.down()


def fetch(url: str, data: bytes | None = None, headers: dict[str, str] | None = None,
          method: str | None = None) -> tuple[int, bytes, Any]:
    """(status, body, headers) of one request; 4xx/5xx answers are returned too."""
    request = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read(), answer.headers
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read(), exc.headers


def post_json(url: str, body: dict[str, Any], token: str | None) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    status, data, _ = fetch(url, json.dumps(body).encode(), headers, "POST")
    return status, json.loads(data)


@contextlib.contextmanager
def serving(app: Any) -> Iterator[str]:
    """``app`` (aiohttp) on a loopback port of an event loop in a thread; yields its URL."""
    from cpppo.server.aioweb import start_site

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    runner, host, port = asyncio.run_coroutine_threadsafe(start_site(app, "127.0.0.1", 0), loop).result(10)
    try:
        yield f"http://{host}:{port}/"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@contextlib.contextmanager
def chromium(tmp: Path, width: int = 1280, height: int = 800) -> Iterator[Any]:
    """Headless Chromium (Debian's chromium + chromium-driver) under selenium; always quit."""
    from selenium import webdriver  # a [test] dependency; only the browser may be missing
    from selenium.webdriver.chrome.service import Service

    binary, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if binary is None or driver_path is None:
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                f"--user-data-dir={tmp / 'chromium-profile'}", f"--window-size={width},{height}"):
        options.add_argument(arg)
    options.binary_location = binary
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_script_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def screenshot(driver: Any, tmp: Path, name: str) -> Path:
    """Save a screenshot under ``tmp`` and ``.cache/artifacts/``; return the first."""
    path = tmp / name
    driver.save_screenshot(str(path))
    with contextlib.suppress(OSError):
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, ARTIFACTS / name)
    return path


def client_exposition(view: Any, collector: Any) -> bytes:
    """The fleet's /metrics as prometheus-client writes it from its own family objects (as
    the poller did before it wrote the per-device text itself): the judge of that text, and
    the peer of its render in benchmarks/bench_metrics.py."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

    from fleet.metrics import LATENCY_BUCKETS, LATENCY_HELP
    from fleet.web.view import STATES

    class Families:
        def collect(self) -> Iterator[Any]:
            rows = view.rows()
            up = GaugeMetricFamily("cpppo_fleet_device_up", "1 if the device's last health poll succeeded",
                                   labels=["device", "kind", "address"])
            latency = HistogramMetricFamily("cpppo_fleet_device_poll_latency_seconds", LATENCY_HELP,
                                            labels=["device"])
            checked = GaugeMetricFamily("cpppo_fleet_device_last_check_timestamp_seconds",
                                        "When the device's last health poll ended", labels=["device"])
            restarts = CounterMetricFamily("cpppo_fleet_device_restarts", "Restarts of the device's worker "
                                           "since the fleet came up", labels=["device"])
            faults = GaugeMetricFamily("cpppo_fleet_device_faults_active", "Injected faults in force",
                                       labels=["device"])
            states = GaugeMetricFamily("cpppo_fleet_devices", "Devices by state", labels=["state"])
            bounds = [*map(str, LATENCY_BUCKETS), "+Inf"]
            for r in rows:
                up.add_metric([r["name"], r["kind"], r["address"]], float(r["state"] == "healthy"))
                counts = view.histogram.counts.get(r["name"])
                if counts is not None:
                    cumulative, total = [], 0
                    for bound, n in zip(bounds, counts, strict=True):
                        total += n
                        cumulative.append((bound, total))
                    latency.add_metric([r["name"]], cumulative, view.histogram.sums[r["name"]])
                if r["checked"] is not None:
                    checked.add_metric([r["name"]], r["checked"])
                restarts.add_metric([r["name"]], r["restarts"])
                faults.add_metric([r["name"]], len(r["faults"]))
            for state in STATES:
                states.add_metric([state], sum(r["state"] == state for r in rows))
            yield from (up, latency, checked, restarts, faults, states)
            yield from collector.collect()

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Families())  # type: ignore[arg-type]
    return generate_latest(registry)
