"""The ``cpppo-fleet`` command line (typer).

One module per command, joined here.  Heavy imports (docker, rich tables, the protocol
servers) happen inside the commands so that ``cpppo-fleet --help`` is instant.
"""

from __future__ import annotations

import typer

from fleet import __version__
from fleet.cli import build, down, fault, logs, plan, restart, status, up

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
app.command("fault")(fault.fault)
app.command("faults")(fault.faults_)


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point.  A usage error (unknown command or option, bad value) is one
    line on stderr and exit status 2, instead of a boxed panel."""
    try:
        code = app(args=argv, prog_name="cpppo-fleet", standalone_mode=False)
    except _CLICK_EXCEPTION as exc:
        ctx = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError":  # `cpppo-fleet` alone: the help (rich printed it)
            if exc.format_message().strip():
                typer.echo(exc.format_message(), err=True)
            return exc.exit_code
        where = ctx.command_path if ctx is not None else "cpppo-fleet"
        hint = f" (see '{where} --help')" if isinstance(exc, _USAGE_ERROR) else ""
        typer.echo(f"{where}: {exc.format_message().rstrip('.')}{hint}", err=True)
        return exc.exit_code
    except typer.Abort:
        typer.echo("cpppo-fleet: aborted", err=True)
        return 1
    return code if isinstance(code, int) else 0


# click's exception classes, found through typer's public BadParameter (typer may vendor click)
_USAGE_ERROR = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")
_CLICK_EXCEPTION = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")
