"""The fleet page's aiohttp application: the page itself (plain HTML/JS/CSS in ``static/``),
its JSON and server-sent-event feeds, a device's live values, token-guarded writes, and
``/metrics``.

    GET  /                                 the page
    GET  /api/status                       every device (names, kinds, addresses, states, latency histories)
    GET  /api/events                       SSE: states and latencies, every ``period`` seconds
    GET  /api/devices/<name>               identity and current values (read from the device now)
    GET  /api/devices/<name>/events        SSE: its values, every ``period`` seconds
    POST /api/devices/<name>/write         {"target": "SCADA[3]" | "40001", "value": "4"}: needs the token
    POST /api/devices/<name>/fault         {"kind": "offline", "arg": null, "for": "30s"}: needs the token
    POST /api/devices/<name>/clear         end its fault: needs the token
    GET  /metrics                          Prometheus text format

Writes need ``Authorization: Bearer <token>`` (compared in constant time); a page served with
no token is read-only.  The view (``fleet.web.view.FleetView`` or anything with ``snapshot()``,
``devices`` and ``version``) is the status source, so the page can be fed a synthetic fleet.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import web

from cpppo.server.aioweb import check_token
from fleet.web.reader import DeviceReader, WriteError

log = logging.getLogger("fleet.web")

STATIC = resources.files("fleet.web") / "static"
MAX_BODY = 16384
TOKEN_VARIABLE = "CPPPO_FLEET_TOKEN"  # the fleet's write token, instead of <state>/web-token


def make_app(view: Any, *, token: str | None = None,
             metrics: Callable[[bool], Awaitable[bytes]] | None = None,
             period: float = 1.0, timeout: float = 2.0, control: Path | None = None) -> web.Application:
    """The application over ``view``; ``metrics(gzipped)`` returns the /metrics body; ``control``: the
    fleet's control folder (:mod:`fleet.control`), for injecting and clearing faults."""
    app = web.Application(client_max_size=MAX_BODY)

    async def page(_request: web.Request) -> web.Response:
        return web.Response(text=(STATIC / "index.html").read_text(), content_type="text/html")

    async def status(_request: web.Request) -> web.Response:
        return web.json_response({**view.snapshot(full=True), "write": token is not None,
                                  "faults_enabled": control is not None})

    async def sse(request: web.Request,
                  produce: Callable[[], Awaitable[dict[str, Any]]]) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                               "Cache-Control": "no-cache"})
        await response.prepare(request)
        while True:  # until the client goes (or the server closes)
            try:
                data = await produce()
            except Exception as exc:  # a device that does not answer: say so, keep trying
                data = {"error": _why(exc)}
            try:
                await response.write(f"data: {json.dumps(data, separators=(',', ':'))}\n\n".encode())
            except (ConnectionError, RuntimeError):
                break
            await asyncio.sleep(period)
        return response

    async def events(request: web.Request) -> web.StreamResponse:
        async def produce() -> dict[str, Any]:
            return view.snapshot(full=False)
        return await sse(request, produce)

    def device_of(request: web.Request) -> Any:
        device = view.devices.get(request.match_info["name"])
        if device is None:
            raise web.HTTPNotFound(text=json.dumps({"error": f"no device {request.match_info['name']!r}"}),
                                   content_type="application/json")
        return device

    async def detail(request: web.Request) -> web.Response:
        device = device_of(request)
        async with DeviceReader(device, timeout) as reader:
            try:
                identity, values = await reader.identity(), await reader.values()
            except Exception as exc:
                return web.json_response({"device": device.to_json(), "error": _why(exc)}, status=502)
        return web.json_response({"device": device.to_json(), "identity": identity, "values": values})

    async def values(request: web.Request) -> web.StreamResponse:
        device = device_of(request)
        async with DeviceReader(device, timeout) as reader:
            async def produce() -> dict[str, Any]:
                return {"values": await reader.values()}
            return await sse(request, produce)

    def refused(request: web.Request) -> web.Response | None:
        """The answer to a request that may not change anything (None: it may)."""
        if token is None:
            return web.json_response({"error": f"the fleet page is read-only: no write token (set "
                                               f"${TOKEN_VARIABLE} or keep <state>/web-token)"}, status=403)
        why = check_token(request, token)
        if why is not None:
            return web.json_response({"error": why}, status=401,
                                     headers={"WWW-Authenticate": 'Bearer realm="cpppo-fleet"'})
        return None

    async def body_of(request: web.Request, *keys: str) -> dict[str, Any] | web.Response:
        try:
            body = await request.json()
            if not isinstance(body, dict) or any(k not in body for k in keys):
                raise ValueError
            return body
        except ValueError:
            wanted = ", ".join(f'"{k}": ...' for k in keys)
            return web.json_response({"error": f"expected JSON {{{wanted}}}"}, status=400)

    async def write(request: web.Request) -> web.Response:
        device = device_of(request)
        no = refused(request)
        if no is not None:
            return no
        body = await body_of(request, "target", "value")
        if isinstance(body, web.Response):
            return body
        target, value = str(body["target"]), str(body["value"])
        async with DeviceReader(device, timeout) as reader:
            try:
                await reader.write(target, value)
            except WriteError as exc:
                return web.json_response({"error": str(exc)}, status=400)
            except Exception as exc:
                return web.json_response({"error": _why(exc)}, status=502)
        log.info("%s: %s = %s (fleet page)", device.name, target, value)
        return web.json_response({"ok": True, "device": device.name, "target": target, "value": value})

    async def fault(request: web.Request) -> web.Response:
        from cpppo.faults import FaultError, parse_fault
        from fleet import faults

        device = device_of(request)
        no = refused(request)
        if no is not None:
            return no
        clearing = request.path.endswith("/clear")
        body = {} if clearing else await body_of(request, "kind")
        if isinstance(body, web.Response):
            return body
        try:
            if clearing:
                done, failed = await asyncio.to_thread(faults.clear, control, [device], "page")
            else:
                arg = None if body.get("arg") in (None, "") else str(body["arg"])
                the_fault = parse_fault(str(body["kind"]), arg, duration=body.get("for") or None)
                done, failed = await asyncio.to_thread(faults.apply, control, [device], the_fault, "page")
        except FaultError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        if failed:
            return web.json_response({"error": "; ".join(failed.values())}, status=502)
        log.info("%s: fault %s (fleet page)", device.name, "cleared" if clearing else body["kind"])
        return web.json_response({"ok": True, "device": device.name, "done": done})

    async def prometheus(request: web.Request) -> web.Response:
        from fleet.metrics import CONTENT_TYPE

        gzipped = accepts_gzip(request.headers.get("Accept-Encoding", ""))  # Prometheus asks
        headers = {"Content-Type": CONTENT_TYPE, "Vary": "Accept-Encoding"}
        if gzipped:
            headers["Content-Encoding"] = "gzip"
        return web.Response(body=await metrics(gzipped), headers=headers)  # type: ignore[misc]

    app.router.add_get("/", page)
    app.router.add_static("/static/", STATIC, follow_symlinks=False)  # type: ignore[arg-type]
    app.router.add_get("/api/status", status)
    app.router.add_get("/api/events", events)
    app.router.add_get("/api/devices/{name}", detail)
    app.router.add_get("/api/devices/{name}/events", values)
    app.router.add_post("/api/devices/{name}/write", write)
    if control is not None:
        app.router.add_post("/api/devices/{name}/fault", fault)
        app.router.add_post("/api/devices/{name}/clear", fault)
    if metrics is not None:
        app.router.add_get("/metrics", prometheus)
    return app


def accepts_gzip(header: str) -> bool:
    """Whether an ``Accept-Encoding`` value takes gzip (``gzip``, ``gzip;q=0.5``; not ``gzip;q=0``)."""
    for part in header.split(","):
        coding, _, params = part.partition(";")
        if coding.strip().lower() in ("gzip", "x-gzip"):
            q = params.strip().lower().removeprefix("q=")
            try:
                return not params.strip() or float(q) > 0
            except ValueError:
                return False
    return False


def _why(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
