"""The health poller's web side: the fleet page and ``/metrics`` on one aiohttp site, where
``[fleet] web`` says (default ``127.0.0.1:0``: loopback, a free port, so two fleets never
clash); the address it got goes to ``<state>/web.json`` for ``up`` and ``status``.

The write token is ``$CPPPO_FLEET_TOKEN`` or, when that is unset, ``<state>/web-token``
(generated, mode 0600).  ``<state>/file_sd.json`` lists every device for Prometheus.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import disable_created_metrics

from fleet.metrics import FleetCollector, Latencies, scrape_workers, worker_urls, write_file_sd
from fleet.plan import Plan
from fleet.web.view import FleetView

log = logging.getLogger("fleet.web")

WEB_FILE = "web.json"
TOKEN_FILE = "web-token"
FILE_SD = "file_sd.json"


@dataclass
class FleetWeb:
    """The running site: ``view`` (feed it results), ``url``, ``close()``."""

    view: FleetView
    runner: Any
    url: str
    state_dir: Path
    scraper: asyncio.Task[None] | None = None
    exposition: Exposition | None = None

    async def close(self) -> None:
        if self.exposition is not None:
            self.exposition.close()
        if self.scraper is not None:
            self.scraper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.scraper
        await self.runner.cleanup()
        (self.state_dir / WEB_FILE).unlink(missing_ok=True)

    def refresh(self, store: Any) -> None:
        """After a sweep: restarts and unservable devices from the store, active faults from
        the control folder's record."""
        import sqlite3

        from fleet.control import control_dir
        from fleet.faults import active
        from fleet.store import StoreError

        with contextlib.suppress(sqlite3.Error, StoreError):
            self.view.set_store(store.starts(), store.serve_errors())
        with contextlib.suppress(OSError, ValueError):
            self.view.set_faults({name: [fault.describe()]
                                  for name, fault in active(control_dir(self.state_dir)).items()})

    def follow(self, plan: Plan) -> None:
        """A new plan: the view and file_sd follow it."""
        self.view.set_plan(plan)
        write_file_sd(plan, self.state_dir / FILE_SD)


def fleet_token(state_dir: Path) -> str:
    from cpppo.server.aioweb import load_or_create_token
    from fleet.web.app import TOKEN_VARIABLE

    return os.environ.get(TOKEN_VARIABLE) or load_or_create_token(state_dir / TOKEN_FILE)


def web_address(plan: Plan) -> tuple[str, int]:
    text = getattr(plan.fleet, "web", "") or "127.0.0.1:0"
    host, _, port = text.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if plan.fleet.backend == "docker" and host.startswith("127."):
        host = "0.0.0.0"  # the poller's container: its loopback is nobody else's
    return host, int(port)


async def start_web(plan: Plan, state_dir: Path, period: float = 1.0) -> FleetWeb:
    """Serve the page and /metrics for ``plan``; raises WebBindError (one line)."""
    from cpppo.server.aioweb import start_site
    from fleet.web.app import make_app

    disable_created_metrics()  # no *_created series: one poller process, its start is no news
    view = FleetView(plan, Latencies())
    collector = FleetCollector(view)
    exposition = Exposition(collector.render, view)

    async def scrape_forever() -> None:
        """The workers' /metrics every health interval (a hung worker costs one timeout here,
        never a Prometheus scrape of the fleet)."""
        fleet = plan.fleet
        while True:
            begun = asyncio.get_running_loop().time()
            urls = worker_urls(view.plan, state_dir)
            timeout = min(fleet.health_timeout, fleet.health_interval)
            collector.set_workers(await scrape_workers(urls, timeout))
            elapsed = asyncio.get_running_loop().time() - begun
            await asyncio.sleep(max(0.1, fleet.health_interval - elapsed))

    from fleet.control import control_dir

    app = make_app(view, token=fleet_token(state_dir), metrics=exposition.get, period=period,
                   timeout=plan.fleet.health_timeout, control=control_dir(state_dir))
    host, port = web_address(plan)
    runner, bound, port = await start_site(app, host, port, "the fleet page")
    shown = bound if bound != "0.0.0.0" else socket.gethostbyname(socket.gethostname())
    url = f"http://{shown}:{port}/"
    record_web(state_dir, {"web": url, "metrics": url + "metrics"})
    web = FleetWeb(view, runner, url, state_dir, asyncio.ensure_future(scrape_forever()), exposition)
    web.follow(plan)
    log.info("fleet page on %s, metrics on %smetrics", url, url)
    return web


class Exposition:
    """The fleet's /metrics body, never waiting on a worker (their figures are kept fresh by
    ``scrape_forever``), rendered in a thread (the polls go on meanwhile: the render reads the
    view without a lock) and shared: scrapers arriving during a render wait for that one, and
    its bytes (gzipped once, for those that ask) serve every scrape until a device changes
    state (up, down, restarted, faulted; :attr:`FleetView.changes`) or ``max_age`` seconds (by
    default a health interval, or twice a render and a second if longer: timestamps and
    latency counts lag by at most that) have passed.

    A scraper that comes back at a steady rhythm (Prometheus' ``scrape_interval``) finds the
    next body rendered (and gzipped) just ahead of its visit, so it rarely waits for a render."""

    APART = 1.0  # scrapes closer than this are several scrapers at once (an HA pair), not a rhythm

    def __init__(self, render: Any, view: FleetView, max_age: float | None = None) -> None:
        self.render, self.view, self.max_age = render, view, max_age
        self.body, self.changes, self.at, self.took = b"", -1, float("-inf"), 0.0
        self.rendering: asyncio.Future[None] | None = None
        self.gzipped: asyncio.Future[bytes] | None = None
        self.renders = 0
        self.scraped: float | None = None  # when the last scrape came
        self.period: float | None = None  # the scrapers' rhythm
        self.wants_gzip = False
        self.ahead: asyncio.TimerHandle | None = None

    def fresh(self, at: float | None = None) -> bool:
        """Whether the body still serves a scrape now (or at loop time ``at``)."""
        at = asyncio.get_running_loop().time() if at is None else at
        max_age = self.view.plan.fleet.health_interval if self.max_age is None else self.max_age
        return self.changes == self.view.changes and at - self.at < max(max_age, 2 * self.took + 1.0)

    async def get(self, gzipped: bool = False) -> bytes:
        self._expect(gzipped)
        if not self.fresh():
            await self._refresh()
        if not gzipped:
            return self.body
        if self.gzipped is None:
            self.gzipped = asyncio.ensure_future(asyncio.to_thread(gzip.compress, self.body, 1))
        return await asyncio.shield(self.gzipped)

    def close(self) -> None:
        if self.ahead is not None:
            self.ahead.cancel()

    def _expect(self, gzipped: bool) -> None:
        """Note the scrapers' rhythm; render ahead of the next scrape it predicts."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self.scraped is not None and now - self.scraped > self.APART:
            self.period = now - self.scraped
        self.scraped, self.wants_gzip = now, gzipped
        if self.period is not None:
            self.close()
            due = now + self.period
            self.ahead = loop.call_later(max(0.0, self.period - 1.5 * self.took - 0.25), self._ahead, due)

    def _ahead(self, due: float) -> None:
        self.ahead = None
        if not self.fresh(due) and self.rendering is None:
            self.rendering = asyncio.ensure_future(self._render())

    async def _refresh(self) -> None:
        if self.rendering is None:
            self.rendering = asyncio.ensure_future(self._render())
        await asyncio.shield(self.rendering)

    async def _render(self) -> None:
        def both() -> tuple[bytes, bytes | None]:
            body = self.render()
            return body, gzip.compress(body, 1) if packing else None

        try:
            loop = asyncio.get_running_loop()
            changes, at, packing = self.view.changes, loop.time(), self.wants_gzip
            body, packed = await asyncio.to_thread(both)
            self.body, self.changes, self.at, self.took = body, changes, at, loop.time() - at
            self.gzipped = None
            if packed is not None:
                self.gzipped = loop.create_future()
                self.gzipped.set_result(packed)
            self.renders += 1
        finally:
            self.rendering = None


def record_web(state_dir: Path, record: dict[str, str | None]) -> None:
    """Where the page is (``web``, ``metrics``), or why it is not (``web_error``), for ``up``
    and ``status``."""
    tmp = state_dir / (WEB_FILE + ".tmp")
    tmp.write_text(json.dumps({**record, "pid": os.getpid()}))
    os.replace(tmp, state_dir / WEB_FILE)


def read_web(state_dir: Path) -> dict[str, str | None] | None:
    """``{"web": url, "metrics": url}`` of a running poller, or ``{"web": None, "metrics":
    None, "web_error": why}`` when it could not serve them (None: nothing recorded)."""
    try:
        data = json.loads((Path(state_dir) / WEB_FILE).read_text())
        if data.get("web_error"):
            return {"web": None, "metrics": None, "web_error": str(data["web_error"])}
        return {"web": data["web"], "metrics": data["metrics"]}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
