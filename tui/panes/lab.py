"""The Lab pane (issue 16): same-randomness A/B, the sampler stages at one position, the timeline.

Three tabs, each one job through the worker protocol (``Compare``, ``StageView``, ``Timeline``; see
``engine.worker.lab_jobs``): ctrl+r runs the tab's job, escape cancels it, ``LabProgress`` fills the
status line and the one ``LabDone`` is drawn. Nothing is computed here: divergence, log-probs, stage
distributions and samples all come from the engine. Settings are ``k=v`` pairs (the names of ``seqplay
generate``'s options), parsed by ``engine.generation.settings.parse_assignments``.

* A/B: side A and side B, each a run (B empty: A's run), optionally a snapshot of it (``@`` step, best
  or last: ``RUN@STEP``) and its settings, the shared seed; the texts
  side by side (stacked below 100 columns), the part from the first divergence highlighted, the mean
  log-prob per token of each side.
* Stages: for position N of the generated text, each active stage's top tokens as bars before -> after;
  removed tokens struck out, boosted ones marked with an up arrow; [ and ] move the position.
* Timeline: the run's snapshots (``engine.runs.snapshots.list_snapshots``, torch-free) in a list; the
  same-seed sample from each arrives as it is made; arrow keys move between snapshots.
"""

from __future__ import annotations

import itertools
import re
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Input, Label, OptionList, Static, TabbedContent, TabPane
from textual.widgets.option_list import Option

from engine.errors import ConfigError, SeqplayError
from engine.worker import protocol as P
from tui.widgets.run_picker import RunPicker

_JOBS = itertools.count(1)
STACK_BELOW = 100  # columns: narrower panes stack the two A/B sides
BAR = 12  # cells of a probability bar


def parse_settings(text: str) -> dict[str, Any]:
    """``"temperature=0.7 top_k=40"`` (spaces or commas between pairs) -> ``SamplingSettings.to_dict()``."""
    from engine.generation.settings import parse_assignments

    pairs = [p for p in re.split(r"[\s,]+", text.strip()) if p]
    return parse_assignments(pairs).validate().to_dict()


def _int(widget: Input, name: str, default: int, minimum: int = 0) -> int:
    raw = widget.value.strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}; type e.g. {default}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}; type a larger number")
    return value


def at_step(text: str) -> str:
    """The ``@STEP`` suffix for a snapshot field: "" (the run itself), "@400", "@best" or "@last"."""
    text = text.strip().lstrip("@")
    if not text:
        return ""
    if text in ("best", "last") or text.isdigit():
        return f"@{text}"
    raise ConfigError(f"@ takes a snapshot step, best or last, got {text!r}; e.g. 400 (see the Timeline tab)")


def bar(p: float, width: int = BAR) -> str:
    full = max(0.0, min(1.0, p)) * width
    return ("█" * int(full) + ("▌" if full - int(full) >= 0.5 else "")).ljust(width)


def shown(token: str) -> str:
    """A token as a label: space, newline and tab made visible."""
    return token.replace(" ", "␣").replace("\n", "⏎").replace("\t", "→") or "∅"


def render_side(side: dict[str, Any], prompt: str, diverged: bool) -> Text:
    """One A/B side: prompt dim, shared text plain, the text from the divergence highlighted."""
    out = Text(prompt, style="dim")
    out.append(side.get("head", side.get("text", "")))
    if diverged:
        out.append("▍", style="bold red")
        out.append(side.get("rest", ""), style="black on yellow")
    n = len(side.get("tokens", ()))
    out.append(f"\n\nmean log-prob {side.get('mean_logprob', 0.0):.3f} per token "
               f"(model {side.get('mean_raw_logprob', 0.0):.3f}) · {n} tokens · {side.get('reason', '')}", style="bold")
    return out


def render_stages(view: dict[str, Any]) -> Text:
    """The stage-by-stage view: per stage the tokens before -> after as bars."""
    out = Text()
    out.append(view.get("prompt", ""), style="dim")
    out.append(view.get("text", ""))
    out.append("▍", style="bold red")
    out.append(f"  position {view.get('position', 0)}\n", style="bold")
    if not view.get("stages"):
        out.append("\nno active stage: the raw distribution is sampled (set e.g. top_k=5 temperature=0.7)\n")
    for stage in view.get("stages", []):
        removed, boosted = set(stage.get("removed", ())), set(stage.get("boosted", ()))
        after = {t["id"]: t["p"] for t in stage.get("after", [])}
        out.append(f"\n{stage['stage']}", style="bold cyan")
        out.append(f"  kept {stage.get('kept', 0)} · entropy after {stage.get('entropy_after', 0.0):.2f} nats\n", style="dim")
        for tok in stage.get("before", []):
            tid, label = tok["id"], shown(tok["text"])[:6].ljust(6)
            gone = tid in removed
            p_after = after.get(tid, 0.0)
            row = Text(f"  {label} ", style="strike dim" if gone else "")
            row.append(bar(tok["p"]), style="strike dim" if gone else "blue")
            row.append(f" {tok['p']:.3f} → ", style="strike dim" if gone else "")
            if gone:
                row.append("removed", style="red")
            else:
                row.append(bar(p_after), style="green" if tid in boosted else "blue")
                row.append(f" {p_after:.3f}")
                if tid in boosted:
                    row.append(" ↑", style="bold green")
            out.append_text(row)
            out.append("\n")
    final = view.get("final", [])
    if final:
        out.append("\nsampled from: ", style="bold")
        out.append("  ".join(f"{shown(t['text'])} {t['p']:.2f}" for t in final[:6]))
    return out


class LabPane(Vertical):
    """A/B, stages and timeline: the issue 16 views."""

    DEFAULT_CSS = """
    LabPane .lab-row { height: 1; margin-bottom: 1; }
    LabPane .lab-row Label { padding: 0 1 0 0; color: $text-muted; }
    LabPane .lab-row Input { width: 1fr; }
    LabPane .lab-row Input.small { width: 8; }
    LabPane .lab-row RunPicker { width: 1fr; }
    LabPane #ab-sides { height: 1fr; }
    LabPane .ab-side { width: 1fr; height: 1fr; padding: 0 1 0 0; }
    LabPane #ab-sides.stacked { layout: vertical; }
    LabPane #ab-sides.stacked .ab-side { width: 100%; height: 1fr; }
    LabPane .ab-out { height: 1fr; border: round $panel; }
    LabPane #st-out, LabPane #tl-text { height: 1fr; border: round $panel; }
    LabPane #tl-body { height: 1fr; }
    LabPane #tl-list { width: 30; height: 1fr; }
    LabPane .lab-status { height: 1; color: $text-muted; }
    LabPane TabPane { padding: 0; }
    """
    BINDINGS = [
        Binding("ctrl+r", "run_lab", "Run", id="lab_run"),
        Binding("escape", "cancel_lab", "Cancel", id="lab_cancel"),
        Binding("left_square_bracket", "position(-1)", "Position -1", id="lab_pos_down"),
        Binding("right_square_bracket", "position(1)", "Position +1", id="lab_pos_up"),
    ]

    class Snapshots(Message):
        def __init__(self, run: str, snaps: list[Any]) -> None:
            super().__init__()
            self.run, self.snaps = run, snaps

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.job: str | None = None
        self.job_lab = ""
        self.last: dict[str, P.LabDone] = {}  # the last finished job per lab
        self.samples: dict[int, P.TimelineSample] = {}
        self.snapshots: list[Any] = []

    def compose(self) -> ComposeResult:
        with TabbedContent(id="lab-tabs"):
            with TabPane("A/B", id="lab-ab"):
                with Horizontal(classes="lab-row"):
                    yield Label("prompt")
                    yield Input("", placeholder="text both sides continue", id="ab-prompt", compact=True)
                    yield Label(" seed")
                    yield Input("0", type="integer", id="ab-seed", classes="small", compact=True)
                    yield Label(" tokens")
                    yield Input("80", type="integer", id="ab-tokens", classes="small", compact=True)
                with Horizontal(id="ab-sides"):
                    for side in ("a", "b"):
                        with Vertical(classes="ab-side", id=f"ab-side-{side}"):
                            with Horizontal(classes="lab-row"):
                                yield Label(side.upper())
                                yield RunPicker(live=False, id=f"ab-run-{side}")
                                yield Label(" @")
                                yield Input("", placeholder="step", id=f"ab-at-{side}", classes="small", compact=True)
                            with Horizontal(classes="lab-row"):
                                yield Label("set")
                                yield Input("", placeholder="temperature=0.7 top_k=40 top_p=0.9",
                                            id=f"ab-set-{side}", compact=True)
                            with VerticalScroll(classes="ab-out"):
                                yield Static("", id=f"ab-out-{side}")
                yield Static("pick a run for A (B empty: the same run), set each side, ctrl+r runs", id="ab-status",
                             classes="lab-status")
            with TabPane("Stages", id="lab-stages"):
                with Horizontal(classes="lab-row"):
                    yield RunPicker(live=False, id="st-run")
                    yield Label(" position")
                    yield Input("0", type="integer", id="st-pos", classes="small", compact=True)
                with Horizontal(classes="lab-row"):
                    yield Label("prompt")
                    yield Input("", id="st-prompt", compact=True)
                    yield Label(" set")
                    yield Input("", placeholder="top_k=5 temperature=0.7", id="st-set", compact=True)
                with VerticalScroll(id="st-out"):
                    yield Static("ctrl+r shows each sampling stage at the position; [ and ] move it", id="st-view")
                yield Static("", id="st-status", classes="lab-status")
            with TabPane("Timeline", id="lab-timeline"):
                with Horizontal(classes="lab-row"):
                    yield RunPicker(live=False, id="tl-run")
                    yield Label(" seed")
                    yield Input("0", type="integer", id="tl-seed", classes="small", compact=True)
                    yield Label(" tokens")
                    yield Input("80", type="integer", id="tl-tokens", classes="small", compact=True)
                with Horizontal(classes="lab-row"):
                    yield Label("prompt")
                    yield Input("", id="tl-prompt", compact=True)
                    yield Label(" set")
                    yield Input("", placeholder="temperature=0.8", id="tl-set", compact=True)
                with Horizontal(id="tl-body"):
                    yield OptionList(id="tl-list")
                    with VerticalScroll(id="tl-text"):
                        yield Static("pick a run: its snapshots are listed here; ctrl+r samples each with one seed",
                                     id="tl-sample")
                yield Static("", id="tl-status", classes="lab-status")

    # -- state ------------------------------------------------------------------------------------
    @property
    def tab(self) -> str:
        return str(self.query_one("#lab-tabs", TabbedContent).active).removeprefix("lab-")

    @property
    def running(self) -> bool:
        return self.job is not None

    def focus_default(self) -> None:
        target = {"ab": "#ab-run-a", "stages": "#st-run", "timeline": "#tl-list"}.get(self.tab, "#ab-run-a")
        self.query_one(target).focus()

    @on(TabbedContent.TabActivated, "#lab-tabs")
    def _tab_shown(self, event: TabbedContent.TabActivated) -> None:
        event.stop()  # the app's own tabs are not involved
        focused = self.screen.focused
        if focused is not None and self in focused.ancestors and event.pane not in focused.ancestors:
            self.focus_default()  # focus left on another Lab tab would pull it back (never from another pane)

    def on_resize(self) -> None:
        self.query_one("#ab-sides").set_class(self.size.width < STACK_BELOW, "stacked")

    def on_show(self) -> None:
        want = getattr(self.app, "model_run", None) or getattr(self.app, "last_run_dir", None)
        for picker in self.query(RunPicker):
            picker.reload(want=want if picker.id != "ab-run-b" else None)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "cancel_lab":
            return self.running
        if action == "position":
            return self.tab == "stages"
        return True

    def _status(self, lab: str, text: str) -> None:
        wid = {"compare": "#ab-status", "stage_view": "#st-status", "timeline": "#tl-status"}[lab]
        self.query_one(wid, Static).update(text)

    def _picked(self, wid: str) -> str | None:
        return self.query_one(wid, RunPicker).choice

    # -- commands ---------------------------------------------------------------------------------
    @on(Input.Submitted)
    def action_run_lab(self) -> None:
        if self.running:
            self.notify("a lab job is running; escape cancels it", severity="warning")
            return
        try:
            cmd = self._command(f"lab-{next(_JOBS)}")
        except SeqplayError as err:
            self.notify(str(err), title="Lab", severity="error", timeout=6)
            return
        self.start(cmd)

    def _command(self, job: str) -> P.Command:
        q = self.query_one
        if self.tab == "ab":
            run_a = self._picked("#ab-run-a")
            if run_a is None:
                raise ConfigError("pick a run for side A first (or train one)")
            run_b = self._picked("#ab-run-b")
            at_b = at_step(q("#ab-at-b", Input).value)
            return P.Compare(job=job, run_a=run_a + at_step(q("#ab-at-a", Input).value),
                             run_b=(run_b or run_a) + at_b if (run_b or at_b) else None,
                             settings_a=parse_settings(q("#ab-set-a", Input).value),
                             settings_b=parse_settings(q("#ab-set-b", Input).value),
                             prompt=q("#ab-prompt", Input).value, seed=_int(q("#ab-seed", Input), "seed", 0),
                             max_tokens=_int(q("#ab-tokens", Input), "tokens", 80, 1))
        if self.tab == "stages":
            run = self._picked("#st-run")
            if run is None:
                raise ConfigError("pick a run first (or train one)")
            return P.StageView(job=job, run=run, settings=parse_settings(q("#st-set", Input).value),
                               prompt=q("#st-prompt", Input).value, position=_int(q("#st-pos", Input), "position", 0))
        run = self._picked("#tl-run")
        if run is None:
            raise ConfigError("pick a run first (or train one)")
        return P.Timeline(job=job, run=run, settings=parse_settings(q("#tl-set", Input).value),
                          prompt=q("#tl-prompt", Input).value, seed=_int(q("#tl-seed", Input), "seed", 0),
                          max_tokens=_int(q("#tl-tokens", Input), "tokens", 80, 1))

    def start(self, cmd: P.Command) -> None:
        self.job, self.job_lab = cmd.job, cmd.kind  # type: ignore[attr-defined]
        if isinstance(cmd, P.Timeline):
            self.samples = {}
            self._fill_snapshots()
        self.app.send(cmd)  # type: ignore[attr-defined]
        self._status(cmd.kind, f"{cmd.kind}: starting ...")
        self.refresh_bindings()

    def action_cancel_lab(self) -> None:
        if self.job:
            self.app.send(P.CancelLab(job=self.job))  # type: ignore[attr-defined]
            self._status(self.job_lab, "cancelling ...")

    def action_position(self, delta: int) -> None:
        box = self.query_one("#st-pos", Input)
        try:
            pos = int(box.value or 0)
        except ValueError:
            pos = 0
        box.value = str(max(0, pos + delta))
        if not self.running and self._picked("#st-run") is not None:
            self.action_run_lab()

    # -- events -----------------------------------------------------------------------------------
    def apply(self, events: list[P.Event]) -> None:
        """Progress, samples and results of this pane's job (others are stale and dropped)."""
        for ev in events:
            if ev.job != self.job:
                continue
            if isinstance(ev, P.LabProgress):
                self._status(self.job_lab, f"[{ev.done}/{ev.total}] {ev.message}")
            elif isinstance(ev, P.TimelineSample):
                self.samples[ev.step] = ev
                self._fill_snapshots()
            elif isinstance(ev, P.LabDone):
                self.show_done(ev)

    def show_done(self, ev: P.LabDone) -> None:
        """Draw a finished job (also what snapshot tests call with a scripted ``LabDone``)."""
        if ev.job == self.job:
            self.job = None
        self.refresh_bindings()
        took = f" in {ev.seconds:.1f} s" if ev.seconds else ""
        if ev.reason != "done" or ev.data is None:
            self._status(ev.lab, "cancelled" if ev.reason == "cancelled" else f"error: {ev.message}")
            if ev.reason == "error":
                self.notify(ev.message or "no result", title="Lab", severity="error", timeout=8)
            return
        self.last[ev.lab] = ev
        data = ev.data
        if ev.lab == "compare":
            div = data.get("divergence")
            for side in ("a", "b"):
                self.query_one(f"#ab-out-{side}", Static).update(render_side(data[side], data.get("prompt", ""), div is not None))
            where = "identical texts" if div is None else f"first divergence at token {div['index']} (u = {div['u']:.4f})"
            self._status("compare", f"seed {data.get('seed')}: {where}{took}")
        elif ev.lab == "stage_view":
            self.query_one("#st-view", Static).update(render_stages(data))
            self._status("stage_view", f"{len(data.get('stages', []))} stages at position {data.get('position')}{took}")
        else:
            for row in data.get("samples", []):
                if row["step"] not in self.samples:
                    self.samples[row["step"]] = P.TimelineSample(job=ev.job, step=row["step"], tags=tuple(row["tags"]),
                                                                 val_loss=row["val_loss"], text=row["text"])
            self._fill_snapshots()
            self._status("timeline", f"{len(self.samples)} snapshots sampled with seed {data.get('seed')}{took}")

    # -- timeline ---------------------------------------------------------------------------------
    @on(RunPicker.Changed, "#tl-run")
    def _timeline_run(self, event: RunPicker.Changed) -> None:
        self.samples = {}
        run = self._picked("#tl-run")
        if run is not None:
            self._list_snapshots(run)

    @work(thread=True, exclusive=True, group="lab-snapshots", exit_on_error=False)
    def _list_snapshots(self, run: str) -> None:
        from engine.runs.snapshots import list_snapshots

        self.post_message(self.Snapshots(run, list_snapshots(run)))

    def on_lab_pane_snapshots(self, message: Snapshots) -> None:
        if message.run == self._picked("#tl-run"):
            self.snapshots = message.snaps
            self._fill_snapshots()
            if not message.snaps:
                self._status("timeline", "this run has no snapshots (trained with snapshot_base 0); train a new run")

    def _fill_snapshots(self) -> None:
        """The snapshot list: every snapshot on disk and every sample received, oldest first."""
        rows: dict[int, tuple[list[str], float | None]] = {s.step: (list(s.tags), s.val_loss) for s in self.snapshots}
        for step, s in self.samples.items():
            rows.setdefault(step, (list(s.tags), s.val_loss))
        olist = self.query_one("#tl-list", OptionList)
        keep = olist.highlighted
        olist.clear_options()
        for step in sorted(rows):
            tags, val = rows[step]
            extra = " ".join(t for t in tags if t != "scheduled")
            mark = "●" if step in self.samples else "○"
            loss = "" if val is None else f" {val:.2f}"
            olist.add_option(Option(f"{mark} step {step:>6}{loss} {extra}".rstrip(), id=f"snap-{step}"))
        if rows:
            olist.highlighted = min(keep if keep is not None else 0, len(rows) - 1)
        self._show_sample()

    @on(OptionList.OptionHighlighted, "#tl-list")
    def _show_sample(self) -> None:
        olist = self.query_one("#tl-list", OptionList)
        if olist.highlighted is None or not olist.option_count:
            return
        step = int(str(olist.get_option_at_index(olist.highlighted).id).removeprefix("snap-"))
        sample = self.samples.get(step)
        prompt = self.query_one("#tl-prompt", Input).value
        view = self.query_one("#tl-sample", Static)
        if sample is None:
            view.update(Text(f"step {step}: not sampled yet (ctrl+r)", style="dim"))
            return
        out = Text(f"step {step}", style="bold")
        if sample.val_loss is not None:
            out.append(f"  val loss {sample.val_loss:.3f}", style="dim")
        out.append("\n\n")
        out.append(prompt, style="dim")
        out.append(sample.text)
        view.update(out)
