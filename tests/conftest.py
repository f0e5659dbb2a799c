"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from hypothesis import settings

from tests import upstream

# the packer-built lab-host VM image, shared by the VM tests (built once per session)
pytest_plugins = ["tests.lab_box"]

# CI runs the property tests on a fixed sequence of examples, so a submission's result does not
# depend on the luck of the draw; locally they explore new examples on every run.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

DOCKER_HINT = (
    "no Docker engine answers here; install one with `apt-get install -y docker.io` and start "
    "`dockerd` (as .ci/run does) to run these tests"
)


@pytest.fixture(scope="session")
def upstream_python() -> Path:
    """The interpreter of a cached virtualenv holding the upstream ``cpppo`` from PyPI."""
    try:
        return upstream.upstream_python()
    except Exception as exc:  # pragma: no cover - only without network to PyPI
        if os.environ.get("CI"):
            raise
        pytest.skip(f"cannot build the upstream cpppo virtualenv: {exc}")


@pytest.fixture(scope="session")
def docker_client():
    """A docker SDK client for a live engine; skips (outside CI) when no engine answers."""
    import docker

    try:
        client = docker.from_env(timeout=30)
        client.ping()
    except Exception as exc:
        if os.environ.get("CI"):
            raise RuntimeError(f"CI must provide a Docker engine: {exc}") from exc
        pytest.skip(DOCKER_HINT)
    yield client
    client.close()


@pytest.fixture(scope="session")
def is_root() -> bool:
    return os.geteuid() == 0


@pytest.fixture
def need_root(is_root: bool) -> None:
    if not is_root or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 (network namespaces / interface aliases)")


@pytest.fixture
def fleets():
    """A list a test appends its :class:`tests.fleet_support.CliFleet` fleets to; each is taken
    down afterwards, whatever the test did."""
    from fleet.backends.base import BackendError

    made: list = []
    yield made
    for fleet in made:
        try:
            fleet.backend.down()
        except BackendError:
            pass
