"""The fleet page and /metrics on the docker backend: the health poller's container serves
them at its own address on the fleet's bridge (the host reaches it there), and gathers each
device container's own /metrics (at its device's address, port 9179)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fleet.metrics import WORKER_PORT
from fleet.web.serve import read_web
from tests.fleet_support import until
from tests.test_fleet_docker import device_image, docker_fleet, fleet_plan, free_subnet, wait_all_healthy
from tests.web_support import fetch

pytestmark = [pytest.mark.docker, pytest.mark.slow]
__all__ = ["device_image"]  # the session fixture, shared


@pytest.fixture
def fleet(docker_client, device_image, tmp_path: Path) -> Iterator[tuple]:
    name = f"m{uuid.uuid4().hex[:8]}"
    plan = fleet_plan(name, free_subnet(docker_client, "172.29.0.0/16"), device_image, enip=1, modbus=1)
    with docker_fleet(docker_client, tmp_path / name, plan) as backend:
        applied = backend.up()
        assert [r.error for r in wait_all_healthy(applied.devices) if not r.ok] == []
        yield backend, applied


def samples(text: str) -> dict[str, list]:
    out: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append(sample)
    return out


def test_metrics_and_page_on_the_docker_backend(fleet) -> None:
    backend, applied = fleet
    until(lambda: read_web(backend.state.root) is not None, 60, "the poller's web address")
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
