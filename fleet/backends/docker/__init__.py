"""The Docker backend: devices in containers built and run with the docker SDK.

:mod:`~fleet.backends.docker.backend` (the backend), :mod:`~.layout` (networks and containers
from the plan, pure), :mod:`~.containers` (container specs for the SDK), :mod:`~.image` (the
wheelhouse-built device image), :mod:`~.entry` (the container's main process) and
:mod:`~.probe` (its HEALTHCHECK).
"""
