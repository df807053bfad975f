"""Small modal dialogs."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static


class AskNumber(ModalScreen[float | None]):
    """Ask for one positive number; enter accepts, escape cancels (returns None)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, value: float | None, minimum: float = 0.0) -> None:
        super().__init__()
        self.title_text = title
        self.value = value
        self.minimum = minimum

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(self.title_text, classes="section")
            yield Input("" if self.value is None else f"{self.value:g}", id="dialog-input", type="number")
            yield Static("enter: apply · escape: cancel", id="dialog-error")

    def on_mount(self) -> None:
        box = self.query_one(Input)
        box.focus()
        self.call_after_refresh(box.select_all)  # typing replaces the old value

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        try:
            value = float(event.value)
        except ValueError:
            value = float("nan")
        if not value > self.minimum:
            self.query_one("#dialog-error", Static).update(f"[red]enter a number above {self.minimum:g}[/]")
            return
        self.dismiss(value)

    def action_cancel(self) -> None:
        self.dismiss(None)
