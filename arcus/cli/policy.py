"""`arcus policy`: a tenant's ordered rules (commands being written)."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True, help="Manage a tenant's policy: ordered allow/deny/redirect/report rules.")
