"""Watching a big fleet (issue 16): a real fleet of N devices (half ENIP, half Modbus, process
backend) brought up with `cpppo-fleet up`, then its fleet page loaded in headless Chromium
(Debian's chromium + chromium-driver, selenium) and its /metrics scraped, by this script and by
a real Prometheus (Debian's prometheus) started here.  The peer is the same fleet of --peer
devices (default 100), measured in the same run.

    flock /work/notes/big.lock python benchmarks/bench_fleet_page.py            # N = 10,000
    python benchmarks/bench_fleet_page.py --n 1000 --peer 100

Measured, for each fleet:
  latency: the median of the devices' last poll latency in `status --json` (the supervised
        poller's, polls spread over the interval), and of one sweep from here with every
        poll started at once (as before the spread) and one spread as the poller does;
  page: navigation start to the first drawing of the grid with every device in it (the
        page's own ``performance.now()`` at its first render), the drawing itself, a redraw,
        and selenium's get() to first render;
  /metrics: the time to answer one scrape (median of --scrapes, from this process), its size;
  Prometheus: ``scrape_duration_seconds`` of the fleet's target (median of its scrapes over
        --prometheus seconds at --scrape-interval) and ``scrape_samples_scraped``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.fleet_scale import fleet_toml  # noqa: E402
from fleet.config import load  # noqa: E402
from fleet.plan import expand  # noqa: E402

CLI = [sys.executable, "-c", "from fleet.cli import main; main()"]


def get(url: str, timeout: float = 30.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as answer:
        return answer.read()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chromium(tmp: Path) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                f"--user-data-dir={tmp / 'chromium-profile'}", "--window-size=1600,1000"):
        options.add_argument(arg)
    options.binary_location = shutil.which("chromium")
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    driver.set_script_timeout(120)
    return driver


def page(driver: Any, url: str, n: int, shots: Path | None) -> dict[str, float]:
    begun = time.monotonic()
    driver.get(url)
    driver.execute_async_script("window.fleet.ready.then(arguments[0])")
    deadline = time.monotonic() + 120
    while driver.execute_script("return window.fleet.renders") < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    loaded = time.monotonic() - begun
    timing = driver.execute_script("return {rendered: fleet.firstRenderAt, draw: fleet.firstRenderMs, "
                                   "shown: fleet.visibleNames().length}")
    if timing["shown"] != n:
        raise SystemExit(f"the page shows {timing['shown']} devices, not {n}")
    deadline = time.monotonic() + 60
    while driver.execute_script("return window.fleet.updates") < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    if shots is not None:
        driver.save_screenshot(str(shots / f"fleet-page-{n}.png"))
    return {"navigation to first render (ms)": round(timing["rendered"], 1),
            "first draw (ms)": round(timing["draw"], 1),
            "redraw (ms)": round(driver.execute_script("return window.fleet.lastRenderMs"), 1),
            "get() to first render (s)": round(loaded, 3)}


def prometheus(metrics: str, tmp: Path, seconds: float, interval: float) -> dict[str, float]:
    binary = shutil.which("prometheus")
    if binary is None:
        return {}
    port = free_port()
    config = tmp / "prometheus.yml"
    config.write_text(json.dumps({"global": {"scrape_interval": f"{interval:g}s",
                                             "scrape_timeout": f"{interval:g}s"},
                                  "scrape_configs": [{"job_name": "fleet", "static_configs": [
                                      {"targets": [urllib.parse.urlsplit(metrics).netloc]}]}]}))
    with open(tmp / "prometheus.log", "w") as log:
        proc = subprocess.Popen([binary, f"--config.file={config}", f"--storage.tsdb.path={tmp / 'tsdb'}",
                                 f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                                stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
    try:
        def query(text: str) -> list[dict[str, Any]]:
            try:
                encoded = urllib.parse.urlencode({"query": text})
                answer = get(f"http://127.0.0.1:{port}/api/v1/query?{encoded}", 5)
            except OSError:  # not ready yet
                return []
            return json.loads(answer)["data"]["result"]

        deadline = time.monotonic() + 120
        while not query("scrape_duration_seconds") and time.monotonic() < deadline:
            time.sleep(0.5)  # the first scrape
        time.sleep(seconds)
        result = query(f"scrape_duration_seconds[{int(seconds) + 5}s]")
        durations = [float(v) for _t, v in result[0]["values"]] if result else []
        samples = query("scrape_samples_scraped")
        up = query("count(cpppo_fleet_device_up == 1)")
        return {"prometheus scrapes": len(durations),
                "prometheus scrape p50 (s)": round(statistics.median(durations), 3) if durations else -1,
                "prometheus scrape max (s)": round(max(durations), 3) if durations else -1,
                "samples per scrape": float(samples[0]["value"][1]) if samples else -1,
                "devices up in prometheus": float(up[0]["value"][1]) if up else 0}
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def sweeps(devices: Any, spread: float) -> tuple[float, float]:
    """Median latency of one sweep from this process (on open connections) with every poll
    started at once (the poller's concurrency limit, 200), and of one spread over ``spread``
    seconds at each device's offset (as the supervised poller does)."""
    import asyncio

    from cpppo.server.hosting import new_event_loop
    from fleet.poller import Poller

    async def run() -> tuple[float, float]:
        poller = Poller(5.0, 200)
        await poller.sweep(devices)  # connect
        at_once = await poller.sweep(devices)
        spread_out = await poller.sweep(devices, spread)
        await poller.close()
        return tuple(statistics.median(r.latency for r in rs if r.ok) for rs in (at_once, spread_out))

    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(run())


def one(n: int, octet: int, per_worker: int, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    path = tmp / "fleet.toml"
    path.write_text(fleet_toml(n, per_worker, octet))
    state = tmp / "state"
    out: dict[str, Any] = {"devices": n}
    try:
        begun = time.monotonic()
        proc = subprocess.run([*CLI, "up", str(path), "--state-dir", str(state), "--timeout", "600"],
                              capture_output=True, text=True, timeout=900)
        out["up to all healthy (s)"] = round(time.monotonic() - begun, 1)
        if proc.returncode != 0:
            raise SystemExit((proc.stdout + proc.stderr).strip().splitlines()[-1])
        status = json.loads(subprocess.run([*CLI, "status", str(path), "--state-dir", str(state), "--json"],
                                           capture_output=True, text=True, timeout=300).stdout)
        metrics, web = status["metrics"], status["web"]
        plan = expand(load(path))
        interval = plan.fleet.health_interval
        time.sleep(2 * interval)  # two spread sweeps after up's settling ones
        status = json.loads(subprocess.run([*CLI, "status", str(path), "--state-dir", str(state), "--json"],
                                           capture_output=True, text=True, timeout=300).stdout)
        last = [d["latency"] for d in status["devices"] if d.get("latency") is not None]
        out["poll latency in status (last polls, p50, ms)"] = round(statistics.median(last) * 1000, 2)
        at_once, spread_out = sweeps(plan.devices, interval - plan.fleet.health_timeout)
        out["poll latency from here, all at once (p50, ms)"] = round(at_once * 1000, 2)
        out["poll latency from here, spread (p50, ms)"] = round(spread_out * 1000, 2)
        times, size = [], 0
        for _ in range(args.scrapes):
            begun = time.monotonic()
            size = len(get(metrics))
            times.append(time.monotonic() - begun)
        out["/metrics answer p50 (s)"] = round(statistics.median(times), 3)
        out["/metrics size (kB)"] = round(size / 1000, 1)
        out.update(prometheus(metrics, tmp, args.prometheus, args.scrape_interval))
        driver = chromium(tmp)
        try:
            page(driver, web, n, None)  # a first load warms Chromium's caches; the second is measured
            out.update(page(driver, web, n, args.screenshots))
        finally:
            driver.quit()
    finally:
        subprocess.run([*CLI, "down", str(path), "--state-dir", str(state)], capture_output=True, timeout=300)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="devices (default 10,000)")
    parser.add_argument("--peer", type=int, default=100, help="devices of the peer fleet (default 100)")
    parser.add_argument("--per-worker", type=int, default=1000, help="devices per worker process")
    parser.add_argument("--scrapes", type=int, default=5, help="/metrics fetches timed (default 5)")
    parser.add_argument("--prometheus", type=float, default=30.0, help="seconds of Prometheus scrapes")
    parser.add_argument("--scrape-interval", type=float, default=2.0, help="Prometheus' (and its timeout)")
    parser.add_argument("--screenshots", type=Path, help="save the page of each fleet here")
    args = parser.parse_args()
    rows = []
    for n, octet in ((args.peer, 94), (args.n, 93)):
        with tempfile.TemporaryDirectory(prefix=f"fleetpage{n}-") as tmp:
            rows.append(one(n, octet, min(args.per_worker, n), args, Path(tmp)))
    peer, big = rows
    key = "navigation to first render (ms)"
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(json.dumps({"uptime": uptime, "peer": peer, "fleet": big,
                      "first render ratio to peer": round(big[key] / max(peer[key], 0.1), 2)}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
