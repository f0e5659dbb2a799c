"""The ``cpppo-fleet`` command line (typer).

One module per command, joined here.  Heavy imports (docker, rich tables, the protocol
servers) happen inside the commands so that ``cpppo-fleet --help`` is instant.
"""

from __future__ import annotations

import typer

from fleet import __version__
from fleet.cli import build, down, logs, plan, restart, status, up

app = typer.Typer(
    name="cpppo-fleet",
    help="Bring up, supervise and health-check a fleet of simulated EtherNet/IP and Modbus/TCP PLCs.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def _options(backend: str = typer.Option(None, "--backend", metavar="process|docker",
                                         help="Run the fleet on this backend, not fleet.toml's.")) -> None:
    from fleet.cli import common

    if backend not in (None, "process", "docker"):
        common.fail(f"--backend must be process or docker, got {backend!r}", common.EXIT_CONFIG)
    common.BACKEND_OVERRIDE = backend


@app.command()
def version() -> None:
    """Print the cpppo-fleet version."""
    typer.echo(__version__)


app.command("plan")(plan.plan)
app.command("validate")(plan.validate)
app.command("up")(up.up)
app.command("down")(down.down)
app.command("status")(status.status)
app.command("poll")(status.poll)
app.command("logs")(logs.logs)
app.command("restart")(restart.restart)
app.command("build")(build.build)


def main() -> None:
    """Console-script entry point."""
    app()
