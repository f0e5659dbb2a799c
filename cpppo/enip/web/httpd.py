"""A small asyncio HTTP/1.1 server for the web API: GET (and HEAD) only, one request per
connection, JSON answers (a minimal HTML page for browsers that ask for ``text/html``).

Routes: ``/api[/<group>[/<match>[/<command>[/<value>]]]]`` (a last term ``<command>=<value>``
is the same as ``<command>/<value>``; a ``.json`` suffix forces JSON; the query options
``group``, ``match``, ``command``, ``value`` and ``since`` override the path), and ``/``, which
redirects to ``/api``.  It runs on the caller's event loop, beside the EtherNet/IP server, so
no thread ever touches the device.
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
from urllib.parse import parse_qs, unquote, urlsplit

from cpppo.enip.device.model import Device
from cpppo.enip.server.transport import ServerHandle
from cpppo.enip.web.api import APIError, WebAPI
from cpppo.server.hosting import bind_error_text

__all__ = ["WebBindError", "WebHandle", "parse_web_address", "serve_web"]

log = logging.getLogger(__name__)

MAX_HEAD = 16384  # bytes of request line and headers accepted
READ_TIMEOUT = 10.0  # seconds a client may take to send its request
_REASONS = {200: "OK", 302: "Found", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            409: "Conflict", 431: "Request Header Fields Too Large", 500: "Internal Server Error",
            503: "Service Unavailable"}
_HTML = {"Content-Type": "text/html; charset=utf-8"}


class WebBindError(OSError):
    """The web API's address could not be bound (the message names it)."""


def parse_web_address(text: str) -> tuple[str, int]:
    """``[<interface>]:<port>`` (or a bare ``<port>``) -> (host, port); an empty interface is
    all of them.

    >>> parse_web_address(":12345"), parse_web_address("127.0.0.1:8080"), parse_web_address("80")
    (('0.0.0.0', 12345), ('127.0.0.1', 8080), ('0.0.0.0', 80))
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
    return host.strip("[]") or "0.0.0.0", port


def _api_terms(path: str) -> tuple[list[str | None], bool]:
    """group, match, command, value from the path after ``/api``; and whether ``.json`` was given."""
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


class WebHandle:
    """The serving web API: ``.host``, ``.port``, ``.api``, ``.close()``, ``await .wait_closed()``."""

    def __init__(self, api: WebAPI) -> None:
        self.api = api
        self.host = ""
        self.port = 0
        self.server: asyncio.base_events.Server | None = None
        self.handlers: set[asyncio.Task[Any]] = set()

    def close(self) -> None:
        if self.server is not None:
            self.server.close()

    async def wait_closed(self, timeout: float = 2.0) -> None:
        """Let requests in progress finish (up to ``timeout``), then cancel what remains."""
        pending = {task for task in self.handlers if not task.done()}
        if pending:
            _done, late = await asyncio.wait(pending, timeout=timeout)
            for task in late:
                task.cancel()
        if self.server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), timeout)

    async def __aenter__(self) -> WebHandle:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
        await self.wait_closed()

    # --- one connection, one request -------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self.handlers.add(task)
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT)
            except asyncio.LimitOverrunError:
                self._write(writer, "GET", 431, *self._error(431, "request head too large"))
                return
            except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
                return
            self._write(writer, *await self._respond(head))
            await writer.drain()
        except Exception:  # a bug here must not take the simulator down
            log.exception("web API: request failed")
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            if task is not None:
                self.handlers.discard(task)

    @staticmethod
    def _write(writer: asyncio.StreamWriter, method: str, status: int, headers: dict[str, str],
               body: bytes) -> None:
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}", f"Content-Length: {len(body)}",
                 "Cache-Control: no-cache", "Access-Control-Allow-Origin: *", "Connection: close"]
        lines += [f"{key}: {value}" for key, value in headers.items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        if method != "HEAD":
            writer.write(body)

    @staticmethod
    def _error(status: int, message: str, content: dict[str, Any] | None = None,
               as_html: bool = False, title: str = "api") -> tuple[dict[str, str], bytes]:
        """Headers and body of an error answer: the envelope with ``error`` and a failed command."""
        envelope = dict(content) if content else {"alarm": [], "data": {}, "since": None,
                                                  "until": time.time()}
        envelope["command"] = {"message": message, "success": False}
        envelope["error"] = message
        text = json.dumps(envelope, sort_keys=True, indent=4, default=repr)
        if as_html:
            return _HTML, _html_page(f"{status} {title}", text).encode()
        return {"Content-Type": "application/json"}, text.encode()

    async def _respond(self, head: bytes) -> tuple[str, int, dict[str, str], bytes]:
        """(method, status, headers, body) for one request head."""
        lines = head.decode("latin-1").split("\r\n")
        request = lines[0].split()
        if len(request) != 3 or not request[2].startswith("HTTP/"):
            return "GET", 400, *self._error(400, f"bad request line {lines[0][:80]!r}")
        method, target, _version = request
        headers = {}
        for line in lines[1:]:
            key, sep, value = line.partition(":")
            if sep:
                headers[key.strip().lower()] = value.strip()
        if method not in ("GET", "HEAD"):
            extra, body = self._error(405, f"method {method} is not supported (GET only)")
            return method, 405, {**extra, "Allow": "GET, HEAD"}, body
        url = urlsplit(target)
        path = url.path
        if path in ("", "/"):
            return method, 302, {"Location": "/api", "Content-Type": "text/plain"}, b"see /api\n"
        if path != "/api" and not path.startswith("/api/"):
            return method, 404, *self._error(404, f"no such page {path!r}: the API is at /api")
        terms, forced = _api_terms(path[4:])
        queries = {key: values[0] for key, values in parse_qs(url.query).items()}
        for n, name in enumerate(("group", "match", "command", "value")):
            if queries.get(name):
                terms[n] = queries[name]
        as_html = not forced and "text/html" in headers.get("accept", "") \
            and "application/json" not in headers.get("accept", "")
        title = "/".join(["api", *(t or "" for t in terms[:3])]).rstrip("/")
        try:
            since = float(queries["since"]) if queries.get("since") else None
        except ValueError:
            message = f"since {queries['since']!r} is not a time"
            return method, 400, *self._error(400, message, None, as_html, title)
        try:
            content = await self.api.request(*terms, since=since)
        except APIError as exc:
            return method, exc.status, *self._error(exc.status, exc.message, exc.content, as_html, title)
        except Exception as exc:
            log.exception("web API: %s failed", path)
            return method, 500, *self._error(500, f"internal error: {exc}", None, as_html, title)
        text = json.dumps(content, sort_keys=True, indent=4, default=repr)
        if as_html:
            return method, 200, _HTML, _html_page(title, text).encode()
        return method, 200, {"Content-Type": "application/json"}, text.encode()


async def serve_web(device: Device, server: ServerHandle, host: str = "127.0.0.1", port: int = 0, *,
                    on_done: Callable[[], None] | None = None) -> WebHandle:
    """Serve the web API for ``device`` / ``server`` on (host, port) of the running event loop.

    ``port=0`` picks a free port (``handle.port``); ``on_done`` is called when a client sets
    ``server/control/done``.  Raises WebBindError if the address cannot be bound."""
    handle = WebHandle(WebAPI(device, server, on_done))
    try:
        handle.server = await asyncio.start_server(handle._connection, host or "0.0.0.0", port,
                                                   limit=MAX_HEAD, reuse_address=True)
    except OSError as exc:
        raise WebBindError(exc.errno, f"cannot serve the web API on {host or '0.0.0.0'}:{port}: "
                                      f"{bind_error_text(exc)}") from None
    handle.host, handle.port = handle.server.sockets[0].getsockname()[:2]
    log.info("web API on http://%s:%d/api", handle.host, handle.port)
    return handle
