"""Train pane: live loss/perplexity curves, throughput, progress and ETA, and samples as the model learns.

The time machine: enter on the loss chart samples the run's snapshot at or before the cursor step
(``engine.runs.snapshot_index.snapshot_at_or_before``) with the same empty prompt and seed every time, through
the worker's ``Generate`` with a generation id of its own, into the panel under the chart; moving the cursor
and pressing enter again shows the text going from noise to words.
"""

from __future__ import annotations

import bisect
import itertools
import math
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Label, ProgressBar, RichLog, Static

from engine.worker import protocol as P
from tui.catalog import human_count, human_seconds, short_path
from tui.series import BoundedSeries
from tui.widgets.curve import LinePlot
from tui.widgets.live_text import set_text

LOG_LINES = 200
SMOOTHING_LEVELS = (0.0, 0.6, 0.9, 0.97)  # EMA weight of the history (TensorBoard's smoothing slider)
SMALL_HEIGHT = 26  # pane rows below which the log shrinks (80x24 leaves it 20)
SNAPSHOT_SEED, SNAPSHOT_TOKENS = 0, 80  # the snapshot sample: same (empty) prompt, seed and length every time
_SNAP_GENS = itertools.count(1)


def _safe_exp(x: float) -> float:
    return math.exp(min(x, 700.0))


class TrainPane(Vertical):
    """Everything about the job being trained. The app feeds it events with ``apply``.

    Its keys act on the run; ``check_action`` dims the ones that cannot act now (nothing training,
    nothing to continue)."""

    BINDINGS = [
        Binding("p", "pause_resume", "Pause", tooltip="Pause / resume training", id="pause"),
        Binding("s", "single_step", "Step", tooltip="Pause and run one step", id="step"),
        Binding("x", "stop", "Stop", tooltip="Stop training (a checkpoint is saved)", id="stop"),
        Binding("ctrl+s", "save", "Save", tooltip="Save a checkpoint now", show=False, id="save"),
        Binding("l", "set_lr", "LR", tooltip="Set the learning rate of the running job", id="set_lr"),
        Binding("c", "continue_run", "Continue", tooltip="Continue the finished run (more steps or time)",
                id="continue"),
        Binding("y", "toggle_log", "Log scale", show=False, id="log_scale"),
        Binding("m", "toggle_smooth", "Smoothing", tooltip="Smoothing strength: off, 0.6, 0.9, 0.97", show=False,
                id="smoothing"),
        Binding("v", "toggle_metric", "Loss/ppl", show=False, id="metric"),
        Binding("a", "cycle_x", "x axis", tooltip="x axis: step, tokens seen, wall time", show=False, id="x_axis"),
        Binding("n", "toggle_panels", "LR/grad panels", tooltip="Show or hide the LR and gradient-norm panels",
                show=False, id="panels"),
        Binding("enter", "sample_snapshot", "Sample here",
                tooltip="Sample the snapshot at or before the cursor step (same prompt and seed every time)",
                show=False, id="snapshot_sample"),  # a chart key, like y/m/v/a/n: the footer at 80 columns is full
    ]
    RUN_ACTIONS = ("pause_resume", "single_step", "stop", "save", "set_lr")

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.started: P.Started | None = None
        self.last: P.StepPoint | None = None
        self.last_eval: P.EvalMetrics | None = None
        self.state = "idle"
        self.current_lr: float = 1e-3
        self.total_steps: int | None = None
        self.time_budget: float | None = None
        self.metric = "loss"  # loss | ppl
        self._status_dirty = False
        self._hinted = False
        self.x_axis = "step"  # step | tokens | time
        self._tokens = BoundedSeries(2000)  # step -> tokens seen, step -> elapsed: the x of other axes
        self._elapsed = BoundedSeries(2000)
        self._aux_choice: bool | None = None
        self.snap_gen: str | None = None  # the generation id of the snapshot sample in flight
        self.snap_step: int | None = None
        self.snap_text = ""

    class SnapshotFound(Message):
        """The snapshot at or before ``step`` of ``run`` (``snap`` None: none yet; ``any_snaps``: the run has some)."""

        def __init__(self, run: str, step: float, snap: Any, any_snaps: bool) -> None:
            super().__init__()
            self.run, self.step, self.snap, self.any_snaps = run, step, snap, any_snaps

    def compose(self) -> ComposeResult:
        yield Static("Nothing is training. Pick a corpus (1) and a model (2), then press [b]t[/b].", id="train-status")
        with Horizontal(id="train-progress-row"):
            yield ProgressBar(total=None, show_eta=False, show_percentage=False, id="train-progress")
            yield Static("", id="train-eta")
        yield LinePlot(title="loss (nats/token)", ylabel="loss", id="curve")
        yield Static("", id="snap-sample")
        with Horizontal(id="aux-row"):
            # half-width panels: half the points (each redraw costs time in proportion to the points)
            yield LinePlot(title="learning rate", ylabel="lr", capacity=200, id="lr-curve")
            yield LinePlot(title="gradient norm (before clipping)", ylabel="norm", capacity=200, id="grad-curve")
        yield Label("Sample", classes="section", id="sample-label")
        yield Static("", id="sample")
        yield RichLog(id="train-log", max_lines=LOG_LINES, markup=True, wrap=True)

    @property
    def curve(self) -> LinePlot:
        return self.query_one("#curve", LinePlot)

    @property
    def plots(self) -> list[LinePlot]:
        return list(self.query(LinePlot))

    def _series(self) -> None:
        """Create the series in a fixed order, so train and val keep their colours run after run."""
        self.curve.line("train")
        self.curve.line("val")

    def on_mount(self) -> None:
        self._series()
        self.curve.smoothed = {"train"}
        self.query_one("#grad-curve", LinePlot).smoothed = {"grad norm"}
        for plot in self.plots:
            plot.readout_extra = self._when
        self.set_interval(0.25, self._refresh_status)

    def on_resize(self) -> None:
        if self._aux_choice is None:  # until the user decides (n), the panels show when there is room
            self.query_one("#aux-row").display = self.size.height >= 34
        # At 80x24 (20 rows here) the chart keeps its 9 rows and the log its last lines: a 4-row log and no
        # "Sample" heading; else the log would be pushed below the screen, its newest lines cut off.
        small = self.size.height < SMALL_HEIGHT
        log = self.query_one("#train-log", RichLog)
        log.styles.height = 4 if small else 6
        self.query_one("#sample-label").display = not small
        self.query_one("#sample").styles.max_height = 3 if small else 5
        self.query_one("#snap-sample").styles.max_height = 2 if small else 4
        self.call_after_refresh(log.scroll_end, animate=False)  # the newest lines stay in view at the new height

    def _when(self, step: float) -> str:
        """Tokens seen and wall time at ``step`` (for the cursor readout)."""
        if not len(self._elapsed):
            return ""
        return f"{human_count(_interp(self._tokens, step))} tokens · {human_seconds(_interp(self._elapsed, step))}"

    def _refresh_status(self) -> None:
        if self._status_dirty:
            self._status_dirty = False
            self._show_status()

    def focus_default(self) -> None:
        self.curve.focus()

    # -- keys ------------------------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in self.RUN_ACTIONS:
            return True if self.app.train_job is not None else None
        if action == "continue_run":
            return True if self.app.train_job is None and not self.app.awaiting_start and self.app.last_run_dir else None
        if action == "sample_snapshot":
            return True if self.run_dir() and self.last is not None else None
        return True

    def action_pause_resume(self) -> None:
        self.app.action_pause_resume()

    def action_single_step(self) -> None:
        self.app.action_single_step()

    def action_stop(self) -> None:
        self.app.action_stop()

    def action_save(self) -> None:
        self.app.action_save()

    def action_set_lr(self) -> None:
        self.app.action_set_lr()

    def action_continue_run(self) -> None:
        self.app.action_continue_run()

    def action_toggle_log(self) -> None:
        self.toggle_log()

    def action_toggle_smooth(self) -> None:
        self.toggle_smooth()

    def action_toggle_metric(self) -> None:
        self.toggle_metric()

    def action_cycle_x(self) -> None:
        axes = ("step", "tokens", "time")
        self.x_axis = axes[(axes.index(self.x_axis) + 1) % len(axes)]
        for plot in self.plots:
            if self.x_axis == "step":
                plot.x_map, plot.xlabel, plot.x_format = None, "step", lambda x: f"{x:,.0f}"
            elif self.x_axis == "tokens":
                plot.x_map, plot.xlabel, plot.x_format = (lambda x: _interp(self._tokens, x)), "tokens seen", human_count
            else:
                plot.x_map, plot.xlabel, plot.x_format = (lambda x: _interp(self._elapsed, x)), "wall time", human_seconds
            plot.redraw_now()

    def action_toggle_panels(self) -> None:
        row = self.query_one("#aux-row")
        self._aux_choice = not row.display
        row.display = self._aux_choice

    def lr_changed(self, lr: float) -> None:
        """The user set the learning rate: a marker at the current step on every chart."""
        step = self.last.step if self.last else 0
        for plot in self.plots:
            plot.add_event(step, "lr change")

    # -- view toggles --------------------------------------------------------------------------------
    def toggle_log(self) -> None:
        self.curve.log_y = not self.curve.log_y
        self.curve.redraw_now()
        self.app.notify(f"log scale {'on' if self.curve.log_y else 'off'}", timeout=2)

    def toggle_smooth(self) -> None:
        levels = SMOOTHING_LEVELS
        i = levels.index(self.curve.smooth) if self.curve.smooth in levels else 0
        self.curve.smooth = levels[(i + 1) % len(levels)]
        self.curve.redraw_now()
        self.app.notify(f"smoothing {self.curve.smooth:g}" if self.curve.smooth else "smoothing off", timeout=2)

    def toggle_metric(self) -> None:
        self.metric = "ppl" if self.metric == "loss" else "loss"
        self.curve.transform = _safe_exp if self.metric == "ppl" else None
        self.curve.title = "perplexity" if self.metric == "ppl" else "loss (nats/token)"
        self.curve.ylabel = self.metric
        self.curve.redraw_now()

    # -- the time machine: a snapshot's sample at the cursor --------------------------------------------
    def run_dir(self) -> str | None:
        """The run folder of the curve on screen."""
        return (self.started.run_dir if self.started else None) or self.app.last_run_dir  # type: ignore[attr-defined]

    def action_sample_snapshot(self) -> None:
        run = self.run_dir()
        step = self.curve.cursor_x()
        step = step if step is not None else (self.last.step if self.last else None)
        if not run or step is None:
            self.app.notify("nothing trained yet: train a run (t), then move the cursor on its curve", severity="warning")
            return
        self._find_snapshot(run, step)

    @work(thread=True, exclusive=True, group="train-snapshot", exit_on_error=False)
    def _find_snapshot(self, run: str, step: float) -> None:
        from engine.runs.snapshot_index import list_snapshots, snapshot_at_or_before

        self.post_message(self.SnapshotFound(run, step, snapshot_at_or_before(run, step), bool(list_snapshots(run))))

    @on(SnapshotFound)
    def _snapshot_found(self, message: SnapshotFound) -> None:
        if message.snap is None:
            why = ("this run keeps no snapshots (it was trained with --snapshot-base 0)" if not message.any_snaps
                   else f"no snapshot at or before step {message.step:,.0f} yet; move the cursor right")
            self.app.notify(why, title="Train", severity="warning", timeout=5)
            return
        if self.app.gen_id:  # type: ignore[attr-defined]
            self.app.notify("the Generate pane is generating; let it finish (or escape it there) first",
                            title="Train", severity="warning", timeout=5)
            return
        self.snap_gen, self.snap_step, self.snap_text = f"snapshot-{next(_SNAP_GENS)}", message.snap.step, ""
        self.app.send(P.Generate(gen_id=self.snap_gen, prompt="", source=f"{message.run}@{message.snap.step}",  # type: ignore[attr-defined]
                                 settings={"seed": SNAPSHOT_SEED, "max_tokens": SNAPSHOT_TOKENS},
                                 max_tokens=SNAPSHOT_TOKENS))
        self._show_snapshot("sampling ...")

    def snapshot_sample(self, events: list[P.Event]) -> None:
        """Tokens and the end of the snapshot sample in flight (the app routes ``snap_gen``'s events here)."""
        for ev in events:
            if ev.job != self.snap_gen:
                continue
            if isinstance(ev, P.GeneratedToken):
                self.snap_text += ev.text
            elif isinstance(ev, P.GenerationDone):
                self.snap_gen = None
                self.snap_text = ev.text or self.snap_text
                if ev.reason in ("cancelled", "error"):
                    self._show_snapshot("cancelled (another generation started)" if ev.reason == "cancelled" else "failed")
                    return
        self._show_snapshot("" if self.snap_gen is None else "...")

    def snapshot_failed(self) -> None:
        """The worker died with the sample in flight."""
        if self.snap_gen is not None:
            self.snap_gen = None
            self._show_snapshot("failed")

    def _show_snapshot(self, note: str) -> None:
        panel = self.query_one("#snap-sample", Static)
        panel.display = True
        text = Text(f"snapshot step {self.snap_step:,} · seed {SNAPSHOT_SEED}: ", style="dim")
        text.append(self.snap_text.replace("\n", "⏎ "))
        if note:
            text.append(f" {note}", style="dim italic")
        panel.update(text)

    # -- events -------------------------------------------------------------------------------------
    def reset(self, config: dict[str, Any], keep_curve: bool = False) -> None:
        """A new job starts; ``keep_curve``: it continues the run on screen (same chart)."""
        self.started, self.last_eval = None, None
        if not keep_curve:
            self.last = None
        self.state = "starting"
        self._hinted = False
        self.total_steps = config.get("steps") or None
        self.time_budget = config.get("time_budget") or None
        self.current_lr = float(config.get("lr") or self.current_lr)
        if not keep_curve:
            for plot in self.plots:
                plot.clear()
            self._series()
            self._tokens.clear()
            self._elapsed.clear()
            self.query_one("#sample", Static).update("")
        self.query_one("#train-progress-row").display = True
        self.query_one("#train-progress", ProgressBar).update(total=self.total_steps, progress=0)
        self._log(f"starting {config.get('arch')} on {config.get('source')} ...")
        self._show_status()

    def apply(self, events: list[P.Event]) -> None:
        """Take a batch of this job's events; the status line is redrawn once per batch."""
        train_points: list[tuple[float, float]] = []
        lr_points: list[tuple[float, float]] = []
        grad_points: list[tuple[float, float]] = []
        finished: str | None = None
        for name in ("train", "val"):  # fixed series order (legend, drawing), whatever a batch holds
            self.curve.line(name)
        for ev in events:
            if isinstance(ev, P.StepMetrics):
                for p in ev.points:
                    previous = train_points[-1][0] if train_points else (self.last.step if self.last else None)
                    if previous is not None and p.step <= previous:
                        self._event(p.step, "rollback")  # the step counter went back: a checkpoint was reloaded
                    train_points.append((p.step, p.loss))
                    lr_points.append((p.step, p.lr))
                    grad_points.append((p.step, p.grad_norm))
                    self._tokens.append(p.step, p.tokens_seen)
                    self._elapsed.append(p.step, p.elapsed)
                if ev.points:
                    self.last = ev.points[-1]
                    self.current_lr = self.last.lr
            elif isinstance(ev, P.EvalMetrics):
                self.last_eval = ev
                self.curve.add_points("val", [(ev.step, ev.val_loss)])
                best = " [green](best)[/]" if ev.best else ""
                self._log(f"step {ev.step}: val loss {ev.val_loss:.4f} · ppl {ev.val_ppl:.2f} · {ev.val_bpc:.3f} bits/char{best}")
            elif isinstance(ev, P.SampleText):
                self._show_sample(ev)
            elif isinstance(ev, P.Started):
                self.started = ev
                self.state = "running"
                self.total_steps = ev.total_steps
                self.time_budget = ev.time_budget
                self.query_one("#train-progress", ProgressBar).update(total=ev.total_steps)
                self._log(f"run folder {short_path(ev.run_dir)} · {ev.params:,} parameters on {ev.device} ({ev.dtype})")
            elif isinstance(ev, P.StateChanged):
                if ev.state == "paused" and self.state != "paused":
                    self._event(self.last.step if self.last else 0, "pause")
                self.state = ev.state
                if ev.reason:
                    self._log(f"{ev.state}: {ev.reason}")
            elif isinstance(ev, P.LogLine):
                self._log(ev.text)
            elif isinstance(ev, P.CheckpointWritten):
                self._event(ev.step, "checkpoint")
                self._log(f"checkpoint step {ev.step} -> {short_path(ev.path)}")
            elif isinstance(ev, P.Finished):
                self._log(f"finished ({ev.reason}) at step {ev.step}")
                finished = ev.reason
        if train_points:
            self.curve.add_points("train", train_points)
            self.query_one("#lr-curve", LinePlot).add_points("lr", lr_points)
            self.query_one("#grad-curve", LinePlot).add_points("grad norm", grad_points)
        if finished is not None:
            self.finished(finished)  # after the batch's other events: nothing redraws the progress
        else:
            self._status_dirty = True  # redrawn by a 4 Hz timer, not once per batch

    def _event(self, step: float, kind: str) -> None:
        for plot in self.plots:
            plot.add_event(step, kind)

    def finished(self, reason: str) -> None:
        self.state = f"finished ({reason})"
        self._status_dirty = False
        self._show_status()
        self.query_one("#train-eta", Static).update("")
        self.query_one("#train-progress-row").display = False  # no percent or ETA once it is over
        if self.last is not None and not self._hinted:
            self._hinted = True
            # after the rest of this batch's log lines (the app calls this before handing the batch over)
            self.call_after_refresh(self._log, "[dim]c continues this run (more steps or time)[/]")

    def _log(self, text: str) -> None:
        self.query_one("#train-log", RichLog).write(text)

    def _show_sample(self, ev: P.SampleText) -> None:
        text = Text(ev.prompt, style="bold")
        body = ev.text
        i = body.find(ev.copied) if ev.copied else -1
        if i >= 0:
            text.append(body[:i])
            text.append(body[i:i + len(ev.copied)], style="reverse yellow")
            text.append(body[i + len(ev.copied):])
            text.append(f"\n[copied from training text: {len(ev.copied)} chars highlighted]", style="yellow")
        else:
            text.append(body)
        header = Text(f"step {ev.step}: ", style="dim")
        self.query_one("#sample", Static).update(header + text)

    def _show_status(self) -> None:
        p, s = self.last, self.started
        if s is None and p is None:
            if self.state == "starting":
                self.query_one("#train-status", Static).update("starting the worker ...")
            return
        total = self.total_steps
        step = p.step if p else (s.start_step if s else 0)
        parts = [f"[b]{self.state}[/b]", f"step {step:,}" + (f"/{total:,}" if total else "")]
        if p:
            parts += [f"loss {p.loss:.4f}", f"{human_count(p.tokens_per_s)} tok/s", f"lr {p.lr:.2e}",
                      f"grad {p.grad_norm:.3f}", f"elapsed {human_seconds(p.elapsed)}"]
        if self.last_eval:
            parts.append(f"val {self.last_eval.val_loss:.4f} ({self.last_eval.val_bpc:.3f} bpc)")
        if s:
            parts.append(f"{s.device} · {s.params:,} params")
        set_text(self.query_one("#train-status", Static), " · ".join(parts))
        if self.state.startswith("finished"):
            return
        fraction, eta = progress(step, p.elapsed if p else 0.0, s.start_step if s else 0, total, self.time_budget)
        bar = self.query_one("#train-progress", ProgressBar)
        if fraction is None:
            bar.update(total=None)
            set_text(self.query_one("#train-eta", Static), "")
            return
        bar.update(total=1000, progress=round(1000 * fraction))
        set_text(self.query_one("#train-eta", Static), f"{fraction:.0%} ETA {human_seconds(eta)}")


def _interp(series: BoundedSeries, x: float) -> float:
    """Linear interpolation of ``series`` (xs ascending) at ``x``; clamped at the ends."""
    xs, ys = series.xs, series.ys
    if not xs:
        return 0.0
    i = bisect.bisect_left(xs, x)
    if i <= 0:
        return ys[0]
    if i >= len(xs):
        return ys[-1]
    x0, x1 = xs[i - 1], xs[i]
    return ys[i - 1] + (ys[i] - ys[i - 1]) * ((x - x0) / (x1 - x0) if x1 > x0 else 0.0)


def progress(step: int, elapsed: float, start_step: int, total_steps: int | None,
             time_budget: float | None) -> tuple[float | None, float | None]:
    """(fraction done, seconds left) of a run that ends at ``total_steps`` or after ``time_budget``
    seconds, whichever comes first; (None, None) for a run with neither limit. Steps and elapsed time
    both count the whole run (a resumed run keeps them), so the step rate is the run's."""
    by_steps = min(step / total_steps, 1.0) if total_steps else None
    by_time = min(elapsed / time_budget, 1.0) if time_budget else None
    if by_steps is None and by_time is None:
        return None, None
    fraction = max(f for f in (by_steps, by_time) if f is not None)
    left = []
    if total_steps and step > start_step and elapsed > 0:
        # elapsed is cumulative; the rate of this job is what predicts the rest
        left.append(max(total_steps - step, 0) * elapsed / max(step, 1))
    if time_budget:
        left.append(max(time_budget - elapsed, 0.0))
    return fraction, (min(left) if left else None)
