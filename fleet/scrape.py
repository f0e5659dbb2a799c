"""Where a worker serves its own ``/metrics`` (:mod:`fleet.metrics`): what the worker needs to
bind it and the poller to find it, without importing prometheus-client or aiohttp.

:func:`serve_metrics` binds the port when the worker starts and serves it from a thread with
the standard library's WSGI server (as prometheus-client's own ``start_http_server`` does),
not aiohttp: a worker is most of a device container's memory, and aiohttp in each one cost
about 13 MiB.  The WSGI application (prometheus-client's ``make_wsgi_app``) is made at the
first request, so a worker that is never scraped never imports prometheus-client; the
counters are read on the worker's event loop (they change there), not in the server's thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

WORKER_PORT = 9179  # a docker worker's /metrics, at its first device's address
METRICS_CONNECTIONS = 16  # a worker's /metrics connections (the poller scrapes it; within limits.MARGIN)
COLLECT_TIMEOUT = 5.0  # seconds a scrape waits for the worker's loop to read its counters


def worker_metrics_path(state_dir: Path | str, worker: str) -> Path:
    """Where a process-backend worker records the URL of its /metrics."""
    return Path(state_dir) / "metrics" / f"{worker}.json"


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No line per scrape on the worker's stderr."""


class _Server(ThreadingMixIn, WSGIServer):
    """A thread per connection, at most ``cap`` at once (the others are closed at once)."""

    daemon_threads = True

    def __init__(self, *args: Any) -> None:
        self.cap = threading.BoundedSemaphore(METRICS_CONNECTIONS)
        super().__init__(*args)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.cap.acquire(blocking=False):
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.cap.release()


class OnLoop:
    """A prometheus-client collector that runs ``collector.collect()`` on ``loop`` (from the
    server's thread) and hands back its families."""

    def __init__(self, collector: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.collector, self.loop = collector, loop

    def collect(self) -> Iterable[Any]:
        done: concurrent.futures.Future[list[Any]] = concurrent.futures.Future()

        def run() -> None:
            try:
                done.set_result(list(self.collector.collect()))
            except Exception as exc:  # handed to the scrape: a 500 reply
                done.set_exception(exc)

        self.loop.call_soon_threadsafe(run)
        return done.result(COLLECT_TIMEOUT)


class MetricsSite:
    """A worker's bound ``/metrics``: ``host``, ``port``; ``cleanup()`` stops it."""

    def __init__(self, server: _Server, thread: threading.Thread) -> None:
        self.server, self.thread = server, thread
        self.host, self.port = server.server_address[:2]

    async def cleanup(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.server.shutdown)
        self.server.server_close()


def serve_metrics(make_collector: Callable[[], Any], host: str, port: int, what: str) -> MetricsSite:
    """Bind ``/metrics`` at (host, port) (``port=0``: a free one) for the prometheus-client
    collector ``make_collector()`` (called at the first request; its ``collect`` runs on the
    running loop).  Raises WebBindError (one line) if it cannot be bound."""
    from cpppo.server.hosting import WebBindError, bind_error_text

    loop = asyncio.get_running_loop()
    app: list[Any] = []
    making = threading.Lock()

    def lazy(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        with making:
            if not app:
                from prometheus_client import CollectorRegistry, make_wsgi_app

                registry = CollectorRegistry(auto_describe=False)
                registry.register(OnLoop(make_collector(), loop))
                app.append(make_wsgi_app(registry))
        return app[0](environ, start_response)

    try:
        server = _Server((host or "127.0.0.1", port), _Quiet)
    except OSError as exc:
        raise WebBindError(exc.errno, f"cannot serve {what} on {host or '127.0.0.1'}:{port}: "
                                      f"{bind_error_text(exc)}") from None
    server.set_app(lazy)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.5},
                              name=f"{what} server", daemon=True)
    thread.start()
    return MetricsSite(server, thread)
