"""Runs pane: past runs in a table; open one to generate from it or continue training it; select
several to overlay their validation curves in bits per character.

Extensible: ``RUN_ACTIONS`` maps a key to (label, method name) and other views (insight) may add
entries whose method they attach to ``RunsPane`` or handle via ``RunOpened(action=...)``.
"""

from __future__ import annotations

from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable, Static

from engine.runs.folders import RunInfo, list_runs, read_metrics
from tui import catalog
from tui.messages import RunOpened
from tui.widgets.curve import LinePlot


class RunsPane(Vertical):
    """The table of runs under $SEQPLAY_HOME/runs and an overlay chart."""

    BINDINGS = [
        Binding("space", "toggle_select", "Select", id="runs_select"),
        Binding("enter", "open_run", "Open", id="runs_open"),
        Binding("c", "continue_run", "Continue", id="runs_continue"),
        Binding("o", "overlay", "Overlay", id="runs_overlay"),
        Binding("r", "refresh_runs", "Refresh", id="runs_refresh"),
    ]

    class Listed(Message):
        def __init__(self, runs: list[RunInfo]) -> None:
            super().__init__()
            self.runs = runs

    class Curves(Message):
        def __init__(self, curves: dict[str, list[tuple[int, float]]]) -> None:
            super().__init__()
            self.curves = curves

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.runs: list[RunInfo] = []
        self.selected: set[str] = set()

    def compose(self) -> ComposeResult:
        yield Static("space: select · enter: open for generation · c: continue training · o: overlay selected · r: refresh",
                     id="runs-help")
        yield DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
        yield LinePlot(title="validation bits per character", ylabel="bits/char", id="overlay")

    def on_mount(self) -> None:
        table = self.query_one("#runs-table", DataTable)
        table.add_columns("✓", "run", "arch", "source", "params", "steps", "best val bpc", "status", "updated")
        self.refresh_runs()

    def focus_default(self) -> None:
        self.query_one("#runs-table").focus()

    def refresh_runs(self) -> None:
        self._list_worker()

    @work(thread=True, exclusive=True, group="runs-list", exit_on_error=False)
    def _list_worker(self) -> None:
        self.post_message(self.Listed(list_runs()))

    @on(Listed)
    def _listed(self, message: Listed) -> None:
        self.runs = message.runs
        names = {str(r.path) for r in self.runs}
        self.selected &= names
        self._fill()

    def _fill(self) -> None:
        table = self.query_one("#runs-table", DataTable)
        row = table.cursor_row
        table.clear()
        for r in self.runs:
            bpc = f"{r.best_val_bpc:.3f}" if isinstance(r.best_val_bpc, (int, float)) else "--"
            table.add_row("✓" if str(r.path) in self.selected else "", r.name, r.arch, Path(r.source).name or r.source,
                          catalog.human_count(r.params), str(r.steps if r.steps is not None else "--"), bpc,
                          r.status + (f" ({r.problem})" if r.problem else ""), catalog.human_time(r.updated or r.created),
                          key=str(r.path))
        if self.runs:
            table.move_cursor(row=min(row, len(self.runs) - 1))

    def _current(self) -> RunInfo | None:
        table = self.query_one("#runs-table", DataTable)
        if not self.runs or table.cursor_row < 0 or table.cursor_row >= len(self.runs):
            return None
        return self.runs[table.cursor_row]

    def action_toggle_select(self) -> None:
        run = self._current()
        if run is None:
            return
        key = str(run.path)
        self.selected ^= {key}
        self._fill()

    def action_open_run(self) -> None:
        run = self._current()
        if run is not None:
            self.post_message(RunOpened(str(run.path), "generate"))

    @on(DataTable.RowSelected, "#runs-table")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_open_run()

    def action_continue_run(self) -> None:
        run = self._current()
        if run is not None:
            self.post_message(RunOpened(str(run.path), "continue"))

    def action_overlay(self) -> None:
        paths = sorted(self.selected) or ([str(self._current().path)] if self._current() else [])
        if not paths:
            self.app.notify("select runs with space first", severity="warning", timeout=3)
            return
        self._curves_worker(paths)

    def overlay(self) -> None:
        self.action_overlay()

    @work(thread=True, exclusive=True, group="runs-curves", exit_on_error=False)
    def _curves_worker(self, paths: list[str]) -> None:
        self.post_message(self.Curves({Path(p).name: [(int(m["step"]), float(m["val_bpc"])) for m in read_metrics(Path(p))
                                                    if m.get("event") == "eval" and m.get("val_bpc") is not None]
                                    for p in paths}))

    @on(Curves)
    def _curves(self, message: Curves) -> None:
        plot = self.query_one("#overlay", LinePlot)
        plot.clear()
        empty = [name for name, pts in message.curves.items() if not pts]
        for name, pts in message.curves.items():
            if pts:
                plot.add_points(name, [(float(s), v) for s, v in pts])
        plot.redraw_now()
        if empty:
            self.app.notify(f"no validation points in {', '.join(empty)}", severity="warning", timeout=4)
