"""Modal screens: confirmations, the tenant forms, and a message to read (a refused reload).

A form checks what was typed with the very functions the CLI and the service layer use
(:meth:`arcus.store.tenants.NewTenant.check`, :mod:`arcus.units`), shows the refusal and its hint
in place and sends nothing; only a form that passes posts :class:`Send`. The daemon may still
refuse (a name that exists): its error is shown the same way and the form stays open.
"""

from __future__ import annotations

import re
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from arcus.errors import OperatorError
from arcus.store.tenants import NewTenant
from arcus.tui.messages import Answer, Send
from arcus.units import format_bandwidth, parse_bandwidth, parse_count, parse_rate

FORM_CSS = """
ModalScreen { align: center middle; }
.dialog { width: 76; max-width: 100%; height: auto; max-height: 100%; border: round $accent;
          background: $surface; padding: 0 1; }
.dialog .title { text-style: bold; width: 100%; }
.dialog Input { width: 100%; }
.dialog .row { height: auto; width: 100%; }
.dialog .row Label { width: 14; padding: 1 1 0 0; }
.dialog .row Input { width: 1fr; }
.dialog .error { color: $error; height: auto; }
.dialog .buttons { height: auto; width: 100%; align-horizontal: right; }
.dialog Button { margin: 0 0 0 1; min-width: 10; }
.message-body { height: auto; max-height: 16; }
"""


def error_text(exc: OperatorError) -> str:
    text = f"{exc.message}"
    if exc.hint:
        text += f"\nhint: {exc.hint}"
    return text


class ConfirmScreen(ModalScreen[bool]):
    """Yes or no; ``y``/``n``/Esc work as well as the buttons."""

    BINDINGS = [Binding("y", "answer(True)", "yes"), Binding("n,escape", "answer(False)", "no")]

    def __init__(self, question: str, yes: str = "Yes") -> None:
        super().__init__()
        self.question = question
        self.yes = yes

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(self.question, classes="title", markup=False)
            with Horizontal(classes="buttons"):
                yield Button(f"{self.yes} (y)", id="yes", variant="error")
                yield Button("No (n)", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class MessageScreen(ModalScreen[None]):
    """A title and a text to read (e.g. a refused profile's ``file:line`` lines); Esc or Enter closes."""

    BINDINGS = [Binding("escape,enter,q", "close", "close")]

    def __init__(self, title: str, text: str) -> None:
        super().__init__()
        self.title_text = title
        self.text = text

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="message"):
            yield Static(self.title_text, classes="title", markup=False)
            with VerticalScroll(classes="message-body"):
                yield Static(self.text, id="message-text", markup=False)
            with Horizontal(classes="buttons"):
                yield Button("Close (Esc)", id="close")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(None)

    def action_close(self) -> None:
        self.dismiss(None)


class _Form(ModalScreen[dict[str, Any] | None]):
    """A form: ``fields`` (id, label, initial value, placeholder), a check, one command."""

    BINDINGS = [Binding("escape", "cancel", "cancel")]
    title_text = ""
    submit_label = "Save"
    held: Answer | None = None
    """The answer that came while another screen covered the form (the notice of a terminal
    too small, :class:`arcus.tui.app.TooSmall`): dismiss() takes off the top screen, so the
    form handles it once it is the top screen again."""

    def fields(self) -> list[tuple[str, str, str, str]]:
        raise NotImplementedError

    def command(self, values: dict[str, str]) -> tuple[str, dict[str, Any]]:
        """The command to send for ``values``; raises OperatorError to refuse them."""
        raise NotImplementedError

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(self.title_text, classes="title", markup=False)
            for fid, label, value, placeholder in self.fields():
                with Horizontal(classes="row"):
                    yield Label(label)
                    yield Input(value=value, placeholder=placeholder, id=fid)
            yield Static("", id="form-error", classes="error", markup=False)
            with Horizontal(classes="buttons"):
                yield Button(self.submit_label, id="submit", variant="primary")
                yield Button("Cancel (Esc)", id="cancel")

    def values(self) -> dict[str, str]:
        return {i.id or "": i.value for i in self.query(Input)}

    def show_error(self, text: str) -> None:
        self.query_one("#form-error", Static).update(text)

    def submit(self) -> None:
        try:
            cmd, args = self.command(self.values())
        except OperatorError as exc:
            self.show_error(error_text(exc))
            return
        self.show_error("sending…")
        self.query_one("#submit", Button).disabled = True
        self.post_message(Send(cmd, args, origin=self))

    def on_answer(self, answer: Answer) -> None:
        if not self.is_active:
            self.held = answer
            return
        self.query_one("#submit", Button).disabled = False
        if answer.error is not None:
            self.show_error(error_text(answer.error))
            return
        self.dismiss(answer.result)

    def on_screen_resume(self) -> None:
        answer, self.held = self.held, None
        if answer is not None:
            self.on_answer(answer)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "submit":
            self.submit()
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)


_SEPARATORS = re.compile(r"[\s,]+")


class TenantAddForm(_Form):
    title_text = "Add a tenant"
    submit_label = "Add"

    def fields(self) -> list[tuple[str, str, str, str]]:
        return [
            ("name", "name", "", "acme  ([A-Za-z0-9._-])"),
            ("display_name", "display name", "", "Acme Corp  (optional)"),
            ("sources", "sources", "", "10.20.0.0/16, 2001:db8::/48  (optional)"),
        ]

    def command(self, values: dict[str, str]) -> tuple[str, dict[str, Any]]:
        name = values["name"].strip()
        display = values["display_name"].strip() or None
        sources = [s for s in _SEPARATORS.split(values["sources"]) if s]
        new = NewTenant.check(name, display, sources)  # the store's own check: name, display name, CIDRs
        args: dict[str, Any] = {"name": new.name, "sources": list(new.sources)}
        if display is not None:
            args["display_name"] = new.display_name
        return "tenant.add", args


class TenantLimitsForm(_Form):
    """Connections, requests/s and bandwidth, each a number or ``unlimited``; a field left as it
    was is not sent."""

    submit_label = "Set"

    def __init__(self, tenant: dict[str, Any]) -> None:
        super().__init__()
        self.tenant = tenant
        self.title_text = f"Limits of tenant {tenant.get('name')}"
        self._initial = {fid: value for fid, _, value, _ in self.fields()}

    def fields(self) -> list[tuple[str, str, str, str]]:
        t = self.tenant
        conns = "unlimited" if t.get("max_conns") is None else str(t["max_conns"])
        rps = "unlimited" if t.get("rps") is None else f"{t['rps']:g}"
        bandwidth = format_bandwidth(t.get("bandwidth")).removesuffix("/s")
        return [
            ("max_conns", "connections", conns, "500 or unlimited"),
            ("rps", "requests/s", rps, "200 or unlimited"),
            ("bandwidth", "bandwidth", bandwidth, "50M (bits/s), 5MB (bytes/s) or unlimited"),
        ]

    def command(self, values: dict[str, str]) -> tuple[str, dict[str, Any]]:
        parsers = {"max_conns": parse_count, "rps": parse_rate, "bandwidth": parse_bandwidth}
        changes: dict[str, Any] = {}
        for fid, parse in parsers.items():
            text = values[fid].strip()
            if text == self._initial[fid]:
                continue
            if not text:
                raise OperatorError(f"{fid.replace('_', ' ')}: give a value", hint="a number, or 'unlimited'")
            changes[fid] = parse(text)
        if not changes:
            raise OperatorError("nothing to change", hint="edit a field, or Esc to close")
        return "tenant.set", {"name": self.tenant["name"], **changes}
