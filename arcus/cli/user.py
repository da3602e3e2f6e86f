"""`arcus user`: the users of a tenant (commands being written)."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True, help="Manage a tenant's users: passwords, expiry, blocking, limits.")
