"""The `arcus` command: one typer app, one module per command group, one error boundary."""

from __future__ import annotations

import os
import sys

import typer

from arcus import __version__
from arcus.errors import ArcusError, ConfigError, OperatorError

app = typer.Typer(
    name="arcus",
    help="Arcus: a multi-tenant Secure Web Gateway.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"arcus {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version"),
) -> None:
    """Arcus: a multi-tenant Secure Web Gateway."""


def _register() -> None:
    # Each command group lives in its own module and registers itself here.
    from arcus.cli import config as config_cmd
    from arcus.cli import ctl, policy, serve, tenant, user

    app.command("serve")(serve.serve)
    app.add_typer(tenant.app, name="tenant")
    app.add_typer(user.app, name="user")
    app.add_typer(policy.app, name="policy")
    app.add_typer(ctl.app, name="ctl")
    app.add_typer(config_cmd.app, name="config")
    from arcus.cli import audit as audit_cmd

    app.add_typer(audit_cmd.app, name="audit")
    from arcus.cli import ca as ca_cmd

    app.add_typer(ca_cmd.app, name="ca")
    from arcus.cli.tui import tui

    app.command("tui")(tui)


_register()


def _fail(message: str, hint: str | None = None, code: int = 1) -> None:
    sys.stderr.write(f"error: {message}\n")
    if hint:
        sys.stderr.write(f"hint: {hint}\n")
    raise SystemExit(code)


def main() -> None:
    """Entry point: turns known errors into one line plus a hint; a traceback only with ARCUS_DEBUG=1."""
    debug = os.environ.get("ARCUS_DEBUG") == "1"
    try:
        app(standalone_mode=True)
    except ConfigError as exc:
        for issue in exc.issues:
            sys.stderr.write(f"{issue}\n")
        raise SystemExit(1)
    except OperatorError as exc:
        if debug:
            raise
        _fail(exc.message, exc.hint, 3 if exc.code == "unavailable" else 1)
    except ArcusError as exc:
        if debug:
            raise
        _fail(str(exc))
    except KeyboardInterrupt:
        raise SystemExit(130)
