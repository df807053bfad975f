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


class Confirm(ModalScreen[bool]):
    """A yes/no question; y or enter answers yes, n or escape no."""

    BINDINGS = [Binding("y,enter", "answer(True)", "Yes"), Binding("n,escape", "answer(False)", "No")]

    def __init__(self, question: str, yes: str = "Yes", no: str = "No") -> None:
        super().__init__()
        self.question, self.yes, self.no = question, yes, no

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(self.question)
            yield Static(f"[b]y[/b] {self.yes} · [b]n[/b] {self.no}", id="dialog-error")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class AskMore(ModalScreen[tuple[str, float] | None]):
    """How much longer to train: more steps, or more seconds (enter in either field accepts)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, step: int | None, elapsed: float | None) -> None:
        super().__init__()
        self.step, self.elapsed = step, elapsed

    def compose(self) -> ComposeResult:
        where = f" (now at step {self.step:,})" if self.step is not None else ""
        with Vertical(id="dialog"):
            yield Label(f"Continue this run{where}", classes="section")
            yield Label("more steps")
            yield Input("1000", id="more-steps", type="integer")
            yield Label("or more seconds")
            yield Input("", id="more-seconds", type="number", placeholder="e.g. 60")
            yield Static("enter: continue · escape: cancel", id="dialog-error")

    def on_mount(self) -> None:
        box = self.query_one("#more-steps", Input)
        box.focus()
        self.call_after_refresh(box.select_all)

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        kind = "steps" if event.input.id == "more-steps" else "time"
        try:
            value = float(event.value)
        except ValueError:
            value = float("nan")
        if not value > 0:
            self.query_one("#dialog-error", Static).update("[red]enter a number above 0[/]")
            return
        self.dismiss((kind, value))

    def action_cancel(self) -> None:
        self.dismiss(None)
