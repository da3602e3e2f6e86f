"""Progress bars for long operations (audit export, audit index, user import), in one place.

A bar is drawn on stderr only when a person is watching: stdout and stderr are both terminals
and the operation's data does not go to stdout (a bar between exported rows on one screen would
garble both). Piped or redirected (``export > file``, ``export | gzip``, cron, CI), nothing but
the closing one-line summary is written. Below ``minimum`` items no bar is drawn: it would only
flash.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


def _isatty(stream: object) -> bool:
    try:
        return bool(stream.isatty())  # type: ignore[attr-defined]
    except (AttributeError, ValueError):  # closed or not a file
        return False


def wanted(total: int, *, minimum: int = 2, data_on_stdout: bool = False) -> bool:
    """Whether a bar is drawn for ``total`` items (see the module's docstring)."""
    if total < minimum or data_on_stdout:
        return False
    return _isatty(sys.stdout) and _isatty(sys.stderr)


@contextmanager
def progress(
    label: str, total: int, *, minimum: int = 2, data_on_stdout: bool = False, transient: bool = False
) -> Iterator[Callable[[int], None]]:
    """``with progress("exporting", n) as update: ... update(done)``; a no-op when no bar is
    wanted. ``update`` takes the number of items done so far."""
    if not wanted(total, minimum=minimum, data_on_stdout=data_on_stdout):
        yield lambda done: None
        return
    bar = Progress(
        TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=Console(stderr=True), transient=transient,
    )
    with bar:
        task = bar.add_task(label, total=total)
        yield lambda done: bar.update(task, completed=done)
