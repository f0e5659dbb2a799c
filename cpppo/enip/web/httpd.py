"""The web API over HTTP, served by aiohttp on the caller's event loop (beside the EtherNet/IP
server, so no thread ever touches the device).  GET (and HEAD) only; JSON answers, or a
minimal HTML page for browsers that ask for ``text/html``.

Routes: ``/api[/<group>[/<match>[/<command>[/<value>]]]]`` (a last term ``<command>=<value>``
is the same as ``<command>/<value>``; a ``.json`` suffix forces JSON; the query options
``group``, ``match``, ``command``, ``value`` and ``since`` override the path), and ``/``, which
redirects to ``/api``.

A request that changes something (it carries a ``<value>``) needs the write token, sent as
``Authorization: Bearer <token>`` and compared in constant time; a server given no token is
read-only.  aiohttp's limits bound requests (head lines, fields, body size): a request over
them, an unknown method or page gets a 4xx answer and changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from cpppo.enip.device.model import Device
from cpppo.enip.server.transport import ServerHandle
from cpppo.enip.web.api import APIError, WebAPI
from cpppo.server.aioweb import WebBindError, check_token, start_site

__all__ = ["TOKEN_VARIABLE", "WebBindError", "WebHandle", "parse_web_address", "serve_web"]

log = logging.getLogger(__name__)

TOKEN_VARIABLE = "CPPPO_WEB_TOKEN"  # the write token, when --web-token is not given
MAX_BODY = 1024  # bytes of request body accepted (the API reads none)
_HTML = "text/html"


def parse_web_address(text: str) -> tuple[str, int]:
    """``[<interface>]:<port>`` (or a bare ``<port>``) -> (host, port); an empty interface is
    the loopback (give ``0.0.0.0:<port>`` to serve every interface).

    >>> parse_web_address(":12345"), parse_web_address("0.0.0.0:8080"), parse_web_address("80")
    (('127.0.0.1', 12345), ('0.0.0.0', 8080), ('127.0.0.1', 80))
    """
    host, sep, port_text = text.strip().rpartition(":")
    if not sep:
        host, port_text = "", text.strip()
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"bad --web {text!r}: expected [<interface>]:<port>") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"bad --web {text!r}: port must be 0-65535")
    return host.strip("[]") or "127.0.0.1", port


def _api_terms(path: str) -> tuple[list[str | None], bool]:
    """group, match, command, value from the (raw) path after ``/api``; and whether ``.json``
    was given."""
    parts = path.strip("/").split("/", 3) if path.strip("/") else []
    terms: list[str | None] = [unquote(p) or None for p in parts] + [None] * (4 - len(parts))
    forced = False
    last = max((i for i, t in enumerate(terms) if t), default=None)
    if last is not None and terms[last].endswith(".json"):  # type: ignore[union-attr]
        terms[last] = terms[last][:-5] or None  # type: ignore[index]
        forced = True
    if terms[3] is None and terms[2] and "=" in terms[2]:
        command, _, value = terms[2].partition("=")
        terms[2], terms[3] = command, value or None
    return terms, forced


def _html_page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head><meta charset="utf-8"/><title>{html.escape(title)}'
            f"</title></head>\n<body>\n<pre>{html.escape(body)}</pre>\n</body>\n</html>\n")


def _answer(status: int, content: dict[str, Any], as_html: bool, title: str,
            headers: dict[str, str] | None = None) -> web.Response:
    text = json.dumps(content, sort_keys=True, indent=4, default=repr)
    if as_html:
        return web.Response(status=status, text=_html_page(f"{status} {title}" if status >= 400 else title,
                                                           text), content_type=_HTML, headers=headers)
    return web.Response(status=status, text=text, content_type="application/json", headers=headers)


def _error(status: int, message: str, content: dict[str, Any] | None = None, as_html: bool = False,
           title: str = "api", headers: dict[str, str] | None = None) -> web.Response:
    """An error answer: the envelope with ``error`` and a failed command."""
    envelope = dict(content) if content else {"alarm": [], "data": {}, "since": None, "until": time.time()}
    envelope["command"] = {"message": message, "success": False}
    envelope["error"] = message
    return _answer(status, envelope, as_html, title, headers)


@web.middleware
async def _common(request: web.Request, handler: Callable[[web.Request], Any]) -> web.StreamResponse:
    """Headers on every answer; unknown methods and pages as JSON 4xx, never a traceback."""
    if request.method not in ("GET", "HEAD"):
        response = _error(405, f"method {request.method} is not supported (GET only)",
                          headers={"Allow": "GET, HEAD"})
    else:
        try:
            response = await handler(request)
        except web.HTTPNotFound:
            response = _error(404, f"no such page {request.path!r}: the API is at /api")
        except web.HTTPException as exc:
            response = _error(exc.status, exc.reason)
    response.headers.setdefault("Cache-Control", "no-cache")
    response.headers.setdefault("Access-Control-Allow-Origin", "*")
    return response


class WebHandle:
    """The serving web API: ``.host``, ``.port``, ``.api``, ``.close()``, ``await .wait_closed()``."""

    def __init__(self, api: WebAPI, token: str | None = None) -> None:
        self.api = api
        self.token = token or None
        self.host = ""
        self.port = 0
        self.runner: web.AppRunner | None = None
        self._closing: asyncio.Future[None] | None = None

    def app(self) -> web.Application:
        app = web.Application(middlewares=[_common], client_max_size=MAX_BODY)
        app.router.add_get("/", self._root)
        app.router.add_get("/api", self._api)
        app.router.add_get("/api/{tail:.*}", self._api)
        return app

    def close(self) -> None:
        if self.runner is not None and self._closing is None:
            self._closing = asyncio.ensure_future(self.runner.cleanup())

    async def wait_closed(self, timeout: float = 2.0) -> None:
        """Let requests in progress finish (up to ``timeout``), then drop what remains."""
        self.close()
        if self._closing is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._closing), timeout)

    async def __aenter__(self) -> WebHandle:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
        await self.wait_closed()

    async def _root(self, request: web.Request) -> web.Response:
        return web.Response(status=302, text="see /api\n", headers={"Location": "/api"})

    def _authorized(self, request: web.Request) -> str | None:
        """Why a write is refused (None: it may go ahead)."""
        if self.token is None:
            return (f"the web API is read-only: start the server with --web-token or ${TOKEN_VARIABLE} "
                    "to allow changes")
        return check_token(request, self.token)

    async def _api(self, request: web.Request) -> web.Response:
        raw = request.rel_url.raw_path
        terms, forced = _api_terms(raw[4:])
        for n, name in enumerate(("group", "match", "command", "value")):
            if request.query.get(name):
                terms[n] = request.query[name]
        accept = request.headers.get("Accept", "")
        as_html = not forced and _HTML in accept and "application/json" not in accept
        title = "/".join(["api", *(t or "" for t in terms[:3])]).rstrip("/")
        since_text = request.query.get("since")
        try:
            since = float(since_text) if since_text else None
        except ValueError:
            return _error(400, f"since {since_text!r} is not a time", None, as_html, title)
        if terms[3] is not None:
            refused = self._authorized(request)
            if refused is not None:
                status = 403 if self.token is None else 401
                return _error(status, refused, None, as_html, title,
                              {"WWW-Authenticate": 'Bearer realm="cpppo"'} if status == 401 else None)
        try:
            content = await self.api.request(*terms, since=since)
        except APIError as exc:
            return _error(exc.status, exc.message, exc.content, as_html, title)
        except Exception as exc:
            log.exception("web API: %s failed", raw)
            return _error(500, f"internal error: {exc}", None, as_html, title)
        return _answer(200, content, as_html, title)


async def serve_web(device: Device, server: ServerHandle, host: str = "127.0.0.1", port: int = 0, *,
                    on_done: Callable[[], None] | None = None, token: str | None = None) -> WebHandle:
    """Serve the web API for ``device`` / ``server`` on (host, port) of the running event loop.

    ``port=0`` picks a free port (``handle.port``); ``on_done`` is called when a client sets
    ``server/control/done``; ``token``: the write token (None: read-only).  Raises
    WebBindError if the address cannot be bound."""
    handle = WebHandle(WebAPI(device, server, on_done), token)
    handle.runner, handle.host, handle.port = await start_site(handle.app(), host, port, "the web API")
    log.info("web API on http://%s:%d/api%s", handle.host, handle.port,
             "" if token else " (read-only: no write token)")
    return handle
