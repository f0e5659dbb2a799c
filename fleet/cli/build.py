"""``cpppo-fleet build``: the docker backend's device image (and the benchmarks' upstream peer);
``cpppo-fleet build FLEET_TOML``: the lab-host image of a ``backend = "vagrant"`` fleet, with
Packer (:mod:`fleet.labimage`), packer's output streamed as it goes.

Wheels are made on the host (``pip wheel``, cached under ``.cache/wheelhouse``) and the image
is built through the docker SDK from the local base image; nothing is pulled.  With nothing
changed since the last build it returns at once.
"""

from __future__ import annotations

from pathlib import Path

import typer

from fleet.cli.common import EXIT_CONFIG, fail

BASE = typer.Option("cpppo-fleet/base:bookworm", "--base",
                    help="Base image (made by images/build-base.sh; a slim Python image elsewhere).")
UPSTREAM = typer.Option(False, "--upstream",
                        help="Also build the upstream cpppo image the benchmarks compare with.")
QUIET = typer.Option(False, "--quiet", "-q", help="Print only the image names.")
FLEET = typer.Argument(None, show_default=False, metavar="[FLEET_TOML]",
                       help='A fleet with backend = "vagrant": build its lab-host image (or box).')
FORCE = typer.Option(False, "--force", help="With FLEET_TOML: build even when nothing changed.")


def build(fleet_file: Path = FLEET, base: str = BASE, upstream: bool = UPSTREAM, quiet: bool = QUIET,
          force: bool = FORCE) -> None:
    """Build the device image for the current sources, or with FLEET_TOML the lab-host image of
    a backend = "vagrant" fleet (streams the build's output)."""
    if fleet_file is not None:
        if upstream:
            fail("--upstream is for the device image (cpppo-fleet build without FLEET_TOML)", EXIT_CONFIG)
        return build_labhost(fleet_file, quiet, force)
    if force:
        fail("--force is for a lab-host image (cpppo-fleet build FLEET_TOML); the device image is "
             "rebuilt whenever the sources change", EXIT_CONFIG)
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


def build_labhost(path: Path, quiet: bool, force: bool) -> None:
    """The lab-host image (provider docker) or box (libvirt) of the vagrant fleet ``path``."""
    from fleet.cli.common import load_config
    from fleet.cli.multihost import load
    from fleet.labimage import LabImageError
    from fleet.labimage import build as build_image
    from fleet.vagrant import VagrantError

    config = load_config(path)
    if config.fleet.backend != "vagrant":
        fail(f"{path}: [fleet] backend is {config.fleet.backend!r}: `cpppo-fleet build FLEET_TOML` builds "
             'the lab-host image of a backend = "vagrant" fleet (the device image: `cpppo-fleet build`)',
             EXIT_CONFIG)
    settings = load(path).vms

    def echo(line: str) -> None:
        if not quiet:
            typer.echo(line, err=True)

    try:
        built = build_image(path, settings, echo, force=force)
    except (LabImageError, VagrantError) as exc:
        fail(str(exc))
    if built.skipped:
        typer.echo(f"{built.what} is up to date (stamp {built.stamp}, checked in {built.seconds:.1f}s; "
                   "--force rebuilds)")
    else:
        typer.echo(f"built {built.what} (stamp {built.stamp}) in {built.seconds:.0f}s")
