"""The fleet page's aiohttp application: the page itself (plain HTML/JS/CSS in ``static/``),
its JSON and server-sent-event feeds, a device's live values, token-guarded writes, and
``/metrics``.

    GET  /                                 the page
    GET  /api/status                       every device (names, kinds, addresses, states, latency histories)
    GET  /api/events                       SSE: states and latencies, every ``period`` seconds
    GET  /api/devices/<name>               identity and current values (read from the device now)
    GET  /api/devices/<name>/events        SSE: its values, every ``period`` seconds
    POST /api/devices/<name>/write         {"target": "SCADA[3]" | "40001", "value": "4"}: needs the token
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
from typing import Any

from aiohttp import web

from cpppo.server.aioweb import check_token
from fleet.web.reader import DeviceReader, WriteError

log = logging.getLogger("fleet.web")

STATIC = resources.files("fleet.web") / "static"
MAX_BODY = 16384
TOKEN_VARIABLE = "CPPPO_FLEET_TOKEN"  # the fleet's write token, instead of <state>/web-token


def make_app(view: Any, *, token: str | None = None, metrics: Callable[[], Awaitable[bytes]] | None = None,
             period: float = 1.0, timeout: float = 2.0) -> web.Application:
    """The application over ``view``; ``metrics`` returns the /metrics body."""
    app = web.Application(client_max_size=MAX_BODY)

    async def page(_request: web.Request) -> web.Response:
        return web.Response(text=(STATIC / "index.html").read_text(), content_type="text/html")

    async def status(_request: web.Request) -> web.Response:
        return web.json_response({**view.snapshot(full=True), "write": token is not None})

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

    async def write(request: web.Request) -> web.Response:
        device = device_of(request)
        if token is None:
            return web.json_response({"error": f"the fleet page is read-only: no write token (set "
                                               f"${TOKEN_VARIABLE} or keep <state>/web-token)"}, status=403)
        refused = check_token(request, token)
        if refused is not None:
            return web.json_response({"error": refused}, status=401,
                                     headers={"WWW-Authenticate": 'Bearer realm="cpppo-fleet"'})
        try:
            body = await request.json()
            target, value = str(body["target"]), str(body["value"])
        except (ValueError, KeyError, TypeError):
            return web.json_response({"error": 'expected JSON {"target": ..., "value": ...}'}, status=400)
        async with DeviceReader(device, timeout) as reader:
            try:
                await reader.write(target, value)
            except WriteError as exc:
                return web.json_response({"error": str(exc)}, status=400)
            except Exception as exc:
                return web.json_response({"error": _why(exc)}, status=502)
        log.info("%s: %s = %s (fleet page)", device.name, target, value)
        return web.json_response({"ok": True, "device": device.name, "target": target, "value": value})

    async def prometheus(_request: web.Request) -> web.Response:
        from fleet.metrics import CONTENT_TYPE

        return web.Response(body=await metrics(), headers={"Content-Type": CONTENT_TYPE})  # type: ignore[misc]

    app.router.add_get("/", page)
    app.router.add_static("/static/", STATIC, follow_symlinks=False)  # type: ignore[arg-type]
    app.router.add_get("/api/status", status)
    app.router.add_get("/api/events", events)
    app.router.add_get("/api/devices/{name}", detail)
    app.router.add_get("/api/devices/{name}/events", values)
    app.router.add_post("/api/devices/{name}/write", write)
    if metrics is not None:
        app.router.add_get("/metrics", prometheus)
    return app


def _why(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
