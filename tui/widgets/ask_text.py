"""Modal dialogs of the Runs pane: ask for a line of text; show a config difference."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static


class AskText(ModalScreen[str | None]):
    """One line of text; enter accepts, escape cancels (returns None)."""

    DEFAULT_CSS = """
    AskText { align: center middle; }
    AskText > Vertical { width: 70; max-width: 95%; height: auto; border: round $accent; padding: 0 1; background: $panel; }
    AskText #ask-help { color: $text-muted; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, value: str = "", allow_empty: bool = False) -> None:
        super().__init__()
        self.title_text, self.value, self.allow_empty = title, value, allow_empty

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.title_text)
            yield Input(self.value, id="ask-input")
            yield Static("enter: apply · escape: cancel", id="ask-help")

    def on_mount(self) -> None:
        box = self.query_one(Input)
        box.focus()
        self.call_after_refresh(box.select_all)

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        if not event.value.strip() and not self.allow_empty:
            self.query_one("#ask-help", Static).update("[red]type something, or escape to cancel[/]")
            return
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ShowDiff(ModalScreen[None]):
    """The settings where two runs differ; any key closes it."""

    DEFAULT_CSS = """
    ShowDiff { align: center middle; }
    ShowDiff > VerticalScroll { width: 90%; height: 80%; border: round $accent; background: $panel; }
    """
    BINDINGS = [Binding("escape,enter,q", "close", "Close")]

    def __init__(self, a: str, b: str, rows: list[tuple[str, Any, Any]]) -> None:
        super().__init__()
        self.a, self.b, self.rows = a, b, rows

    def compose(self) -> ComposeResult:
        table = Table(title=f"config: {self.a} vs {self.b}", header_style="bold", expand=True)
        table.add_column("setting")
        table.add_column(self.a, overflow="fold")
        table.add_column(self.b, overflow="fold")
        for key, x, y in self.rows:
            table.add_row(key, "-" if x is None else str(x), "-" if y is None else str(y))
        if not self.rows:
            table.add_row("(no difference)", "", "")
        with VerticalScroll():
            yield Static(table)
            yield Static("escape: close", classes="muted")

    def action_close(self) -> None:
        self.dismiss(None)
