"""The Insight pane: look inside a run (gradients through time, attention, gates, surprisal, the
perplexity table, memorisation).

Torch-free: each analysis runs as ``seqplay <analysis> ARGS --json`` in a subprocess started from a
thread worker, so a slow or crashing analysis never blocks or kills the UI; the JSON comes back as an
``InsightPane.Result`` message and is drawn with the same Rich renderers the CLI prints
(``engine.insight.render``). The argument line is pre-filled with the run opened on the Runs pane.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Button, Input, Select, Static

# analysis -> (argument template: {run} is the open run, help line)
ANALYSES: dict[str, tuple[str, str]] = {
    "gradients": ("--distance 100", "fresh models at init (add a RUN for a trained one; --clip 1, --identity-init)"),
    "attention": ("{run} --prompt 'the cat sat'", "Transformer run: token x token heatmaps (--layer L --head H)"),
    "gates": ("{run} --pattern quotes", "recurrent run: gate strips, and units tracking --pattern (regex or preset)"),
    "surprisal": ("{run}", "per-token loss on validation text (--text '...'; a second run shows the difference)"),
    "table": ("", "every run per corpus vs the n-gram baseline (CORPUS --train rnn,lstm --time 60 trains first)"),
    "memorization": ("{run} --samples 2 --tokens 200", "longest span copied from the training text, n-gram overlap"),
}
TIMEOUT = 600.0


def run_analysis(analysis: str, args: str, timeout: float = TIMEOUT) -> dict[str, Any]:
    """Run ``seqplay ANALYSIS ARGS --json`` and return its JSON; raises RuntimeError with one line."""
    try:
        argv = shlex.split(args)
    except ValueError as err:
        raise RuntimeError(f"cannot read the arguments ({err}); check the quotes") from None
    cmd = [sys.executable, "-m", "seqplay", analysis, *argv, "--json"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{analysis} took longer than {timeout:.0f}s; use a shorter text or distance") from None
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        message = next((ln for ln in lines if ln.startswith("error:")), lines[-1] if lines else "failed")
        raise RuntimeError(message.removeprefix("error:").strip())
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise RuntimeError(f"{analysis} printed no JSON result") from None


class InsightView(VerticalScroll):
    """Scrollable area that shows one analysis dict rendered with Rich."""

    DEFAULT_CSS = """
    InsightView { height: 1fr; border: round $panel; }
    InsightView > Static { width: auto; }
    """

    def compose(self) -> ComposeResult:
        yield Static("pick an analysis, edit its arguments and press enter", id="insight-output")

    def show(self, data: dict[str, Any]) -> None:
        from engine.insight.render import render

        self.query_one("#insight-output", Static).update(render(data))
        self.scroll_home(animate=False)

    def show_error(self, message: str) -> None:
        from rich.text import Text

        self.query_one("#insight-output", Static).update(Text(f"error: {message}", style="bold red"))


class InsightPane(Vertical):
    """Analysis picker, argument line, and the result view."""

    DEFAULT_CSS = """
    InsightPane #insight-controls { height: auto; }
    InsightPane #insight-kind { width: 20; }
    InsightPane #insight-args { width: 1fr; }
    InsightPane #insight-help { color: $text-muted; height: auto; }
    """
    BINDINGS = [Binding("ctrl+r", "run_analysis", "Run analysis", id="insight_run")]

    class Result(Message):
        """An analysis finished: its JSON dict, or ``error`` (one line)."""

        def __init__(self, analysis: str, data: dict[str, Any] | None, error: str | None = None) -> None:
            super().__init__()
            self.analysis = analysis
            self.data = data
            self.error = error

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.running = False

    def compose(self) -> ComposeResult:
        with Horizontal(id="insight-controls"):
            yield Select([(name, name) for name in ANALYSES], value="gradients", allow_blank=False, id="insight-kind")
            yield Input(value=ANALYSES["gradients"][0], placeholder="arguments", id="insight-args")
            yield Button("Run", id="insight-run", variant="primary")
        yield Static(ANALYSES["gradients"][1], id="insight-help")
        yield InsightView(id="insight-view")

    @property
    def analysis(self) -> str:
        return str(self.query_one("#insight-kind", Select).value)

    def _open_run(self) -> str:
        run = getattr(self.app, "model_run", None) or getattr(self.app, "last_run_dir", None) or "RUN"
        return shlex.quote(str(run))

    @on(Select.Changed, "#insight-kind")
    def _kind_changed(self, event: Select.Changed) -> None:
        template, help_text = ANALYSES[str(event.value)]
        self.query_one("#insight-args", Input).value = template.format(run=self._open_run())
        self.query_one("#insight-help", Static).update(help_text)

    @on(Input.Submitted, "#insight-args")
    @on(Button.Pressed, "#insight-run")
    def action_run_analysis(self) -> None:
        if self.running:
            self.notify("an analysis is already running", severity="warning")
            return
        self.running = True
        self.query_one("#insight-help", Static).update(f"running seqplay {self.analysis} ...")
        self._work(self.analysis, self.query_one("#insight-args", Input).value)

    @work(thread=True, exclusive=True, exit_on_error=False, group="insight")
    def _work(self, analysis: str, args: str) -> None:
        try:
            self.post_message(self.Result(analysis, run_analysis(analysis, args)))
        except RuntimeError as err:
            self.post_message(self.Result(analysis, None, str(err)))

    def show_result(self, message: InsightPane.Result) -> None:
        """Draw a result (also what tests call with a scripted ``Result``)."""
        self.running = False
        kind = self.query_one("#insight-kind", Select)
        if message.analysis in ANALYSES and kind.value != message.analysis:
            with kind.prevent(Select.Changed):  # keep the user's arguments
                kind.value = message.analysis
        self.query_one("#insight-help", Static).update(ANALYSES.get(message.analysis, ("", ""))[1])
        view = self.query_one(InsightView)
        if message.error is not None or message.data is None:
            view.show_error(message.error or "no result")
            self.notify(message.error or "no result", severity="error")
        else:
            view.show(message.data)

    @on(Result)
    def _on_result(self, message: InsightPane.Result) -> None:
        self.show_result(message)
