"""The `arcus` command: one typer app, one module per command group, one error boundary.

Start-up time matters (the frozen binary is started for every `arcus ctl stats`): ``main``
answers ``--version`` before typer is imported, and builds the app with only the command group
named on the command line (``arcus ctl stats`` imports ``arcus.cli.ctl``, not the profile
loader, the store or cryptography); ``--help`` or an unknown name builds them all. The whole
tree is ``arcus.cli.app.app`` (built on first use: tests, docs).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from arcus import __version__
from arcus.errors import ArcusError, ConfigError, OperatorError

if TYPE_CHECKING:
    import typer


# Each command group lives in its own module; registering it imports it. Imports are written out
# (not made from strings) so PyInstaller sees every module.
def _serve(app: typer.Typer) -> None:
    from arcus.cli import serve

    app.command("serve")(serve.serve)


def _tenant(app: typer.Typer) -> None:
    from arcus.cli import tenant

    app.add_typer(tenant.app, name="tenant")


def _user(app: typer.Typer) -> None:
    from arcus.cli import user

    app.add_typer(user.app, name="user")


def _policy(app: typer.Typer) -> None:
    from arcus.cli import policy

    app.add_typer(policy.app, name="policy")


def _ctl(app: typer.Typer) -> None:
    from arcus.cli import ctl

    app.add_typer(ctl.app, name="ctl")


def _config(app: typer.Typer) -> None:
    from arcus.cli import config

    app.add_typer(config.app, name="config")


def _audit(app: typer.Typer) -> None:
    from arcus.cli import audit

    app.add_typer(audit.app, name="audit")


def _ca(app: typer.Typer) -> None:
    from arcus.cli import ca

    app.add_typer(ca.app, name="ca")


def _tui(app: typer.Typer) -> None:
    from arcus.cli.tui import tui

    app.command("tui")(tui)


GROUPS: dict[str, Callable[[typer.Typer], None]] = {
    "serve": _serve,
    "tenant": _tenant,
    "user": _user,
    "policy": _policy,
    "ctl": _ctl,
    "config": _config,
    "audit": _audit,
    "ca": _ca,
    "tui": _tui,
}


def build(only: str | None = None) -> typer.Typer:
    """The typer app with every command group, or only the group ``only``."""
    import typer

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

    for name, register in GROUPS.items():
        if only is None or name == only:
            register(app)
    return app


def __getattr__(name: str) -> Any:
    if name == "app":  # the whole command tree, built once on first use
        app = globals()["app"] = build()
        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _group_of(argv: list[str]) -> str | None:
    """The command group a command line names (its first argument), if it names one."""
    return argv[0] if argv and argv[0] in GROUPS else None


def _fail(message: str, hint: str | None = None, code: int = 1) -> None:
    sys.stderr.write(f"error: {message}\n")
    if hint:
        sys.stderr.write(f"hint: {hint}\n")
    raise SystemExit(code)


def main() -> None:
    """Entry point: turns known errors into one line plus a hint; a traceback only with ARCUS_DEBUG=1."""
    argv = sys.argv[1:]
    if argv == ["--version"]:
        sys.stdout.write(f"arcus {__version__}\n")
        return
    debug = os.environ.get("ARCUS_DEBUG") == "1"
    try:
        build(_group_of(argv))(standalone_mode=True)
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
