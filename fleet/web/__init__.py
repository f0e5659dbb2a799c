"""The live fleet page and ``/metrics``, served by the health poller (:mod:`fleet.health`):
``view`` (the poller's view of every device), ``reader`` (a device's values over the wire),
``app`` (the aiohttp application) and ``static/`` (the page: plain HTML, JS and CSS)."""
