"""`arcus config`: check and show profiles without starting anything.

``check`` prints every issue as ``file:line: message`` (stderr, exit 1) or one ``ok`` line;
``show`` prints the effective profile, every default filled in, as YAML or JSON;
``list`` prints the shipped profiles and who each is for;
``graph`` prints who refers to whom (servers -> escapers -> resolvers) as a tree or Graphviz dot.
An unknown profile name or an unreadable file is an OperatorError for the CLI's one error
boundary (``arcus.cli.app.main``), not an issue of the file.
"""

from __future__ import annotations

import sys
from typing import Annotated, NoReturn

import typer
import yaml

from arcus.cli._common import JsonOpt, print_json
from arcus.config import parse_profile, profile_text, shipped_names
from arcus.config.loader import parse_topology
from arcus.config.dump import profile_to_dict
from arcus.config.sources import summary
from arcus.errors import ConfigError, ConfigIssue

app = typer.Typer(no_args_is_help=True, help="Check and show profiles (servers, escapers, resolvers, timeouts, log).")

ProfileArg = Annotated[
    str,
    typer.Argument(metavar="PATH_OR_NAME", help="A profile file, or the name of a shipped profile (e.g. default)",
                   show_default=False),
]
OptionalProfileArg = Annotated[
    str | None,
    typer.Argument(metavar="[PATH_OR_NAME]", help="A profile file or shipped profile name [default: default]",
                   show_default=False),
]


def _issue_dict(issue: ConfigIssue) -> dict[str, object]:
    return {"file": issue.file, "line": issue.line, "message": issue.message}


def _fail(exc: ConfigError) -> NoReturn:
    for issue in exc.issues:
        sys.stderr.write(f"{issue}\n")
    raise typer.Exit(1)


def _count(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


@app.command("check")
def check(profile: ProfileArg, json_out: JsonOpt = False) -> None:
    """Validate a profile and print every error as file:line: message. Starts nothing."""
    source, text = profile_text(profile)
    try:
        loaded = parse_profile(text, source)
    except ConfigError as exc:
        if json_out:
            print_json({"ok": False, "source": source, "issues": [_issue_dict(i) for i in exc.issues]})
            raise typer.Exit(1) from None
        _fail(exc)
    if json_out:
        print_json({"ok": True, "source": source, "issues": []})
        return
    counts = ", ".join((
        _count(len(loaded.servers), "server"),
        _count(len(loaded.escapers), "escaper"),
        _count(len(loaded.resolvers), "resolver"),
    ))
    typer.echo(f"{source}: ok ({counts})")


@app.command("list")
def list_(json_out: JsonOpt = False) -> None:
    """List the shipped profiles (embedded in arcus) and who each one is for."""
    rows = [{"name": name, "for": summary(profile_text(name)[1])} for name in shipped_names()]
    if json_out:
        print_json(rows)
        return
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        typer.echo(f"{r['name']:<{width}}  {r['for']}")


@app.command("show")
def show(profile: OptionalProfileArg = None, json_out: JsonOpt = False) -> None:
    """Print the effective profile: every default filled in, global timeouts and limits copied into servers."""
    source, text = profile_text(profile)
    try:
        data = profile_to_dict(parse_profile(text, source))
    except ConfigError as exc:
        _fail(exc)
    if json_out:
        print_json(data)
        return
    typer.echo(f"# effective profile of {source}")
    typer.echo(yaml.safe_dump(data, sort_keys=False, default_flow_style=False).rstrip("\n"))


@app.command("graph")
def graph(
    profile: ProfileArg,
    dot: Annotated[bool, typer.Option("--dot", help="Print Graphviz dot (pipe it to `dot -Tsvg`)")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Print the topology: each server, the escapers it leads to, and their resolvers."""
    source, text = profile_text(profile)
    try:
        topology = parse_topology(text, source)
    except ConfigError as exc:
        _fail(exc)
    if json_out:
        print_json({"source": source, **topology.to_dict()})
        return
    typer.echo(topology.to_dot() if dot else topology.to_text(), nl=False)
