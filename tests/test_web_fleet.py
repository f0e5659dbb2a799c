"""The fleet page and /metrics on a real fleet (process backend): where ``up`` and ``status``
say they are, what /metrics holds, the file_sd targets, token-guarded writes (no token, wrong
token, right token), bad requests; and the page in headless Chromium (grid, filters, live
values, writes), plus a synthetic 10,000-device fleet whose render time is measured."""

from __future__ import annotations

import json
import os
import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fleet.plan import Plan, PlannedDevice
from fleet.store import HealthResult
from fleet.web.app import make_app
from fleet.web.view import FleetView
from tests.fleet_support import CliFleet, until
from tests.web_support import ARTIFACTS, chromium, fetch, live_fleet, post_json, screenshot, serving

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CliFleet]:
    with live_fleet(tmp_path_factory.mktemp("webfleet"), f"web{os.getpid()}", 0) as fleet:
        yield fleet


def web(fleet: CliFleet) -> str:
    return fleet.status()["web"]


def token(fleet: CliFleet) -> str:
    return (fleet.state / "web-token").read_text().strip()


def metric_samples(url: str) -> dict[str, list[Any]]:
    status, body, headers = fetch(url)
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    out: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            out.setdefault(sample.name, []).append(sample)
    return out


def test_up_and_status_give_the_page_and_metrics(live: CliFleet) -> None:
    out = live.cli("up")
    status = live.status()
    assert status["web"].startswith("http://127.0.0.1:") and status["metrics"] == status["web"] + "metrics"
    assert f"page:   {status['web']}" in out and f"metrics: {status['metrics']}" in out
    code, page, headers = fetch(status["web"])
    assert code == 200 and headers["Content-Type"].startswith("text/html") and b"fleet.js" in page
    assert (live.state / "web-token").stat().st_mode & 0o777 == 0o600


def test_metrics_per_device_worker_and_fleet(live: CliFleet) -> None:
    names = {d.name for d in live.plan.devices}
    url = live.status()["metrics"]
    until(lambda: len(metric_samples(url).get("cpppo_fleet_worker_requests_total", [])) >= 3, 20,
          "worker request counters")
    samples = metric_samples(url)
    last_checks = samples["cpppo_fleet_device_last_check_timestamp_seconds"]
    up = {s.labels["device"]: s for s in samples["cpppo_fleet_device_up"]}
    assert set(up) == names and all(s.value == 1.0 for s in up.values())
    planned = {d.name: d for d in live.plan.devices}
    assert all(s.labels["kind"] == planned[n].kind and s.labels["address"] == planned[n].endpoint
               for n, s in up.items())
    counts = {s.labels["device"]: s.value for s in samples["cpppo_fleet_device_poll_latency_seconds_count"]}
    assert set(counts) == names and min(counts.values()) >= 1
    assert {s.labels["device"] for s in last_checks} == names
    assert all(abs(s.value - time.time()) < 60 for s in last_checks)
    restarts = {s.labels["device"]: s.value for s in samples["cpppo_fleet_device_restarts_total"]}
    assert restarts == dict.fromkeys(names, 0)
    assert {s.value for s in samples["cpppo_fleet_device_faults_active"]} == {0.0}
    states = {s.labels["state"]: s.value for s in samples["cpppo_fleet_devices"]}
    assert states["healthy"] == len(names) and states["down"] == 0
    workers = {d.worker for d in live.plan.devices}
    worker_up = {s.labels["worker"]: s.value for s in samples["cpppo_fleet_worker_up"]}
    assert worker_up == dict.fromkeys(workers, 1.0)
    requests = {(s.labels["kind"], s.labels["code"]) for s in samples["cpppo_fleet_worker_requests_total"]}
    assert {("enip", "0x4c"), ("modbus", "0x03")} <= requests  # Read Tag; Read Holding Registers
    assert {s.labels["kind"] for s in samples["cpppo_fleet_worker_connections"]} == {"enip", "modbus"}
    targets = json.loads((live.state / "file_sd.json").read_text())
    assert sorted(t["targets"][0] for t in targets) == sorted(d.endpoint for d in live.plan.devices)
    assert {t["labels"]["device"] for t in targets} == names


def test_error_replies_are_counted(live: CliFleet) -> None:
    url = web(live) + "api/devices/line1/write"
    assert post_json(url, {"target": "SCADA[99]", "value": "1"}, token(live))[0] == 502  # out of range
    url = live.status()["metrics"]

    def counted() -> bool:  # the workers' figures are gathered every health interval
        errors = metric_samples(url).get("cpppo_fleet_worker_error_replies_total", [])
        return any(s.labels["kind"] == "enip" and s.labels["code"] == "0x4d" and s.value >= 1 for s in errors)

    until(counted, 10, "the Write Tag error reply counted")


@pytest.mark.parametrize(("device", "target", "value", "shown"), [
    ("line1", "SCADA[3]", "42", ("SCADA", 3, 42)), ("line2", "Speed", "2.5", ("Speed", 0, 2.5)),
    ("pump1", "40002", "99", ("40001-40010", 1, 99)), ("pump2", "1", "1", ("1-8", 0, True))])
def test_writes_need_the_right_token(live: CliFleet, device: str, target: str, value: str,
                                     shown: tuple[str, int, Any]) -> None:
    url = web(live) + f"api/devices/{device}/write"

    def current() -> Any:
        code, body, _ = fetch(web(live) + f"api/devices/{device}")
        assert code == 200, body
        values = {v["name"]: v["values"] for v in json.loads(body)["values"]}
        return values[shown[0]][shown[1]]

    before = current()
    status, body = post_json(url, {"target": target, "value": value}, None)
    assert status == 401 and "Authorization: Bearer" in body["error"]
    status, body = post_json(url, {"target": target, "value": value}, "not-" + token(live))
    assert status == 401 and body["error"] == "wrong write token"
    assert current() == before  # nothing changed
    status, body = post_json(url, {"target": target, "value": value}, token(live))
    assert status == 200 and body["ok"] is True, body
    assert current() == shown[2]


def test_faults_from_the_page_need_the_right_token(live: CliFleet) -> None:
    base, secret = web(live), token(live)
    url = base + "api/devices/pump2/"

    def faults_active() -> float:
        samples = metric_samples(live.status()["metrics"])["cpppo_fleet_device_faults_active"]
        return {s.labels["device"]: s.value for s in samples}["pump2"]

    for what, body in (("fault", {"kind": "offline", "for": "60s"}), ("clear", {})):
        for given, status in ((None, 401), ("not-" + secret, 401)):
            assert post_json(url + what, body, given)[0] == status
    assert "pump2" not in live.status()["faults"] and faults_active() == 0
    assert post_json(url + "fault", {"kind": "sideways"}, secret)[0] == 400
    status, body = post_json(url + "fault", {"kind": "offline", "for": "60s"}, secret)
    assert status == 200 and body["done"] == ["pump2"], body
    try:
        until(lambda: live.devices()["pump2"]["state"] == "faulted", 20, "pump2 faulted in status")
        until(lambda: faults_active() == 1, 20, "the faults gauge at 1")
        states = json.loads(fetch(base + "api/status")[1])
        assert states["faults"][[d[0] for d in states["devices"]].index("pump2")] == "offline"
    finally:
        status, body = post_json(url + "clear", {}, secret)
    assert status == 200 and body["done"] == ["pump2"]
    until(lambda: faults_active() == 0 and live.devices()["pump2"]["state"] == "healthy", 30, "cleared")


def test_a_page_without_a_token_is_read_only(live: CliFleet) -> None:
    with serving(make_app(FleetView(live.plan), token=None, control=live.state / "control")) as url:
        for given in (None, token(live)):
            for what, body in (("write", {"target": "SCADA[0]", "value": "5"}),
                               ("fault", {"kind": "offline"}), ("clear", {})):
                status, answer = post_json(url + f"api/devices/line1/{what}", body, given)
                assert status == 403 and "read-only" in answer["error"]
        assert "line1" not in live.status()["faults"]
        assert fetch(url + "metrics")[0] == 404  # no metrics given to this app


def test_the_write_token_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """$CPPPO_FLEET_TOKEN, set for ``up``, is the fleet's write token: no token file is made."""
    secret = "env-" + os.urandom(8).hex()
    monkeypatch.setenv("CPPPO_FLEET_TOKEN", secret)
    with live_fleet(tmp_path, f"envtok{os.getpid()}", 55) as fleet:
        url = fleet.status()["web"] + "api/devices/pump1/write"
        assert not (fleet.state / "web-token").exists()
        for given, status in ((None, 401), ("not-" + secret, 401), (secret, 200)):
            assert post_json(url, {"target": "40003", "value": "5"}, given)[0] == status, given


def test_bad_requests_get_4xx_and_change_nothing(live: CliFleet) -> None:
    base, secret = web(live), token(live)
    auth = {"Authorization": f"Bearer {secret}"}
    for path in ("static/../web-token", "static/%2e%2e/web-token", "static/..%2fweb-token", "web-token",
                 "api/devices/nope"):
        status, body, _ = fetch(base + path)
        assert 400 <= status < 500 and secret.encode() not in body, path
    assert fetch(base + "api/status", method="PUT")[0] == 405
    assert fetch(base + "api/devices/line1/write", headers=auth, method="DELETE")[0] == 405
    status, _, _ = fetch(base + "api/devices/line1/write", b"x" * 100_000,
                         {**auth, "Content-Type": "application/json"}, "POST")
    assert status == 413
    status, body = post_json(base + "api/devices/line1/write", {"target": "NOPE", "value": "1"}, secret)
    assert status == 400 and "no tag" in body["error"]
    status, body = post_json(base + "api/devices/pump1/write", {"target": "30001", "value": "1"}, secret)
    assert status == 400 and "read-only" in body["error"]


# --- the page in Chromium ----------------------------------------------------------------------

def page_state(driver: Any) -> dict[str, str]:
    return driver.execute_script(
        "return Object.fromEntries(window.fleet.visibleNames().map(n => [n, window.fleet.stateOf(n)]))")


def test_page_in_chromium(live: CliFleet, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    names = [d.name for d in live.plan.devices]
    frozen = live.pids()[live.plan.devices[0].worker]  # line1 and line2's worker
    with chromium(tmp_path) as driver:
        driver.get(web(live))
        driver.execute_async_script("window.fleet.ready.then(arguments[0])")
        until(lambda: page_state(driver) == dict.fromkeys(names, "healthy"), 20, "all healthy on the page")
        screenshot(driver, tmp_path, "fleet-page-healthy.png")
        os.kill(frozen, signal.SIGSTOP)  # a hung worker: its devices stop answering
        try:
            until(lambda: page_state(driver) == {"line1": "down", "line2": "down", "pump1": "healthy",
                                                 "pump2": "healthy"}, 20, "the hung worker's devices down")
            Select(driver.find_element(By.ID, "state")).select_by_visible_text("down")
            until(lambda: sorted(page_state(driver)) == ["line1", "line2"], 5, "the state filter")
            screenshot(driver, tmp_path, "fleet-page-down.png")
        finally:
            os.kill(frozen, signal.SIGCONT)
        Select(driver.find_element(By.ID, "state")).select_by_index(0)
        until(lambda: page_state(driver) == dict.fromkeys(names, "healthy"), 30, "healthy again")
        driver.find_element(By.ID, "filter").send_keys("pump*")
        until(lambda: sorted(page_state(driver)) == ["pump1", "pump2"], 5, "the name filter")
        Select(driver.find_element(By.ID, "kind")).select_by_value("enip")
        until(lambda: page_state(driver) == {}, 5, "name and kind filters together")
        driver.find_element(By.ID, "filter").clear()
        driver.find_element(By.ID, "filter").send_keys("line")
        until(lambda: sorted(page_state(driver)) == ["line1", "line2"], 5, "a substring filter")

        driver.execute_script("window.fleet.select('line2')")  # the device's values, live
        until(lambda: driver.execute_script("return window.fleet.valueUpdates || 0") >= 2, 20, "live values")
        assert "1756-L61" in driver.find_element(By.ID, "identity").text
        status, _ = post_json(web(live) + "api/devices/line2/write", {"target": "SCADA[5]", "value": "1234"},
                              token(live))
        assert status == 200
        until(lambda: "1234" in driver.find_element(By.ID, "values").text, 20, "the written value shown")

        driver.find_element(By.ID, "target").send_keys("SCADA[6]")  # a write from the page
        driver.find_element(By.ID, "value").send_keys("777")
        driver.find_element(By.ID, "token").clear()
        driver.find_element(By.ID, "send").click()
        until(lambda: "401" in driver.find_element(By.ID, "wresult").text, 10, "no token: refused")
        driver.find_element(By.ID, "token").send_keys("wrong")
        driver.find_element(By.ID, "send").click()
        until(lambda: "wrong write token" in driver.find_element(By.ID, "wresult").text, 10, "wrong token")
        driver.find_element(By.ID, "token").clear()
        driver.find_element(By.ID, "token").send_keys(token(live))
        driver.find_element(By.ID, "send").click()
        until(lambda: "wrote SCADA[6] = 777" in driver.find_element(By.ID, "wresult").text, 10, "the write")
        until(lambda: "777" in driver.find_element(By.ID, "values").text, 20, "the page's own write shown")
        screenshot(driver, tmp_path, "fleet-page-device.png")

        Select(driver.find_element(By.ID, "fkind")).select_by_visible_text("offline")  # a fault button
        driver.find_element(By.ID, "inject").click()
        until(lambda: "injected on 1 device" in driver.find_element(By.ID, "fresult").text, 10, "injected")
        try:
            until(lambda: driver.execute_script("return window.fleet.stateOf('line2')") == "faulted", 20,
                  "line2 faulted on the page")
            screenshot(driver, tmp_path, "fleet-page-faulted.png")
        finally:
            driver.find_element(By.ID, "clear").click()
            until(lambda: "cleared on 1 device" in driver.find_element(By.ID, "fresult").text, 10, "cleared")
        until(lambda: driver.execute_script("return window.fleet.stateOf('line2')") == "healthy", 30,
              "line2 healthy again")


def synthetic_view(count: int, seed: int = 16) -> tuple[FleetView, dict[str, str]]:
    """A view of ``count`` devices (none running), fed random results: a status source for the page."""
    from fleet.config import FleetSettings
    from fleet.kinds import EnipOptions, ModbusOptions

    enip, modbus = EnipOptions(tags=("SCADA=INT[10]",)), ModbusOptions(registers=("40001-40010=0",))
    devices = tuple(PlannedDevice(f"dev{n:05}", "enip" if n % 3 else "modbus",
                                  f"10.{n >> 16}.{n >> 8 & 255}.{n & 255}", 44818 if n % 3 else 502,
                                  f"w{n // 100:03}", 0, n, (), enip if n % 3 else modbus)
                    for n in range(count))
    # a long health interval: the results stay fresh however slowly a loaded machine loads the page
    view = FleetView(Plan(fleet=FleetSettings(name="synthetic", health_interval=3600.0), devices=devices,
                          workers=()))
    rng = random.Random(seed)
    now = time.time()
    expected = {}
    for d in devices:
        roll = rng.random()
        if roll < 0.03:
            expected[d.name] = "starting"
            continue
        ok = roll > 0.1
        for k in range(5):
            view.record(HealthResult(d.name, ok, rng.uniform(0.001, 0.02) if ok else None,
                                     None if ok else "no answer", now - 4 + k))
        expected[d.name] = "healthy" if ok else "down"
    return view, expected


def load_page(driver: Any, url: str, expected: dict[str, str]) -> dict[str, float]:
    """Load the page; its timings (ms after navigation began, and of drawing)."""
    begun = time.monotonic()
    driver.get(url)
    driver.execute_async_script("window.fleet.ready.then(arguments[0])")
    until(lambda: driver.execute_script("return window.fleet.renders") >= 1, 30, "the first render")
    loaded = time.monotonic() - begun
    timing = driver.execute_script("return {draw: window.fleet.firstRenderMs, ready: window.fleet.loadedAt, "
                                   "rendered: window.fleet.firstRenderAt}")
    assert page_state(driver) == expected
    until(lambda: driver.execute_script("return window.fleet.updates") >= 2, 30, "live updates")
    return {"loaded_s": round(loaded, 3), "first_draw_ms": round(timing["draw"], 1),
            "redraw_ms": round(driver.execute_script("return window.fleet.lastRenderMs"), 1),
            "status_loaded_ms": round(timing["ready"], 1), "first_render_ms": round(timing["rendered"], 1)}


def test_page_with_10000_devices(tmp_path: Path) -> None:
    """Timings are measured and reported, never asserted; the 100-device page, loaded in the
    same run, is the peer."""
    view, expected = synthetic_view(10_000)
    small, small_expected = synthetic_view(100)
    with chromium(tmp_path, 1600, 1000) as driver:
        with serving(make_app(small, token=None)) as url:
            peer = load_page(driver, url, small_expected)
        with serving(make_app(view, token=None)) as url:
            big = load_page(driver, url, expected)
            screenshot(driver, tmp_path, "fleet-page-10000.png")
    ratio = big["first_render_ms"] / max(peer["first_render_ms"], 0.1)
    report = {"devices": 10_000, **big, "peer_100_devices": peer,
              "first_render_ratio_to_peer": round(ratio, 2)}
    print("10,000-device page:", report)
    (tmp_path / "render-10000.json").write_text(json.dumps(report))
    try:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / "render-10000.json").write_text(json.dumps(report))
    except OSError:
        pass


def test_file_sd_quotes_whatever_a_name_holds(tmp_path: Path) -> None:
    """file_sd.json is put together a line per group (fast at 100,000 devices); a name with
    quotes, a backslash or other scripts still reads back exactly, and every device with an
    address is a target."""
    from fleet.config import FleetSettings
    from fleet.kinds import EnipOptions
    from fleet.metrics import write_file_sd

    names = ['tank "A"', "back\\slash", "Pumpe-Ä1", "tab\there", "plain"]
    devices = tuple(PlannedDevice(name, "enip", f"127.0.0.{n + 1}", 44818, f"w{n}", 0, n, (),
                                  EnipOptions(tags=("X=INT",))) for n, name in enumerate(names))
    plan = Plan(fleet=FleetSettings(name='plant "7"'), devices=devices, workers=())
    write_file_sd(plan, tmp_path / "file_sd.json")
    groups = json.loads((tmp_path / "file_sd.json").read_text())
    assert groups == [{"targets": [f"127.0.0.{n + 1}:44818"],
                       "labels": {"device": name, "kind": "enip", "fleet": 'plant "7"', "worker": f"w{n}"}}
                      for n, name in enumerate(names)]
