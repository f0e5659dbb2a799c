"""The ground every later test stands on: the upstream virtualenv and the Docker base image."""

from __future__ import annotations

import subprocess

import pytest

from tests.support import free_port, python_module, running

BASE_IMAGE = "cpppo-fleet/base:bookworm"


@pytest.mark.interop
def test_upstream_cpppo_server_and_client_run_from_the_cached_virtualenv(upstream_python):
    port = free_port()
    with running(python_module("cpppo.server.enip", "-a", f"127.0.0.1:{port}", "SCADA=INT[10]",
                               python=upstream_python), listen=("127.0.0.1", port)):
        out = subprocess.run(
            python_module("cpppo.server.enip.client", "-a", f"127.0.0.1:{port}", "-p",
                          "SCADA[0-3]=(INT)1,2,3,4", "SCADA[0-5]", python=upstream_python),
            capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "== [1, 2, 3, 4, 0, 0]: 'OK'" in out.stdout


@pytest.mark.docker
def test_local_base_image_runs_python(docker_client):
    try:
        docker_client.images.get(BASE_IMAGE)
    except Exception:
        pytest.fail(f"{BASE_IMAGE} is missing: run images/build-base.sh (.ci/run does)")
    container = docker_client.containers.run(
        BASE_IMAGE, ["python3", "-c", "import sys; print(sys.version_info[:2])"],
        detach=True, labels={"cpppo-fleet.test": "foundation"}, network_disabled=True)
    try:
        assert container.wait(timeout=60)["StatusCode"] == 0
        assert b"(3, 11)" in container.logs()
        tools = docker_client.containers.run(
            BASE_IMAGE, ["sh", "-c", "command -v ss && command -v ps"], remove=True,
            network_disabled=True, labels={"cpppo-fleet.test": "foundation"})
        assert b"/ss" in tools and b"/ps" in tools
    finally:
        container.remove(force=True)
