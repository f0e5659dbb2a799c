"""The ``cpppo-fleet`` command line (typer).

One module per command, joined here.  Heavy imports (docker, rich tables, the protocol
servers) happen inside the commands so that ``cpppo-fleet --help`` is instant.
"""

from __future__ import annotations

import typer

from fleet import __version__

app = typer.Typer(
    name="cpppo-fleet",
    help="Bring up, supervise and health-check a fleet of simulated EtherNet/IP and Modbus/TCP PLCs.",
    no_args_is_help=True,
    add_completion=False,
)


@app.command()
def version() -> None:
    """Print the cpppo-fleet version."""
    typer.echo(__version__)


def _reserve(name: str) -> None:
    def command() -> None:
        from cpppo.pending import not_built

        raise typer.Exit(not_built(f"cpppo-fleet {name}", 7))

    command.__doc__ = f"{name.capitalize()} the fleet (not built yet)."
    app.command(name)(command)


for _name in ("up", "down", "status", "plan"):
    _reserve(_name)


def main() -> None:
    """Console-script entry point."""
    app()
