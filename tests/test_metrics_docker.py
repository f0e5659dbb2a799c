"""The fleet page, /metrics and ``status --watch`` on the docker backend: the health poller's
container serves the page and /metrics at its own address on the fleet's bridge (the host
reaches it there) and gathers each device container's own /metrics (at its device's address,
port 9179); the page in headless Chromium and ``status --watch`` through a pseudo-terminal
show a paused device container down, worst first."""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fleet.config import load
from fleet.metrics import WORKER_PORT
from fleet.plan import expand
from fleet.web.serve import read_web
from tests.fleet_support import until
from tests.test_fleet_docker import device_image, docker_fleet, fleet_text, free_subnet, wait_all_healthy
from tests.test_web_status_watch import ANSI, run_in_pty
from tests.web_support import chromium, fetch, post_json, screenshot

pytestmark = [pytest.mark.docker, pytest.mark.slow]
TOKEN = "docker-" + uuid.uuid4().hex
__all__ = ["device_image"]  # the session fixture, shared


@pytest.fixture(scope="module")
def fleet(docker_client, device_image, tmp_path_factory) -> Iterator[tuple]:
    """Two device containers (one ENIP, one Modbus) and the poller's; a fleet.toml for the CLI."""
    name = f"m{uuid.uuid4().hex[:8]}"
    tmp = tmp_path_factory.mktemp("dockerweb")
    path = tmp / "fleet.toml"
    subnet = free_subnet(docker_client, "172.29.0.0/16")
    path.write_text(fleet_text(name, subnet, device_image, enip=1, modbus=1))
    with docker_fleet(docker_client, tmp / name, expand(load(path))) as backend:
        with environment(CPPPO_FLEET_TOKEN=TOKEN):  # the poller's container gets up's write token
            applied = backend.up()
        assert [r.error for r in wait_all_healthy(applied.devices) if not r.ok] == []
        until(lambda: read_web(backend.state.root) is not None, 60, "the poller's web address")
        yield backend, applied, path


@contextlib.contextmanager
def environment(**values: str) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def paused(backend, device: str) -> Iterator[None]:
    """The container serving ``device`` paused (by its id): the device stops answering."""
    ids = [c["Id"] for c in backend.api.containers(filters=backend._filters())
           if c["Labels"].get("cpppo-fleet.worker") == backend.plan.device(device).worker]
    assert len(ids) == 1
    backend.api.pause(ids[0])
    try:
        yield
    finally:
        backend.api.unpause(ids[0])


def samples(text: str) -> dict[str, list]:
    out: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append(sample)
    return out


def test_metrics_and_page_on_the_docker_backend(fleet) -> None:
    backend, applied, _path = fleet
    web = read_web(backend.state.root)
    assert not web["web"].startswith("http://127.")  # the poller container's own address
    names = {d.name for d in applied.devices}

    def all_up() -> bool:
        status, body, _ = fetch(web["metrics"])
        if status != 200:
            return False
        got = samples(body.decode())
        up = {s.labels["device"]: s.value for s in got.get("cpppo_fleet_device_up", [])}
        workers = {s.labels["worker"]: s.value for s in got.get("cpppo_fleet_worker_up", [])}
        return up == dict.fromkeys(names, 1.0) and set(workers.values()) == {1.0}

    until(all_up, 60, "every device and worker up in /metrics")
    got = samples(fetch(web["metrics"])[1].decode())
    assert {s.labels["kind"] for s in got["cpppo_fleet_worker_requests_total"]} == {"enip", "modbus"}
    device = applied.devices[0]
    status, body, _ = fetch(f"http://{device.host}:{WORKER_PORT}/metrics")  # a container's own
    assert status == 200 and b"cpppo_fleet_worker_requests_total" in body
    status, page, _ = fetch(web["web"])
    assert status == 200 and b"fleet.js" in page
    detail = json.loads(fetch(web["web"] + f"api/devices/{device.name}")[1])
    assert detail["values"] and "identity" in detail


def page_state(driver) -> dict[str, str]:
    return driver.execute_script(
        "return Object.fromEntries(window.fleet.visibleNames().map(n => [n, window.fleet.stateOf(n)]))")


def test_page_in_chromium_on_the_docker_backend(fleet, tmp_path: Path) -> None:
    backend, applied, _path = fleet
    names = sorted(d.name for d in applied.devices)
    modbus = next(d.name for d in applied.devices if d.kind == "modbus")
    enip = next(d.name for d in applied.devices if d.kind == "enip")
    with chromium(tmp_path) as driver:
        driver.get(read_web(backend.state.root)["web"])
        driver.execute_async_script("window.fleet.ready.then(arguments[0])")
        until(lambda: page_state(driver) == dict.fromkeys(names, "healthy"), 60, "all healthy on the page")
        driver.execute_script(f"window.fleet.select('{enip}')")  # its identity and values, live
        until(lambda: driver.execute_script("return window.fleet.valueUpdates || 0") >= 2, 60, "live values")
        assert "1756-L61" in driver.find_element("id", "identity").text
        with paused(backend, modbus):
            until(lambda: page_state(driver) == {enip: "healthy", modbus: "down"}, 60, "the paused one down")
            screenshot(driver, tmp_path, "fleet-page-docker.png")
        until(lambda: page_state(driver) == dict.fromkeys(names, "healthy"), 60, "healthy again")


def test_status_watch_on_the_docker_backend(fleet, tmp_path: Path) -> None:
    backend, applied, path = fleet
    modbus = next(d.name for d in applied.devices if d.kind == "modbus")
    enip = next(d.name for d in applied.devices if d.kind == "enip")
    argv = [sys.executable, "-c", "import sys; from fleet.cli import main; sys.exit(main())",
            "status", str(path), "--state-dir", str(backend.state.root), "--watch", "--count", "3",
            "--interval", "0.5"]

    def down() -> bool:
        from fleet.store import open_store

        with open_store(backend.state.root / "health.sqlite") as store:
            last = store.history([modbus], latencies=False)[modbus].last
        return last is not None and not last.ok

    with paused(backend, modbus):
        until(down, 60, "the poller records the paused device down")
        raw = run_in_pty(argv, timeout=120)
    assert raw.count("\x1b[1A") >= 3 or raw.count("\x1b[2K") >= 3  # redrawn in place
    text = ANSI.sub("", raw)
    title = f"fleet {backend.plan.fleet.name}: 1/2 healthy"
    assert text.count(title) >= 3 and "p50" in text and "restarts in the last minute" in text
    last = text.rsplit(title, 1)[1]
    order = re.findall(rf"\b({modbus}|{enip})\b", last)
    assert order[:2] == [modbus, enip]  # worst first


def test_writes_need_the_token_from_ups_environment_on_the_docker_backend(fleet) -> None:
    backend, applied, _path = fleet
    modbus = next(d.name for d in applied.devices if d.kind == "modbus")
    url = read_web(backend.state.root)["web"] + f"api/devices/{modbus}/"
    assert not (backend.state.root / "web-token").exists()  # the environment's token, not a file's
    for given, status in ((None, 401), ("not-" + TOKEN, 401), (TOKEN, 200)):
        assert post_json(url + "write", {"target": "40004", "value": "9"}, given)[0] == status, given
    values = json.loads(fetch(url.rstrip("/"))[1])["values"]
    assert {v["name"]: v["values"] for v in values}["40001-40010"][3] == 9
    for what, body in (("fault", {"kind": "offline", "for": "30s"}), ("clear", {})):
        for given, status in ((None, 401), ("not-" + TOKEN, 401), (TOKEN, 200)):
            assert post_json(url + what, body, given)[0] == status, (what, given)
