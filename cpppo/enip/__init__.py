"""EtherNet/IP CIP, in stack order.

- :mod:`cpppo.enip.codec`: sans-IO encapsulation, CPF, EPATH, CIP, Logix and data-type records;
- :mod:`cpppo.enip.device`: the controller model (objects, attributes, tags) and the request
  dispatch that answers CIP requests against it, knowing nothing of sockets;
- :mod:`cpppo.enip.server`: the asyncio TCP/UDP transport serving devices;
- :mod:`cpppo.enip.client`: one sans-IO client engine (``engine``: queue, pipelining,
  fragmentation, STRING handling, routing, error mapping) with two faces, the blocking
  ``connector`` and the asyncio ``aclient.AsyncClient``, and the proxies and poller over them;
- :mod:`cpppo.enip.cli`: the command lines (``enip_server``, ``enip_client``, ...);
- :mod:`cpppo.enip.web`: the simulator's web API.

The paths the upstream spec shows (``cpppo.server.enip.client``, ``.get_attribute``, ``.poll``,
``.main``, ``.device``, ...) are thin re-exports of these; nothing in the package imports them.
"""
