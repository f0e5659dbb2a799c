"""Prometheus metrics of the fleet (prometheus-client, text exposition format).

The health poller serves ``/metrics`` (beside the fleet page, :mod:`fleet.web`):

    cpppo_fleet_device_up{device,kind,address}               1: the last poll succeeded
    cpppo_fleet_device_poll_latency_seconds{device}           histogram of successful polls
    cpppo_fleet_device_last_check_timestamp_seconds{device}   when the last poll ended
    cpppo_fleet_device_restarts_total{device}                 restarts of the device's worker
    cpppo_fleet_device_faults_active{device}                  injected faults in force (0: none)
    cpppo_fleet_devices{state}                                devices by state
    cpppo_fleet_worker_up{worker}                             1: the worker's own /metrics answered
    cpppo_fleet_worker_requests_total{worker,kind,code}       requests served, by CIP service / function code
    cpppo_fleet_worker_error_replies_total{worker,kind,code}  error (exception) replies among them
    cpppo_fleet_worker_connections{worker,kind}               client connections open now
    cpppo_fleet_device_io_connections{worker,device}          a Class 1 adapter's I/O connections open
    cpppo_fleet_device_io_packets_total{worker,device,direction}  its I/O packets, in (O->T) / out (T->O)
    cpppo_fleet_device_io_packets_per_second{worker,device,direction}  the same per second, last 5 s
    cpppo_fleet_device_io_timeouts_total{worker,device}       its connections timed out (and _refused,
                                                              _missing, _late, _dropped _total)

Each worker counts what it serves and serves its own small ``/metrics`` (:class:`WorkerCollector`,
bound when the worker starts, made at its first scrape, with the standard library's WSGI server,
not aiohttp: :func:`fleet.scrape.serve_metrics`):
on loopback at an ephemeral port recorded in ``<state>/metrics/<worker>.json`` (process
backend), or at its first device's address, port :data:`WORKER_PORT` (docker, where the
poller shares the devices' networks).  The poller scrapes them all when it is scraped and
re-emits their families with a ``worker`` label, so one target gives the whole fleet (a
Prometheus needs no per-worker discovery, and a dead worker shows as ``worker_up 0``).
:func:`write_file_sd` writes ``<state>/file_sd.json``: every device's address, for probing
the devices themselves (modbus_exporter, a blackbox prober).

The per-device families grow with the fleet (14 samples a device): :func:`device_exposition`
writes them as text straight from the poller's view, and :class:`fleet.web.serve.Exposition`
renders that in a thread and shares it between scrapes (the workers' families, a few per
worker, go through prometheus-client's :class:`FleetCollector`).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import os
from array import array
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from fleet.bulk import no_collections
from fleet.plan import Plan, PlannedDevice
from fleet.scrape import WORKER_PORT, worker_metrics_path
from fleet.web.view import STATES

# a handful of bounds for PLC latencies (a healthy device 1-5 ms, a loaded poller tens of ms, a
# struggling device up to the health timeout): 10 samples a device, not 15
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


# --- a worker -----------------------------------------------------------------------------------

class WorkerCollector(Collector):
    """Counters of the servers of one worker (``{device name: server handle}``), read at scrape
    time: ENIP counts CIP services (``Dispatcher.served/failed``), Modbus function codes."""

    def __init__(self, worker: str, servers: dict[str, Any], devices: list[PlannedDevice]) -> None:
        self.worker, self.servers, self.devices = worker, servers, devices  # the worker's lists: they grow

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily("cpppo_fleet_worker_requests", "Requests served, by CIP service "
                                       "or Modbus function code", labels=["kind", "code"])
        errors = CounterMetricFamily("cpppo_fleet_worker_error_replies", "Error replies (CIP status "
                                     "other than success, Modbus exception)", labels=["kind", "code"])
        connections = GaugeMetricFamily("cpppo_fleet_worker_connections", "Client connections open",
                                        labels=["kind"])
        served: dict[tuple[str, int], int] = {}
        failed: dict[tuple[str, int], int] = {}
        open_: dict[str, int] = {}
        kinds = {d.name: d.kind for d in list(self.devices)}
        for name, server in list(self.servers.items()):
            kind = kinds.get(name, "unknown")
            # an ENIP server counts in its dispatcher, a Modbus server in itself
            responder = getattr(server, "responder", None)
            counters = getattr(responder, "dispatcher", None) if responder is not None else server
            if counters is None or not hasattr(counters, "served"):
                continue
            sessions = getattr(server, "sessions", None)
            open_[kind] = open_.get(kind, 0) + len(sessions if sessions is not None else server.connections)
            for code, n in counters.served.items():
                served[kind, code] = served.get((kind, code), 0) + n
            for code, n in counters.failed.items():
                failed[kind, code] = failed.get((kind, code), 0) + n
        for (kind, code), n in sorted(served.items()):
            requests.add_metric([kind, f"0x{code:02x}"], n)
        for (kind, code), n in sorted(failed.items()):
            errors.add_metric([kind, f"0x{code:02x}"], n)
        for kind, n in sorted(open_.items()):
            connections.add_metric([kind], n)
        yield from (requests, errors, connections)
        yield from self._io()

    def _io(self) -> Iterator[Metric]:
        """Per Class 1 adapter: its connection manager's counters (``ConnectionManager.counters``)."""
        families = {name: cls(f"cpppo_fleet_device_io_{name}", help_, labels=labels)
                    for name, (cls, help_, labels) in IO_FAMILIES.items()}
        adapters = False
        for name, server in sorted(self.servers.items()):
            manager = getattr(getattr(server, "endpoint", None), "manager", None)
            if manager is None or not hasattr(manager, "counters"):
                continue
            counts, adapters = manager.counters(), True
            counts["timeouts"] = counts["timed_out"]
            families["connections"].add_metric([name], counts["connections"])
            families["packets"].add_metric([name, "in"], counts["received"])
            families["packets"].add_metric([name, "out"], counts["sent"])
            received, sent = manager.rates()
            families["packets_per_second"].add_metric([name, "in"], round(received, 1))
            families["packets_per_second"].add_metric([name, "out"], round(sent, 1))
            for counter in ("timeouts", "refused", "missing", "late", "dropped"):
                families[counter].add_metric([name], counts[counter])
        if adapters:  # (no empty families from workers without adapters)
            yield from families.values()


#: the Class 1 families of a worker's adapters: name -> (family, help, labels)
IO_FAMILIES: dict[str, tuple[type, str, list[str]]] = {
    "connections": (GaugeMetricFamily, "Class 1 I/O connections open", ["device"]),
    "packets": (CounterMetricFamily, "Class 1 I/O packets: in (O->T, from scanners), out (T->O)",
                ["device", "direction"]),
    "packets_per_second": (GaugeMetricFamily, "Class 1 I/O packets per second over the last 5 s: in, out",
                           ["device", "direction"]),
    "timeouts": (CounterMetricFamily, "Class 1 I/O connections closed for their scanner's silence",
                 ["device"]),
    "refused": (CounterMetricFamily, "Forward Opens refused", ["device"]),
    "missing": (CounterMetricFamily, "O->T packets missing (sequence gaps)", ["device"]),
    "late": (CounterMetricFamily, "O->T packets later than 1.5 RPI", ["device"]),
    "dropped": (CounterMetricFamily, "O->T packets dropped (stale sequence, wrong size)", ["device"]),
}


def io_figures(texts: dict[str, str | None]) -> dict[str, dict[str, float]]:
    """The Class 1 figures of each adapter, from its workers' scraped /metrics texts:
    device -> {connections, packets_in, packets_out, packets_per_second_in, packets_per_second_out,
    timeouts, refused, missing, late, dropped}."""
    out: dict[str, dict[str, float]] = {}
    prefix = "cpppo_fleet_device_io_"
    for text in texts.values():
        for family in _families(text):
            if not family.name.startswith(prefix):
                continue
            name = family.name[len(prefix):]
            for sample in family.samples:
                if sample.name.endswith("_created"):
                    continue
                key = f"{name}_{sample.labels['direction']}" if "direction" in sample.labels else name
                value = float(sample.value)
                out.setdefault(sample.labels["device"], {})[key] = int(value) if value.is_integer() else value
    return out


def worker_urls(plan: Plan, state_dir: Path) -> dict[str, str]:
    """Where each worker of ``plan`` serves its /metrics."""
    first: dict[str, PlannedDevice] = {}
    for device in plan.devices:
        first.setdefault(device.worker, device)
    out = {}
    for worker, device in first.items():
        recorded = None
        with contextlib.suppress(OSError, ValueError, KeyError):
            recorded = json.loads(worker_metrics_path(state_dir, worker).read_text())["url"]
        if recorded is None and plan.fleet.backend == "docker":
            recorded = f"http://{device.host}:{WORKER_PORT}/metrics"
        if recorded is not None:
            out[worker] = recorded
    return out


async def scrape_workers(urls: dict[str, str], timeout: float = 1.0) -> dict[str, str | None]:
    """Each worker's /metrics text (None: it did not answer)."""
    import aiohttp

    async def one(session: aiohttp.ClientSession, url: str) -> str | None:
        try:
            async with session.get(url) as answer:
                return await answer.text() if answer.status == 200 else None
        except (aiohttp.ClientError, TimeoutError, OSError):
            return None

    client_timeout = aiohttp.ClientTimeout(total=timeout)
    async with aiohttp.ClientSession(timeout=client_timeout) as session:
        texts = await asyncio.gather(*(one(session, url) for url in urls.values()))
    return dict(zip(urls, texts, strict=True))


# --- the fleet ----------------------------------------------------------------------------------

LATENCY_HELP = ("Latency of successful health polls (the device's own: one List Identity and one read, "
                "or one register read, on an open connection)")


class Latencies:
    """Each device's poll-latency histogram as a few plain counts (``array``, a bucket each and
    ``+Inf``, not cumulative) and a sum: fed by the poller's callback, read by the render in
    another thread without a lock (a copy of the array is taken at once)."""

    def __init__(self, buckets: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.buckets = buckets
        self.counts: dict[str, array] = {}
        self.sums: dict[str, float] = {}

    def observe(self, device: str, value: float) -> None:
        counts = self.counts.get(device)
        if counts is None:
            self.sums[device] = 0.0
            counts = self.counts[device] = array("Q", bytes(8 * (len(self.buckets) + 1)))
        counts[bisect.bisect_left(self.buckets, value)] += 1  # le: a value on a bound is in its bucket
        self.sums[device] += value


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _head(out: list[str], name: str, help_: str, type_: str) -> None:
    help_ = help_.replace("\\", "\\\\").replace("\n", "\\n")
    out.append(f"# HELP {name} {help_}\n# TYPE {name} {type_}\n")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 2 ** 53 else repr(float(value))


def device_exposition(rows: list[dict[str, Any]], latencies: Latencies | None) -> str:
    """The per-device families and devices by state, in the text format, written straight from
    the view's ``rows`` (they grow with the fleet: prometheus-client's family and sample objects
    cost ~10x more CPU than the text itself)."""
    out: list[str] = []
    names = [f'device="{_label(r["name"])}"' for r in rows]
    _head(out, "cpppo_fleet_device_up", "1 if the device's last health poll succeeded", "gauge")
    out.extend(f'cpppo_fleet_device_up{{{n},kind="{_label(r["kind"])}",address="{_label(r["address"])}"}} '
               f'{1 if r["state"] == "healthy" else 0}\n' for n, r in zip(names, rows, strict=True))
    if latencies is not None:
        name = "cpppo_fleet_device_poll_latency_seconds"
        _head(out, name, LATENCY_HELP, "histogram")
        bounds = [floatToGoString(b) for b in latencies.buckets] + ["+Inf"]
        for n, r in zip(names, rows, strict=True):
            counts = latencies.counts.get(r["name"])
            if counts is None:
                continue  # never answered: no series yet (as a prometheus-client child)
            total = 0
            for bound, count in zip(bounds, counts.tolist(), strict=True):
                total += count
                out.append(f'{name}_bucket{{{n},le="{bound}"}} {total}\n')
            out.append(f"{name}_count{{{n}}} {total}\n"
                       f"{name}_sum{{{n}}} {_number(latencies.sums.get(r['name'], 0.0))}\n")
    _head(out, "cpppo_fleet_device_last_check_timestamp_seconds", "When the device's last health poll ended",
          "gauge")
    out.extend(f"cpppo_fleet_device_last_check_timestamp_seconds{{{n}}} {_number(r['checked'])}\n"
               for n, r in zip(names, rows, strict=True) if r["checked"] is not None)
    _head(out, "cpppo_fleet_device_restarts_total", "Restarts of the device's worker since the fleet came up",
          "counter")
    out.extend(f"cpppo_fleet_device_restarts_total{{{n}}} {r['restarts']}\n"
               for n, r in zip(names, rows, strict=True))
    _head(out, "cpppo_fleet_device_faults_active", "Injected faults in force", "gauge")
    out.extend(f"cpppo_fleet_device_faults_active{{{n}}} {len(r['faults'])}\n"
               for n, r in zip(names, rows, strict=True))
    counts = dict.fromkeys(STATES, 0)
    for r in rows:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    _head(out, "cpppo_fleet_devices", "Devices by state", "gauge")
    out.extend(f'cpppo_fleet_devices{{state="{_label(state)}"}} {n}\n' for state, n in counts.items())
    return "".join(out)


class FleetCollector(Collector):
    """The fleet's /metrics (:meth:`render`): per-device and per-fleet figures from the poller's
    view (see :class:`fleet.web.view.FleetView`), written by :func:`device_exposition`, and, as a
    prometheus-client collector, the workers' scraped families (set with :meth:`set_workers`)."""

    def __init__(self, view: Any) -> None:
        self.view = view
        self.workers: dict[str, str | None] = {}
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    def set_workers(self, texts: dict[str, str | None]) -> None:
        self.workers = texts

    def render(self) -> bytes:
        """The whole exposition; reads the view without a lock (call it in a thread: the poller
        goes on recording meanwhile)."""
        text = device_exposition(self.view.rows(), getattr(self.view, "histogram", None))
        return text.encode() + generate_latest(self.registry)

    def collect(self) -> Iterator[Metric]:
        worker_up = GaugeMetricFamily("cpppo_fleet_worker_up", "1 if the worker's own /metrics answered",
                                      labels=["worker"])
        merged: dict[str, Metric] = {}
        for worker, text in sorted(self.workers.items()):
            worker_up.add_metric([worker], 0.0 if text is None else 1.0)
            for family in _families(text):
                into = merged.setdefault(family.name, Metric(family.name, family.documentation, family.type))
                for sample in family.samples:
                    into.add_sample(sample.name, {"worker": worker, **sample.labels}, sample.value)
        yield worker_up
        yield from merged.values()


def _families(text: str | None) -> Iterable[Metric]:
    if not text:
        return ()
    try:
        return list(text_string_to_metric_families(text))
    except ValueError:
        return ()


def write_file_sd(plan: Plan, path: Path) -> None:
    """A Prometheus ``file_sd_configs`` file: a target group per device, its address with
    ``device``, ``kind``, ``fleet`` and ``worker`` labels, a group a line.  Each string is
    quoted by the json module's own quoting; the groups are put together by hand: ``json.dumps``
    of 100,000 of them took the fleet page 0.5-2.9 s (``indent``: the pure-Python encoder) to start."""
    from json.encoder import encode_basestring as quoted

    fleet = quoted(plan.fleet.name)
    with no_collections():  # 100,000 new strings: see fleet.bulk
        lines = [f'{{"targets": [{quoted(d.endpoint)}], "labels": {{"device": {quoted(d.name)}, '
                 f'"kind": {quoted(d.kind)}, "fleet": {fleet}, "worker": {quoted(d.worker)}}}}}'
                 for d in plan.devices if d.host]  # not a unit on a serial line: no address to scrape
    tmp = path.with_suffix(".tmp")
    tmp.write_text("[\n" + ",\n".join(lines) + "\n]\n")
    os.replace(tmp, path)
