"""`arcus ca`: init, show, export, import, rotate — the CAs that sign intercepted leaves.

Files only (under the data dir), so every command works with no daemon running; each calls the
:mod:`arcus.ops.ca` function a control handler will call.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from arcus import paths
from arcus.cli._common import DataDirOpt, JsonOpt, errors_to_exit, note, print_json
from arcus.errors import OperatorError
from arcus.ops import ca as ops
from arcus.tls.ca import DEFAULT_DAYS, KEY_TYPES
from arcus.tls.files import PUBLIC_MODE, atomic_write
from arcus.tls.install import ONBOARD_HOST, install_text

app = typer.Typer(no_args_is_help=True, help="Manage the CAs that sign intercepted TLS leaves (the box's and tenants').")

TenantOpt = Annotated[
    str | None,
    typer.Option("--tenant", help="The tenant's own CA [default: the box's, used by tenants without one]",
                 show_default=False),
]
KeyOpt = Annotated[str, typer.Option("--key", help=f"Key type: {', '.join(KEY_TYPES)}")]
DaysOpt = Annotated[int, typer.Option("--days", help="Validity of the CA in days")]


def _print(info: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(info)
        return
    cur = info["current"]
    whose = f"tenant {info['tenant']}" if info.get("tenant") else "the box"
    if info["uses"] == "box" and info.get("tenant"):
        typer.echo(f"{whose} has no CA of its own; it uses the box's:")
    else:
        typer.echo(f"CA of {whose}:")
    for label, key in (("subject", "subject"), ("issuer", "issuer"), ("fingerprint (SHA-256)", "fingerprint_sha256"),
                       ("not before", "not_before"), ("not after", "not_after"), ("key", "key"),
                       ("directory", "directory")):
        typer.echo(f"  {label + ':':<22} {cur[key]}")
    if cur["chain"]:
        typer.echo(f"  {'chain:':<22} {cur['chain']} certificate(s) above it")
    retired = [g for g in info["generations"] if g["status"] == "retired"]
    for g in retired:
        typer.echo(f"  retired: {g['fingerprint_sha256'][:23]}... {g['subject']} (kept until {g['retired_until']})")
    if info.get("tenants_with_own_ca"):
        typer.echo(f"  tenants with their own CA: {', '.join(info['tenants_with_own_ca'])}")


@app.command("init")
@errors_to_exit
def init(
    tenant: TenantOpt = None,
    key: KeyOpt = "ec",
    days: DaysOpt = DEFAULT_DAYS,
    data_dir: DataDirOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Create a CA (EC P-256 unless --key says otherwise); refused when one exists (see rotate)."""
    _print(ops.init(paths.data_dir(data_dir), tenant, key, days), json_out)


@app.command("show")
@errors_to_exit
def show(tenant: TenantOpt = None, data_dir: DataDirOpt = None, json_out: JsonOpt = False) -> None:
    """The CA that signs a tenant's leaves (its own or the box's) and the retired ones still kept."""
    _print(ops.show(paths.data_dir(data_dir), tenant), json_out)


@app.command("export")
@errors_to_exit
def export(
    tenant: TenantOpt = None,
    fmt: Annotated[str, typer.Option("--format", help="pem or der")] = "pem",
    out: Annotated[Path | None, typer.Option("--out", help="Write to FILE [default: stdout, PEM only]",
                                             show_default=False)] = None,
    steps: Annotated[bool, typer.Option("--steps/--no-steps",
                                        help="Print the install steps (on stderr; stdout is the certificate)")] = True,
    data_dir: DataDirOpt = None,
) -> None:
    """The certificate a tenant's clients must trust (install it in their trust stores)."""
    if fmt == "der" and out is None:
        raise OperatorError("DER is binary: give --out FILE", hint="or use --format pem to print it")
    data = ops.export(paths.data_dir(data_dir), tenant, fmt)
    if out is None:
        sys.stdout.write(data.decode())
    else:
        try:
            atomic_write(out, data, mode=PUBLIC_MODE)
        except OSError as exc:
            raise OperatorError(f"cannot write {out}: {exc.strerror}") from None
        note(f"wrote {out} ({fmt.upper()})")
    if steps:
        note(install_text(f"this file as ca.pem or ca.der, or from http://{ONBOARD_HOST}/ through the proxy").rstrip())


@app.command("import")
@errors_to_exit
def import_(
    cert: Annotated[Path, typer.Option("--cert", help="The CA certificate (PEM or DER; PEM may carry the chain)",
                                       show_default=False)],
    key: Annotated[Path, typer.Option("--key", help="Its private key (PEM or DER, unencrypted)", show_default=False)],
    chain: Annotated[Path | None, typer.Option("--chain", help="The certificates above it, issuer first",
                                               show_default=False)] = None,
    tenant: TenantOpt = None,
    replace: Annotated[bool, typer.Option("--replace", help="Retire the current CA instead of refusing")] = False,
    data_dir: DataDirOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Bring your own root or intermediate CA."""
    _print(ops.import_(paths.data_dir(data_dir), cert, key, chain, tenant, replace=replace), json_out)


@app.command("rotate")
@errors_to_exit
def rotate(
    tenant: TenantOpt = None,
    key: Annotated[str | None, typer.Option("--key", help=f"Key type: {', '.join(KEY_TYPES)} [default: as before]",
                                            show_default=False)] = None,
    days: Annotated[int | None, typer.Option("--days", help="Validity in days [default: as before]",
                                             show_default=False)] = None,
    data_dir: DataDirOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """A new CA becomes current; the old one is kept, retired, until its last leaf expires."""
    _print(ops.rotate(paths.data_dir(data_dir), tenant, key, days), json_out)
