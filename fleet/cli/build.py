"""``cpppo-fleet build``: the docker backend's device image (and the benchmarks' upstream peer).

Wheels are made on the host (``pip wheel``, cached under ``.cache/wheelhouse``) and the image
is built through the docker SDK from the local base image; nothing is pulled.  With nothing
changed since the last build it returns at once.
"""

from __future__ import annotations

import typer

from fleet.cli.common import fail

BASE = typer.Option("cpppo-fleet/base:bookworm", "--base",
                    help="Base image (made by images/build-base.sh; a slim Python image elsewhere).")
UPSTREAM = typer.Option(False, "--upstream",
                        help="Also build the upstream cpppo image the benchmarks compare with.")
QUIET = typer.Option(False, "--quiet", "-q", help="Print only the image names.")


def build(base: str = BASE, upstream: bool = UPSTREAM, quiet: bool = QUIET) -> None:
    """Build the device image for the current sources (streams the build's output)."""
    import docker

    from fleet.backends.base import BackendError
    from fleet.backends.docker.image import build_device_image, build_upstream_image

    def log(line: str) -> None:
        if not quiet:
            typer.echo(line, err=True)

    try:
        client = docker.from_env(timeout=300)
        client.ping()
    except docker.errors.DockerException as exc:
        fail(f"no Docker engine answers: {str(exc).splitlines()[0]}")
    try:
        tags = [build_device_image(client, base=base, log=log)]
        if upstream:
            tags.append(build_upstream_image(client, base=base, log=log))
    except BackendError as exc:
        fail(str(exc))
    finally:
        client.close()
    for tag in tags:
        typer.echo(tag)
