"""The EtherNet/IP simulator's web API (spec 2.1.8), served on the simulator's own event loop.

    server = await serve(device, "127.0.0.1", 0)
    web = await serve_web(device, server, "127.0.0.1", 0)     # http://127.0.0.1:<web.port>/api

``enip_server --web [<interface>]:<port>`` does the same.  ``api.py`` is the model (groups,
commands, the JSON envelope); ``httpd.py`` the aiohttp application in front of it.
Changes need the write token (``--web-token`` or ``$CPPPO_WEB_TOKEN``); without one the API is
read-only.
"""

from cpppo.enip.web.api import APIError, WebAPI
from cpppo.enip.web.httpd import TOKEN_VARIABLE, WebBindError, WebHandle, parse_web_address, serve_web

__all__ = ["TOKEN_VARIABLE", "APIError", "WebAPI", "WebBindError", "WebHandle", "parse_web_address",
           "serve_web"]
