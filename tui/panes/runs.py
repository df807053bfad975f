"""Runs pane: past runs in a table you can manage, and an overlay chart of their validation curves.

The listing is ``engine.runs.folders.list_runs``; the extra columns (wall time, tokens seen, final LR,
size, note) and every change (rename, note, delete to the trash and undo, config diff, curves by step,
tokens or time) are ``engine.runs.manage``. Both are torch-free and run in a thread worker. "Save card"
(``w``) asks the worker to write the selected run's experiment card (``WriteCard``: it samples the model)
and says where it went when the ``LabDone`` comes back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable, Static

from engine.errors import SeqplayError
from engine.runs import manage
from engine.worker import protocol as P
from tui.messages import RunOpened
from tui.widgets.ask_text import AskText, ShowDiff
from tui.widgets.curve import LinePlot

X_LABELS = {"step": "step", "tokens": "tokens seen", "time": "seconds"}


def human(n: float | None, unit: str = "") -> str:
    if n is None:
        return "--"
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.1f}{suffix}{unit}"
    return f"{n:.0f}{unit}"


def duration(s: float | None) -> str:
    if s is None:
        return "--"
    s = int(round(s))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class RunsPane(Vertical):
    """The table of runs under $SEQPLAY_HOME/runs and an overlay chart."""

    DEFAULT_CSS = """
    RunsPane #runs-help { height: auto; color: $text-muted; }
    RunsPane #runs-table { height: 1fr; min-height: 5; }
    RunsPane #overlay { height: 1fr; min-height: 8; }
    """
    BINDINGS = [
        Binding("space", "toggle_select", "Select", id="runs_select"),
        Binding("enter", "open_run", "Open", id="runs_open"),
        Binding("c", "continue_run", "Continue", id="runs_continue"),
        Binding("o", "overlay", "Overlay", id="runs_overlay"),
        Binding("a", "cycle_axis", "x: step/tokens/time", id="runs_axis"),
        Binding("e", "rename", "Rename", id="runs_rename"),
        Binding("n", "note", "Note", id="runs_note"),
        Binding("d", "delete", "Delete", id="runs_delete"),
        Binding("u", "undo_delete", "Undo delete", id="runs_undo"),
        Binding("D", "diff", "Diff configs", id="runs_diff"),
        Binding("w", "save_card", "Save card", id="runs_card"),
        Binding("r", "refresh_runs", "Refresh", id="runs_refresh"),
    ]

    class Listed(Message):
        def __init__(self, runs: list[Any], figures: dict[str, manage.RunFigures]) -> None:
            super().__init__()
            self.runs = runs
            self.figures = figures

    class Curves(Message):
        def __init__(self, curves: dict[str, list[tuple[float, float]]], axis: str) -> None:
            super().__init__()
            self.curves = curves
            self.axis = axis

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.runs: list[Any] = []
        self.figures: dict[str, manage.RunFigures] = {}
        self.selected: set[str] = set()
        self.axis = "step"
        self.trashed: list[Path] = []  # undo stack of deletions
        self.overlaid: list[str] = []
        self.card_job: str | None = None  # the WriteCard job in flight
        self._cards = 0

    def compose(self) -> ComposeResult:
        yield Static("space select · enter open · c continue · o overlay · a axis · e rename · n note · d delete · "
                     "u undo · D diff · w card", id="runs-help")
        yield DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
        yield LinePlot(title="validation bits per character", ylabel="bits/char", id="overlay")

    def on_mount(self) -> None:
        table = self.query_one("#runs-table", DataTable)
        table.add_columns("✓", "run", "arch", "val bpc", "steps", "tokens", "time", "final lr", "params", "size",
                          "source", "status", "note")
        self.refresh_runs()

    def focus_default(self) -> None:
        self.query_one("#runs-table").focus()

    def refresh_runs(self) -> None:
        self._list_worker()

    def action_refresh_runs(self) -> None:
        self.refresh_runs()

    @work(thread=True, exclusive=True, group="runs-list", exit_on_error=False)
    def _list_worker(self) -> None:
        from engine.runs.folders import list_runs

        runs = list_runs()
        self.post_message(self.Listed(runs, {str(r.path): manage.run_figures(r.path) for r in runs}))

    @on(Listed)
    def _listed(self, message: Listed) -> None:
        self.runs, self.figures = message.runs, message.figures
        self.selected &= {str(r.path) for r in self.runs}
        self._fill()

    def _fill(self) -> None:
        table = self.query_one("#runs-table", DataTable)
        row = table.cursor_row
        table.clear()
        for r in self.runs:
            f = self.figures.get(str(r.path))
            bpc = f"{r.best_val_bpc:.3f}" if isinstance(r.best_val_bpc, int | float) else "--"
            status = r.status + (f" ({r.problem})" if r.problem else "")
            table.add_row("✓" if str(r.path) in self.selected else "", r.name, r.arch or "?", bpc,
                          str(r.steps or "--"), human(f.tokens_seen if f else None),
                          duration(f.wall_time if f else None),
                          f"{f.final_lr:.2g}" if f and f.final_lr is not None else "--", human(r.params or None),
                          human(f.size_bytes if f else None, "B"), Path(r.source).name or r.source or "?", status,
                          (f.note if f else "")[:30], key=str(r.path))
        if self.runs:
            table.move_cursor(row=min(max(row, 0), len(self.runs) - 1))

    def _current(self) -> Any | None:
        table = self.query_one("#runs-table", DataTable)
        if not self.runs or table.cursor_row < 0 or table.cursor_row >= len(self.runs):
            return None
        return self.runs[table.cursor_row]

    def _guard(self, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except (SeqplayError, OSError) as err:
            self.app.notify(str(err), title="Runs", severity="error", timeout=6)
            return None

    # -- selection, open, continue -----------------------------------------------------------------
    def action_toggle_select(self) -> None:
        run = self._current()
        if run is not None:
            self.selected ^= {str(run.path)}
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

    # -- managing ----------------------------------------------------------------------------------
    def action_rename(self) -> None:
        run = self._current()
        if run is None:
            return

        def done(name: str | None) -> None:
            if name and self._guard(manage.rename_run, run.path, name) is not None:
                self.app.notify(f"renamed to {name.strip()}", timeout=3)
                self.refresh_runs()

        self.app.push_screen(AskText(f"Rename {run.name}", run.name), done)

    def action_note(self) -> None:
        run = self._current()
        if run is None:
            return
        old = self.figures.get(str(run.path))

        def done(note: str | None) -> None:
            if note is not None:
                self._guard(manage.set_note, run.path, note)
                self.refresh_runs()

        self.app.push_screen(AskText(f"Note for {run.name} (empty removes it)", old.note if old else "",
                                     allow_empty=True), done)

    def action_delete(self) -> None:
        run = self._current()
        if run is None:
            return
        trashed = self._guard(manage.delete_run, run.path)
        if trashed is not None:
            self.trashed.append(trashed)
            self.selected.discard(str(run.path))
            self.app.notify(f"{run.name} moved to the trash; u undoes", timeout=5)
            self.refresh_runs()

    def action_undo_delete(self) -> None:
        if not self.trashed:
            self.app.notify("nothing to undo", severity="warning", timeout=3)
            return
        restored = self._guard(manage.restore_run, self.trashed[-1])
        if restored is not None:
            self.trashed.pop()
            self.app.notify(f"{restored.name} restored", timeout=3)
            self.refresh_runs()

    def action_diff(self) -> None:
        paths = sorted(self.selected)
        if len(paths) != 2:
            self.app.notify("select exactly two runs with space, then D", severity="warning", timeout=4)
            return
        rows = self._guard(manage.config_diff, paths[0], paths[1])
        if rows is not None:
            self.app.push_screen(ShowDiff(Path(paths[0]).name, Path(paths[1]).name, rows))

    # -- experiment card ----------------------------------------------------------------------------
    def action_save_card(self) -> None:
        """Write the selected run's card into RUN/card, in the worker; ``card_events`` reports it."""
        run = self._current()
        if run is None:
            self.app.notify("no run to write a card of; train one first", severity="warning", timeout=3)
            return
        if self.card_job is not None:
            self.app.notify("a card is being written; wait for it", severity="warning", timeout=3)
            return
        self._cards += 1
        self.card_job = f"card-{self._cards}"
        self.app.send(P.WriteCard(job=self.card_job, run=str(run.path)))  # type: ignore[attr-defined]
        self.app.notify(f"writing the card of {run.name} ...", title="Runs", timeout=3)

    def card_events(self, events: list[P.Event]) -> None:
        """The end of this pane's WriteCard job (other lab events are not ours)."""
        for ev in events:
            if self.card_job is None or ev.job != self.card_job or not isinstance(ev, P.LabDone):
                continue
            self.card_job = None
            if ev.reason == "done" and ev.data:
                self.app.notify(f"card saved in {ev.data['folder']}", title="Runs", timeout=8)
            else:
                self.app.notify(f"card not written: {ev.message}", title="Runs", severity="error", timeout=8)

    # -- overlay -----------------------------------------------------------------------------------
    def action_overlay(self) -> None:
        paths = sorted(self.selected) or ([str(self._current().path)] if self._current() else [])
        if not paths:
            self.app.notify("select runs with space first", severity="warning", timeout=3)
            return
        self.overlaid = paths
        self._curves_worker(paths, self.axis)

    def overlay(self) -> None:
        self.action_overlay()

    def action_cycle_axis(self) -> None:
        axes = list(manage.X_AXES)
        self.axis = axes[(axes.index(self.axis) + 1) % len(axes)]
        self.app.notify(f"overlay x axis: {X_LABELS[self.axis]}", timeout=2)
        if self.overlaid:
            self._curves_worker(self.overlaid, self.axis)

    @work(thread=True, exclusive=True, group="runs-curves", exit_on_error=False)
    def _curves_worker(self, paths: list[str], axis: str) -> None:
        curves = {Path(p).name: manage.val_curve(p, axis) for p in paths}
        self.post_message(self.Curves(curves, axis))

    @on(Curves)
    def _curves(self, message: Curves) -> None:
        plot = self.query_one("#overlay", LinePlot)
        plot.clear()
        plot.xlabel = X_LABELS[message.axis]
        empty = [name for name, pts in message.curves.items() if not pts]
        for name, pts in message.curves.items():
            if pts:
                plot.add_points(name, pts)
        plot.redraw_now()
        if empty:
            self.app.notify(f"no validation points in {', '.join(empty)}", severity="warning", timeout=4)
