"""What every aiohttp site of the project shares: binding one on the running loop (with a
one-line error naming the address), and the write token (where it comes from, how a request
proves it has it).

A token is compared in constant time (:func:`hmac.compare_digest`) with the one a request
sends as ``Authorization: Bearer <token>``.

    >>> len(new_token()) >= 32
    True
"""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

from aiohttp import web

from cpppo.server.hosting import bind_error_text

__all__ = ["WebBindError", "check_token", "load_or_create_token", "new_token", "start_site"]

# aiohttp's request limits, stated: a request line or header over them gets a 4xx answer
MAX_LINE = 8190
MAX_FIELD = 8190
MAX_HEADERS = 64


class WebBindError(OSError):
    """A web address could not be bound (the message names it)."""


async def start_site(app: web.Application, host: str, port: int,
                     what: str = "the web page") -> tuple[web.AppRunner, str, int]:
    """Serve ``app`` on (host, port) of the running event loop; (runner, host, port bound).
    ``port=0`` picks a free port.  Raises WebBindError (one line) if it cannot be bound."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False, max_line_size=MAX_LINE,
                           max_field_size=MAX_FIELD, max_headers=MAX_HEADERS, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, host or "127.0.0.1", port, reuse_address=True)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise WebBindError(exc.errno, f"cannot serve {what} on {host or '127.0.0.1'}:{port}: "
                                      f"{bind_error_text(exc)}") from None
    bound = site._server.sockets[0].getsockname()[:2]  # type: ignore[union-attr]
    return runner, bound[0], bound[1]


def new_token() -> str:
    return secrets.token_urlsafe(32)


def load_or_create_token(path: Path) -> str:
    """The token in ``path``, created there (mode 0600) when missing."""
    try:
        text = path.read_text().strip()
        if text:
            return text
    except FileNotFoundError:
        pass
    token = new_token()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(token + "\n")
    os.chmod(path, 0o600)
    return token


def check_token(request: web.BaseRequest, token: str) -> str | None:
    """Why ``request`` may not write (None: it sends ``token``)."""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return "this changes state: send the write token as 'Authorization: Bearer <token>'"
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        return "wrong write token"
    return None
