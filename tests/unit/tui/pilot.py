"""Reading the dashboard as a person does: the screen's text, polled until it shows something."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from typing import Any

from textual.app import App

from arcus.testing.wait import async_wait_until


def screen_text(app: App) -> str:
    """The characters on the terminal now, one line per row (the active screen, modals included)."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


async def shows(app: App, *texts: str, timeout: float = 10.0) -> str:
    """Wait until every one of ``texts`` is on the screen; returns the screen's text."""
    def found() -> str | None:
        text = screen_text(app)
        return text if all(t in text for t in texts) else None

    try:
        return await async_wait_until(found, timeout=timeout, what=f"the screen to show {texts!r}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- the screen:\n{screen_text(app)}") from None


async def gone(app: App, text: str, timeout: float = 10.0) -> str:
    return await async_wait_until(lambda: screen_text(app) if text not in screen_text(app) else None,
                                  timeout=timeout, what=f"{text!r} to leave the screen")


def run(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """An async test run on a loop of its own (``asyncio.run``, as the project's other tests do)."""

    @functools.wraps(test)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return wrapper
