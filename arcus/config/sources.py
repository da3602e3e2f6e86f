"""Where a profile's text comes from: a shipped profile by name, or a file by path.

Shipped profiles are package data of ``arcus.profiles`` read with ``importlib.resources``,
which also works inside a frozen PyInstaller binary. The files live in the top-level
``profiles/`` folder; ``arcus/profiles`` is a symbolic link to it (one copy, see pyproject.toml).
Each starts with a comment header whose first line says who it is for (``summary``). A bare word (no ``/``, no ``.yaml`` or
``.yml`` suffix) is a shipped name; anything else is a path, so ``./edge`` reads a file and
``edge`` the shipped profile.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from arcus.errors import NotFound, OperatorError
from arcus.names import is_valid_name

DEFAULT = "default"
MAX_PROFILE_BYTES = 4 * 1024 * 1024  # a profile is hand-written; anything bigger is a mistake
_PACKAGE = "arcus.profiles"
_SUFFIXES = (".yaml", ".yml")


def is_shipped_name(name_or_path: str) -> bool:
    return "/" not in name_or_path and not name_or_path.endswith(_SUFFIXES)


def shipped_names() -> list[str]:
    root = resources.files(_PACKAGE)
    return sorted(p.name[: -len(".yaml")] for p in root.iterdir() if p.name.endswith(".yaml") and p.is_file())


def summary(text: str) -> str:
    """Who a profile is for: its header's first line (``# Arcus profile "edge" -- for ...``)."""
    first = text.lstrip().split("\n", 1)[0]
    if not first.startswith("#"):
        return ""
    line = first.lstrip("#").strip()
    return line.split(" -- ", 1)[1] if " -- " in line else line


def label_for(name_or_path: str | None) -> str:
    """The file name that error messages use: the path as given, or ``<embedded:NAME>``."""
    name = DEFAULT if name_or_path is None else name_or_path
    return f"<embedded:{name}>" if is_shipped_name(name) else name


def profile_text(name_or_path: str | None) -> tuple[str, str]:
    """``(source_label, text)`` of a shipped profile or a file. Raises OperatorError when unreadable."""
    name = DEFAULT if name_or_path is None else name_or_path
    if is_shipped_name(name):
        return _shipped(name)
    return name, _read_file(Path(name))


def _shipped(name: str) -> tuple[str, str]:
    resource = resources.files(_PACKAGE).joinpath(f"{name}.yaml") if is_valid_name(name) else None
    if resource is None or not resource.is_file():
        raise NotFound(
            f'no shipped profile named "{name}"',
            hint=f"shipped profiles: {', '.join(shipped_names())}; or give a path such as ./{name}.yaml",
        )
    return f"<embedded:{name}>", resource.read_text(encoding="utf-8")


def _read_file(path: Path) -> str:
    try:
        with path.open("rb") as f:
            data = f.read(MAX_PROFILE_BYTES + 1)
    except FileNotFoundError:
        raise NotFound(f"profile file {path} does not exist",
                       hint="give a path to a YAML file, or a shipped profile name such as default") from None
    except IsADirectoryError:
        raise OperatorError(f"cannot read profile {path}: it is a directory", code="invalid") from None
    except OSError as exc:
        raise OperatorError(f"cannot read profile {path}: {exc.strerror or exc}", code="invalid") from None
    if len(data) > MAX_PROFILE_BYTES:
        raise OperatorError(f"cannot read profile {path}: larger than {MAX_PROFILE_BYTES // (1024 * 1024)} MiB",
                            code="invalid")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise OperatorError(f"cannot read profile {path}: line {line} is not UTF-8 text", code="invalid") from None
