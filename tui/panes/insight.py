"""The Insight pane: look inside a run (gradients through time, attention, gates, surprisal, the
perplexity table, memorisation) without typing flags.

A run picker with a snapshot picker beside it (the run's best checkpoint, or ``RUN@best``/``@last``/``@STEP``
of its time machine), the analysis, and a form per analysis derived from its typed settings
(``engine.insight.params``: one control per field, labelled, empty = the engine chooses). Each form
keeps its values when the analysis changes. Running sends ``Analyze`` through the worker protocol (on
the run picked, or the model being trained); ``AnalysisProgress`` fills the progress bar, escape or
the Cancel button sends ``CancelAnalysis``, and the ``AnalysisDone`` data is drawn with the renderers
the CLI prints (``engine.insight.render``), fitted to the pane's width.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, Checkbox, ContentSwitcher, Input, Label, ProgressBar, Select, Static

from engine.errors import SeqplayError
from engine.insight import params as IP
from engine.worker import protocol as P
from tui.widgets.run_picker import LIVE, RunPicker
from tui.widgets.snapshot_picker import SnapshotPicker
from tui.widgets.tick import Tick

_JOBS = itertools.count(1)


class ParamsForm(Vertical):
    """One control per field of an analysis's settings dataclass; ``values()`` reads them back."""

    DEFAULT_CSS = """
    ParamsForm { height: auto; layout: grid; grid-size: 3; grid-gutter: 0 1; }
    ParamsForm > .param { height: 1; width: 1fr; }
    ParamsForm > .param > Label { width: auto; max-width: 14; padding-right: 1; color: $text-muted; }
    ParamsForm > .param > Input, ParamsForm > .param > Select { width: 1fr; }
    ParamsForm > .param > Checkbox { width: 1fr; }
    """

    def __init__(self, cls: type[IP.AnalysisParams], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cls = cls
        self.fields = dataclasses.fields(cls)

    def compose(self) -> ComposeResult:
        defaults = self.cls()
        for f in self.fields:
            kind, value, meta = IP.field_type(self.cls, f.name), getattr(defaults, f.name), f.metadata
            wid = f"p-{self.cls.analysis}-{f.name}"
            with Horizontal(classes="param") as row:
                row.tooltip = meta.get("help", "")
                if kind is bool:
                    yield Tick(meta.get("label", f.name), bool(value), id=wid, compact=True)
                    continue
                yield Label(meta.get("label", f.name))
                if meta.get("run"):  # a run: picked from the list, never typed
                    yield RunPicker(live=False, id=wid)
                elif meta.get("choices"):
                    yield Select([(c, c) for c in meta["choices"]], value=value, allow_blank=False, id=wid, compact=True)
                else:
                    itype = "integer" if kind is int else "number" if kind is float else "text"
                    yield Input("" if value is None else str(value), type=itype, id=wid, compact=True,
                                placeholder="auto" if IP.optional(self.cls, f.name) else "")

    def on_resize(self) -> None:
        self.styles.grid_size_columns = max(1, self.size.width // 26)

    def control(self, name: str) -> Any:
        return self.query_one(f"#p-{self.cls.analysis}-{name}")

    def values(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in self.fields:
            kind, widget = IP.field_type(self.cls, f.name), self.control(f.name)
            if isinstance(widget, Checkbox):
                out[f.name] = bool(widget.value)
            elif isinstance(widget, RunPicker):
                out[f.name] = widget.choice
            elif isinstance(widget, Select):
                out[f.name] = widget.value
            else:
                text = widget.value.strip()
                if not text and IP.optional(self.cls, f.name):
                    out[f.name] = None
                elif kind is int:
                    out[f.name] = int(text) if text.lstrip("-").isdigit() else text
                elif kind is float:
                    try:
                        out[f.name] = float(text)
                    except ValueError:
                        out[f.name] = text
                else:
                    out[f.name] = text
        return out

    def params(self) -> IP.AnalysisParams:
        """The typed, validated settings (raises ConfigError with one line)."""
        return IP.params_from_dict(self.cls.analysis, self.values())


class InsightView(VerticalScroll):
    """Scrollable area that shows one analysis dict rendered with Rich."""

    DEFAULT_CSS = """
    InsightView { height: 1fr; border: round $panel; }
    InsightView > Static { width: auto; }
    """

    def compose(self) -> ComposeResult:
        yield Static("pick a run and an analysis, then press Run (ctrl+r)", id="insight-output")

    def show(self, data: dict[str, Any]) -> None:
        from engine.insight.render import render

        width, height = max(self.size.width - 4, 40), max(8, min(20, self.size.height - 4))
        self.query_one("#insight-output", Static).update(render(data, width=width, height=height))
        self.scroll_home(animate=False)

    def show_error(self, message: str) -> None:
        self.query_one("#insight-output", Static).update(Text(f"error: {message}", style="bold red"))


class InsightPane(Vertical):
    """Run picker, analysis picker, the analysis's form, progress, and the result view."""

    DEFAULT_CSS = """
    InsightPane #insight-controls { height: 1; }
    InsightPane #insight-kind { width: 28; }
    InsightPane #insight-run { width: 1fr; }
    InsightPane #insight-at { width: 18; }
    InsightPane #insight-controls Button { min-width: 8; width: auto; height: 1; border: none; margin-left: 1; }
    InsightPane #insight-forms { height: auto; }
    InsightPane #insight-progress-row { height: 1; }
    InsightPane #insight-progress { width: 24; }
    InsightPane #insight-status { width: 1fr; color: $text-muted; }
    """
    BINDINGS = [
        Binding("ctrl+r", "run_analysis", "Run analysis", id="insight_run"),
        Binding("escape", "cancel_analysis", "Cancel analysis", id="insight_cancel"),
        Binding("b", "train_baseline", "Train n-gram baseline", id="insight_baseline"),
    ]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.job: str | None = None
        self.running = False
        self.last: P.AnalysisDone | None = None
        self.baseline_corpus: str | None = None  # a table group without an n-gram row

    def compose(self) -> ComposeResult:
        with Horizontal(id="insight-controls"):
            yield Select([(cls.title, name) for name, cls in IP.PARAMS.items()], value="gradients",
                         allow_blank=False, id="insight-kind", compact=True)
            yield RunPicker(id="insight-run")
            yield SnapshotPicker(id="insight-at")
            yield Button("Run", id="insight-go", variant="primary", compact=True)
            yield Button("Cancel", id="insight-stop", variant="error", compact=True, disabled=True)
        with ContentSwitcher(initial="form-gradients", id="insight-forms"):
            for name, cls in IP.PARAMS.items():
                yield ParamsForm(cls, id=f"form-{name}")
        with Horizontal(id="insight-progress-row"):
            yield ProgressBar(total=1, show_eta=False, id="insight-progress")
            yield Static(IP.GradientsParams.__doc__ or "", id="insight-status")
        yield InsightView(id="insight-view")

    # -- state ------------------------------------------------------------------------------------
    @property
    def analysis(self) -> str:
        return str(self.query_one("#insight-kind", Select).value)

    def form(self, analysis: str | None = None) -> ParamsForm:
        return self.query_one(f"#form-{analysis or self.analysis}", ParamsForm)

    def focus_default(self) -> None:
        self.query_one("#insight-kind", Select).focus()

    def on_show(self) -> None:
        app = self.app
        want = getattr(app, "model_run", None) or getattr(app, "last_run_dir", None)
        self.query_one("#insight-run", RunPicker).reload(training=bool(getattr(app, "train_job", None)), want=want)
        self.form("surprisal").control("other").reload()
        self._load_snapshots()  # a run still training writes new ones
        self._suit_corpus()

    @on(Select.Changed, "#insight-run")
    def _load_snapshots(self) -> None:
        choice = self.query_one("#insight-run", RunPicker).choice
        self.query_one("#insight-at", SnapshotPicker).load(None if choice == LIVE else choice)

    def _suit_corpus(self) -> None:
        """Defaults that suit the loaded corpus: fresh gradient models read it (when left at default)."""
        try:
            spec = self.app.pane("data").spec  # type: ignore[attr-defined]
        except Exception:  # noqa: BLE001 - the pane works without a Data pane (tests, embedding)
            return
        box = self.form("gradients").control("source")
        if spec and box.value == IP.GradientsParams().source:
            box.value = str(spec)

    def _status(self, text: str) -> None:
        self.query_one("#insight-status", Static).update(text)

    def _set_running(self, running: bool) -> None:
        self.running = running
        self.query_one("#insight-go", Button).disabled = running
        self.query_one("#insight-stop", Button).disabled = not running
        self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "cancel_analysis":
            return self.running
        if action == "train_baseline":
            return self.baseline_corpus is not None and not self.running
        return True

    @on(Select.Changed, "#insight-kind")
    def _kind_changed(self, event: Select.Changed) -> None:
        self.query_one(ContentSwitcher).current = f"form-{event.value}"
        cls = IP.PARAMS[str(event.value)]
        self._status(cls.__doc__ or "")

    # -- running ----------------------------------------------------------------------------------
    @on(Button.Pressed, "#insight-go")
    @on(Input.Submitted, "ParamsForm Input")
    def action_run_analysis(self) -> None:
        if self.running:
            self.notify("an analysis is running; escape cancels it", severity="warning")
            return
        try:
            params = self.form().params()
        except SeqplayError as err:
            self.notify(str(err), title="Insight", severity="error", timeout=6)
            return
        self.start(params)

    def start(self, params: IP.AnalysisParams) -> None:
        """Send ``Analyze`` for ``params`` on the picked run (or the live model)."""
        choice = self.query_one("#insight-run", RunPicker).choice
        if params.analysis == "gradients" and not getattr(params, "fresh", True) and choice is None:
            self.notify("pick a run, or tick 'fresh models'", title="Insight", severity="error")
            return
        if params.needs_run and choice is None:
            self.notify("pick a run first (or train one)", title="Insight", severity="error")
            return
        self.job = f"analysis-{next(_JOBS)}"
        live = choice == LIVE
        run = None if live or choice is None else choice + self.query_one("#insight-at", SnapshotPicker).suffix
        self.app.send(P.Analyze(job=self.job, params=params, run=run, live=live))  # type: ignore[attr-defined]
        self._set_running(True)
        bar = self.query_one(ProgressBar)
        bar.update(total=None, progress=0)
        self._status(f"{params.title}: starting ...")

    def action_cancel_analysis(self) -> None:
        if self.running and self.job:
            self.app.send(P.CancelAnalysis(job=self.job))  # type: ignore[attr-defined]
            self._status("cancelling ...")

    @on(Button.Pressed, "#insight-stop")
    def _stop_pressed(self) -> None:
        self.action_cancel_analysis()

    def action_train_baseline(self) -> None:
        if self.baseline_corpus is None or self.running:
            return
        self.query_one("#insight-kind", Select).value = "table"
        self.start(IP.TableParams(corpus=self.baseline_corpus, train="ngram"))

    # -- events -----------------------------------------------------------------------------------
    def apply(self, events: list[P.Event]) -> None:
        """Progress and results of this pane's job (others are stale and dropped)."""
        for ev in events:
            if ev.job != self.job:
                continue
            if isinstance(ev, P.AnalysisProgress):
                self.query_one(ProgressBar).update(total=max(ev.total, 1), progress=min(ev.done, ev.total))
                self._status(f"[{ev.done}/{ev.total}] {ev.message}")
            elif isinstance(ev, P.AnalysisDone):
                self.show_done(ev)

    def show_done(self, ev: P.AnalysisDone) -> None:
        """Draw a finished job (also what tests call with a scripted ``AnalysisDone``)."""
        self._set_running(False)
        self.job = None
        self.last = ev
        bar = self.query_one(ProgressBar)
        view = self.query_one(InsightView)
        if ev.reason != "done" or ev.data is None:
            bar.update(total=1, progress=0)
            if ev.reason == "cancelled":
                self._status("cancelled")
                return
            view.show_error(ev.message or "no result")
            self._status(f"error: {ev.message}")
            self.notify(ev.message or "no result", title="Insight", severity="error", timeout=8)
            return
        bar.update(total=1, progress=1)
        kind = self.query_one("#insight-kind", Select)
        shown = "surprisal" if ev.analysis == "surprisal_diff" else ev.analysis
        if shown in IP.PARAMS and kind.value != shown:
            with kind.prevent(Select.Changed):
                kind.value = shown
            self.query_one(ContentSwitcher).current = f"form-{shown}"
        view.show(ev.data)
        self._status(self._summary(ev))
        self.refresh_bindings()

    def _summary(self, ev: P.AnalysisDone) -> str:
        data = ev.data or {}
        took = f" in {ev.seconds:.1f} s" if ev.seconds else ""
        self.baseline_corpus = None
        if data.get("analysis") == "gates" and data.get("search"):
            pattern = data["search"]["pattern"]
            self.form("gates").control("pattern").placeholder = f"auto: {pattern}"
            how = "found in the text" if data.get("pattern_chosen") else "yours"
            return f"gates{took}; pattern {pattern!r} ({how})"
        if data.get("analysis") == "attention" and data.get("prompt"):
            self.form("attention").control("prompt").placeholder = f"auto: {data['prompt'][:30]!r}"
        if data.get("analysis") == "table":
            missing = [g["source"] for g in data.get("groups", []) if g.get("baseline_bpc") is None]
            if missing:
                self.baseline_corpus = missing[0]
                return f"table{took}; no n-gram baseline on {missing[0]}: press b to train it"
        return f"{ev.analysis} done{took}"
