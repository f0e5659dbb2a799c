"""The fleet's /metrics without a fleet: the text written straight from a synthetic view
(prometheus-client's parser reads it back; on a small view it says what prometheus-client's own
families say), at 20,000 devices; and the render off the event loop, shared by scrapers, while
the poller goes on recording."""

from __future__ import annotations

import asyncio
import gzip
import random
import threading
from typing import Any

import aiohttp
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from fleet.metrics import LATENCY_BUCKETS, LATENCY_HELP, FleetCollector, Latencies, WorkerCollector
from fleet.store import HealthResult
from fleet.web.app import accepts_gzip, make_app
from fleet.web.serve import Exposition
from fleet.web.view import STATES, FleetView
from tests.test_web_fleet import synthetic_view
from tests.web_support import client_exposition

WORKER_TEXT = generate_latest(CollectorRegistry()).decode()  # an empty worker: no families


def fed(count: int, seed: int = 20) -> tuple[FleetView, dict[str, str], dict[str, list[float]]]:
    """A synthetic view with a latency histogram, fed 1..4 latencies per answering device."""
    view, expected = synthetic_view(count, seed)
    view.histogram = Latencies()
    rng = random.Random(seed)
    observed: dict[str, list[float]] = {}
    for name, state in expected.items():
        if state == "healthy":
            choices = (0.0005, 0.001, 0.003, 0.02, 0.4, 3.0)  # on bounds, between them, beyond them
            observed[name] = [rng.choice(choices) for _ in range(rng.randint(1, 4))]
            for latency in observed[name]:
                view.histogram.observe(name, latency)
    return view, expected, observed


def key(sample: Any) -> tuple[str, list[tuple[str, str]]]:
    return sample.name, sorted(sample.labels.items())


def families(body: bytes) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(body.decode())}


@pytest.mark.slow
def test_a_scrape_of_20000_devices_is_well_formed() -> None:
    view, expected, observed = fed(20_000)
    odd = next(iter(observed))  # a name to escape: quote, backslash, newline
    weird = 'dev"odd\\name\nx'
    view.devices = {(weird if n == odd else n): d for n, d in view.devices.items()}
    view.last[weird], view.histogram.counts[weird] = view.last[odd], view.histogram.counts[odd]
    view.histogram.sums[weird] = view.histogram.sums[odd]
    expected[weird], observed[weird] = expected.pop(odd), observed.pop(odd)
    collector = FleetCollector(view)
    collector.set_workers({"w000": WORKER_TEXT, "w001": None})
    got = families(collector.render())

    assert got["cpppo_fleet_device_up"].type == "gauge"
    up = {s.labels["device"]: s for s in got["cpppo_fleet_device_up"].samples}
    assert set(up) == set(expected)
    assert {n: s.value for n, s in up.items()} == {n: float(e == "healthy") for n, e in expected.items()}
    assert all(s.labels["address"] == view.devices[n].endpoint and s.labels["kind"] == view.devices[n].kind
               for n, s in up.items())
    histogram = got["cpppo_fleet_device_poll_latency_seconds"]
    assert histogram.type == "histogram" and histogram.documentation == LATENCY_HELP
    buckets: dict[str, list[tuple[float, float]]] = {}
    counts, sums = {}, {}
    for s in histogram.samples:
        name = s.labels["device"]
        if s.name.endswith("_bucket"):
            buckets.setdefault(name, []).append((float(s.labels["le"]), s.value))
        elif s.name.endswith("_count"):
            counts[name] = s.value
        else:
            sums[name] = s.value
    assert set(buckets) == set(counts) == set(sums) == set(observed)  # only devices that answered
    for name, values in observed.items():
        bounds = [*LATENCY_BUCKETS, float("inf")]
        assert buckets[name] == [(b, float(sum(v <= b for v in values))) for b in bounds], name
        assert counts[name] == len(values) and abs(sums[name] - sum(values)) < 1e-9
    last_checks = got["cpppo_fleet_device_last_check_timestamp_seconds"].samples
    checked = {s.labels["device"]: s.value for s in last_checks}
    assert checked == {n: view.last[n].time for n, e in expected.items() if e != "starting"}
    assert got["cpppo_fleet_device_restarts"].type == "counter"
    assert {s.value for s in got["cpppo_fleet_device_restarts"].samples} == {0.0}
    assert len(got["cpppo_fleet_device_faults_active"].samples) == len(expected)
    states = {s.labels["state"]: s.value for s in got["cpppo_fleet_devices"].samples}
    assert states == {state: float(list(expected.values()).count(state)) for state in STATES}
    assert {s.labels["worker"]: s.value for s in got["cpppo_fleet_worker_up"].samples} == {"w000": 1.0,
                                                                                             "w001": 0.0}


def test_the_text_says_what_prometheus_client_says() -> None:
    """prometheus-client's families of the same view, rendered by its generate_latest
    (:func:`tests.web_support.client_exposition`), parse to the very same families (names,
    types, help, samples) as ours."""
    view, _expected, _observed = fed(60)
    view.restarts = {view.plan.devices[0].worker: 2}
    view.faults = {view.plan.devices[1].name: ["drop 0.5"]}
    worker = CollectorRegistry()
    worker.register(WorkerCollector("w000", {}, []))
    collector = FleetCollector(view)
    collector.set_workers({"w000": generate_latest(worker).decode()})
    ours = families(collector.render())

    theirs = families(client_exposition(view, collector))
    assert ours.keys() == theirs.keys()
    for name, family in theirs.items():
        assert (ours[name].type, ours[name].documentation) == (family.type, family.documentation), name
        assert sorted(ours[name].samples, key=key) == sorted(family.samples, key=key), name
    assert any(s.value == 2.0 for s in ours["cpppo_fleet_device_restarts"].samples)


class SlowView(FleetView):
    """A view whose render stops half way through its devices until released."""

    halfway: threading.Event
    release: threading.Event

    def state(self, name: str, now: float) -> str:
        if name == self.stop_at and threading.current_thread() is not threading.main_thread():
            self.halfway.set()
            assert self.release.wait(60), "never released"
        return super().state(name, now)


def test_polls_go_on_while_a_scrape_renders() -> None:
    view, expected, _observed = fed(2_000)
    view.__class__ = SlowView
    assert isinstance(view, SlowView)
    view.halfway, view.release = threading.Event(), threading.Event()
    view.stop_at = list(view.devices)[1_000]
    exposition = Exposition(FleetCollector(view).render, view, max_age=3600.0)
    healthy = [n for n, e in expected.items() if e == "healthy"]

    async def main() -> None:
        from cpppo.server.aioweb import start_site

        runner, host, port = await start_site(make_app(view, metrics=exposition.get), "127.0.0.1", 0)
        url = f"http://{host}:{port}/metrics"
        try:
            async with aiohttp.ClientSession(auto_decompress=False) as session:
                async def scrape(encoding: str) -> tuple[bytes, str | None]:
                    async with session.get(url, headers={"Accept-Encoding": encoding}) as answer:
                        assert answer.status == 200
                        return await answer.read(), answer.headers.get("Content-Encoding")

                plain = asyncio.ensure_future(scrape("identity"))
                zipped = asyncio.ensure_future(scrape("gzip, deflate"))
                for _ in range(6000):  # bounded: the render thread reaches half way
                    if view.halfway.is_set():
                        break
                    await asyncio.sleep(0.01)
                assert view.halfway.is_set(), "the render never started"
                # the render is stuck half way: the poller's side goes on recording
                before = sum(view.histogram.counts[healthy[0]].tolist())
                for k, name in enumerate(healthy):
                    view.record(HealthResult(name, True, 0.002, None, 1e9 + k))
                    await asyncio.sleep(0)
                assert not plain.done() and not zipped.done() and exposition.renders == 0
                assert sum(view.histogram.counts[healthy[0]].tolist()) == before + 1
                assert all(view.last[n].time >= 1e9 for n in healthy)
                view.release.set()
                (body, plain_encoding), (packed, zip_encoding) = await asyncio.gather(plain, zipped)
                assert exposition.renders == 1  # both scrapes took the one render
                assert (plain_encoding, zip_encoding) == (None, "gzip") and gzip.decompress(packed) == body
                up = {s.labels["device"]: s.value for s in families(body)["cpppo_fleet_device_up"].samples}
                assert len(up) == len(expected)

                again, _ = await scrape("gzip")
                assert gzip.decompress(again) == body and exposition.renders == 1  # nothing changed
                view.record(HealthResult(healthy[0], False, None, "no answer", 2e9))  # a device goes down
                body, _ = await scrape("")
                up = {s.labels["device"]: s.value for s in families(body)["cpppo_fleet_device_up"].samples}
                assert exposition.renders == 2 and up[healthy[0]] == 0.0
        finally:
            view.release.set()
            await runner.cleanup()

    asyncio.run(main())


def test_accept_encoding() -> None:
    assert accepts_gzip("gzip") and accepts_gzip("deflate, gzip;q=0.5") and accepts_gzip("GZIP")
    assert not accepts_gzip("") and not accepts_gzip("identity") and not accepts_gzip("gzip;q=0")


def test_a_steady_scraper_finds_its_next_body_ready() -> None:
    """Two scrapes set a rhythm; the body (gzipped, as the scraper asks) is rendered ahead of
    the third, which takes it without a render of its own; a device going down is never served
    from before it."""
    view, expected, _observed = fed(200)
    exposition = Exposition(FleetCollector(view).render, view, max_age=0.5)
    healthy = [n for n, e in expected.items() if e == "healthy"]

    async def main() -> None:
        try:
            await exposition.get(True)
            await asyncio.sleep(1.6)  # a pause (the scraper's interval), past APART and max_age
            await exposition.get(True)
            assert exposition.renders == 2 and exposition.period is not None
            for _ in range(3000):  # bounded: wait for the render ahead of the third scrape
                if exposition.renders == 3:
                    break
                await asyncio.sleep(0.01)
            assert exposition.renders == 3 and exposition.gzipped is not None and exposition.gzipped.done()
            body = gzip.decompress(await exposition.get(True))
            assert exposition.renders == 3  # the third scrape took the body rendered ahead
            assert len(families(body)["cpppo_fleet_device_up"].samples) == len(expected)
            view.record(HealthResult(healthy[0], False, None, "no answer", 2e9))
            up = {s.labels["device"]: s.value
                  for s in families(await exposition.get())["cpppo_fleet_device_up"].samples}
            assert up[healthy[0]] == 0.0 and exposition.renders == 4
        finally:
            exposition.close()

    asyncio.run(main())
