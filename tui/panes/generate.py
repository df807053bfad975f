"""The generation lab: pick the model, type a prompt, set any sampling control, watch tokens stream in
tinted by probability, inspect each token's alternatives, and branch the text into a tree.

* Model: a picker of the runs on disk and, while training, the live model. It changes only when the
  user picks another entry or opens a run on the Runs pane; a run that finishes training does not
  replace a run the user picked.
* Sampling: one control per field of ``SamplingSettings`` (the CLI's options), the common ones always
  shown, the rest under "more"; a grid that wraps to the pane's width. Enter in any field generates.
  Named presets (built-in and the user's, saved in the user config folder: ``tui.presets``).
* History: every generation is a root of the branch tree, every branch a child (``tui.widgets.branches``);
  selecting a node shows it, ctrl+z removes the newest branch. Positions count from the start of the
  generation, so token numbers run on across branches; each branch shows its cumulative log-prob.
* The token under the cursor: its position, rank, processed and raw probability (also when it is
  outside the top alternatives: forced or filtered tokens are listed). The alternatives are the
  processed top merged with the raw top: those the sampling chain removed are struck out, with their
  raw probability and "—" as processed p. Enter on any row branches with that token forced (the
  worker's ``choose``), a removed one included: that is how to see where a filtered token leads.
* Beam search: "beams" > 1 (and its length penalty) asks the worker for a beam search
  (``engine.generation.beams``) instead of sampling; its hypotheses are listed best first with their
  score and log-prob, wrapped to the pane's width.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, Collapsible, DataTable, Input, Label, Select, Static, Tree

from engine.errors import ConfigError, SeqplayError
from engine.generation.settings import BEAMS, LENGTH_PENALTY, SamplingSettings
from engine.settings import Setting
from engine.worker import protocol as P
from tui import presets
from tui.widgets.ask_text import AskText
from tui.widgets.branches import Branch, BranchHistory, BranchTree
from tui.widgets.run_picker import LIVE, RunPicker
from tui.widgets.snapshot_picker import SnapshotPicker
from tui.widgets.tick import Tick
from tui.widgets.tokens import TokenView, glyph, tint_legend

REMOVED = "dim strike"  # the style of an alternative the sampling chain removed (processed p 0)
BASIC = ("temperature", "top_k", "top_p", "min_p", "max_tokens", "seed")
SKIPPED = {"logit_bias", "order"}  # dict / ordering settings: CLI-only for now
LABELS = {"temperature": "temp", "top_k": "top-k", "top_p": "top-p", "min_p": "min-p", "typical_p": "typical",
          "repetition_penalty": "rep pen", "repetition_window": "rep window", "presence_penalty": "presence",
          "frequency_penalty": "frequency", "no_repeat_ngram": "no-repeat", "banned": "ban ids",
          "stop": "stop", "max_tokens": "max tok", "top_alternatives": "alts", "seed": "seed",
          "beams": "beams", "length_penalty": "len pen", "dynatemp_range": "dyn range", "dynatemp_exponent": "dyn exp",
          "top_n_sigma": "top-nσ", "dry_multiplier": "DRY mult", "dry_base": "DRY base", "dry_allowed_length": "DRY allow",
          "dry_sequence_breakers": "DRY breaks", "dry_range": "DRY range", "xtc_threshold": "XTC thresh",
          "xtc_probability": "XTC prob", "mirostat_tau": "miro tau", "mirostat_eta": "miro eta"}  # <= 10 characters
SEARCH = (BEAMS, LENGTH_PENALTY)  # beam search's controls, in the basic grid after the sampling ones


def _plain_type(name: str) -> Any:
    hint = typing.get_type_hints(SamplingSettings)[name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args and typing.get_origin(hint) is not list else hint


def sampling_fields() -> list[dataclasses.Field]:
    """The settings the lab offers: every SamplingSettings field the CLI offers too."""
    return [f for f in dataclasses.fields(SamplingSettings)
            if f.name not in SKIPPED and f.metadata.get("cli", True)]


def _default(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default  # type: ignore[misc]


def _show(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ",".join(str(v).encode("unicode_escape").decode() for v in value)
    return str(value)


def _parse(setting: Setting, text: str) -> Any:
    """A control's value by its engine Setting; empty text is the default."""
    return setting.default if not text.strip() else setting.parse(text)


def sampling_settings(values: dict[str, Any]) -> dict[str, Any]:
    """Validate the controls with ``SamplingSettings`` (the engine's rules); a plain dict."""
    return SamplingSettings.from_dict(values).validate().to_dict()


class SamplingForm(Vertical):
    """The sampling controls as a wrapping grid (basic ones first, the rest in a Collapsible)."""

    DEFAULT_CSS = """
    SamplingForm { height: auto; }
    SamplingForm .grid { height: auto; layout: grid; grid-size: 3; grid-gutter: 0 1; }
    SamplingForm .cell { height: 1; }
    SamplingForm .cell > Label { width: 11; color: $text-muted; text-wrap: nowrap; text-overflow: ellipsis; }
    SamplingForm .cell > Input { width: 1fr; }
    SamplingForm Collapsible { padding: 0; border: none; }
    SamplingForm Collapsible > Contents { padding: 0; }
    """

    def compose(self) -> ComposeResult:
        fields = sampling_fields()
        basic = [f for f in fields if f.name in BASIC]
        more = [f for f in fields if f.name not in BASIC]
        with Vertical(classes="grid"):
            yield from self._cells(basic)
            yield from self._search_cells()
        with Collapsible(title=f"more sampling controls ({len(more)})", collapsed=True, id="gen-more"):
            with Vertical(classes="grid"):
                yield from self._cells(more)

    def _cells(self, fields: list[dataclasses.Field]) -> ComposeResult:
        for f in fields:
            kind, value = _plain_type(f.name), _default(f)
            with Horizontal(classes="cell") as cell:
                cell.tooltip = f.metadata.get("help") or f.name.replace("_", " ")
                if kind is bool:
                    yield Tick(LABELS.get(f.name, f.name), bool(value), id=f"s-{f.name}", compact=True)
                    continue
                yield Label(LABELS.get(f.name, f.name.replace("_", " ")))
                itype = "integer" if kind is int else "number" if kind is float else "text"
                yield Input(_show(value), id=f"s-{f.name}", type=itype, compact=True, classes="sampling",
                            placeholder="random" if f.name == "seed" else ("comma-separated" if kind is list or
                                                                              typing.get_origin(kind) is list else ""))

    def _search_cells(self) -> ComposeResult:
        for setting in SEARCH:
            with Horizontal(classes="cell") as cell:
                cell.tooltip = setting.help
                yield Label(LABELS[setting.name])
                yield Input(_show(setting.default), id=f"s-{setting.name}", compact=True, classes="sampling",
                            type="integer" if setting.kind is int else "number")

    def search(self) -> tuple[int, float]:
        """The beam width and length penalty (one-line ConfigError on a bad entry)."""
        values = [_parse(s, self.query_one(f"#s-{s.name}", Input).value) for s in SEARCH]
        return int(values[0]), float(values[1])

    def on_resize(self) -> None:
        for grid in self.query(".grid"):
            grid.styles.grid_size_columns = max(1, self.size.width // 24)

    def values(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in sampling_fields():
            widget = self.query_one(f"#s-{f.name}")
            kind = _plain_type(f.name)
            if isinstance(widget, Tick):
                out[f.name] = bool(widget.value)
                continue
            text = widget.value.strip()
            label = LABELS.get(f.name, f.name)
            if typing.get_origin(kind) is list or kind is list:
                inner = (typing.get_args(kind) or (str,))[0]
                parts = [p for p in text.split(",") if p.strip()] if text else []
                try:
                    out[f.name] = [int(p) for p in parts] if inner is int else \
                        [p.strip().encode().decode("unicode_escape") for p in parts]
                except ValueError:
                    raise ConfigError(f"{label} must be whole numbers separated by commas, got {text!r}") from None
                continue
            if not text:
                if _default(f) is None:
                    out[f.name] = None
                    continue
                raise ConfigError(f"{label} needs a value (default {_show(_default(f))})")
            try:
                out[f.name] = int(text) if kind is int else float(text) if kind is float else text
            except ValueError:
                raise ConfigError(f"{label} must be a number, got {text!r}") from None
        return out

    def set_values(self, values: dict[str, Any]) -> None:
        """Defaults, overridden by ``values`` (a preset)."""
        for f in sampling_fields():
            widget = self.query_one(f"#s-{f.name}")
            value = values.get(f.name, _default(f))
            if isinstance(widget, Tick):
                widget.value = bool(value)
            else:
                widget.value = _show(value)

    def changed(self) -> dict[str, Any]:
        """The values that differ from the defaults (what a preset stores)."""
        values = self.values()
        return {f.name: values[f.name] for f in sampling_fields() if values[f.name] != _default(f)}


class GeneratePane(Vertical):
    """Sample from the model being trained or from a run, as a tree of branches."""

    DEFAULT_CSS = """
    GeneratePane #gen-top { height: 1; }
    GeneratePane #gen-top > Label { width: auto; padding: 0 1; color: $text-muted; }
    GeneratePane #gen-run { width: 1fr; }
    GeneratePane #gen-at { width: 18; margin-left: 1; }
    GeneratePane #gen-preset { width: 22; }
    GeneratePane #gen-top Button { min-width: 6; width: auto; margin-left: 1; }
    GeneratePane #gen-prompt-row { height: 1; }
    GeneratePane #gen-prompt-row > Label { width: 8; padding: 0 1; }
    GeneratePane #gen-prompt-row > Tick { width: auto; margin-left: 1; }
    GeneratePane #gen-body { height: 1fr; }
    GeneratePane #gen-output-box { width: 1fr; border: round $panel; }
    GeneratePane #gen-side { width: 36; }
    GeneratePane #alternatives { height: auto; max-height: 9; }
    GeneratePane #token-info { height: auto; }
    GeneratePane #gen-legend-row { height: 1; }
    GeneratePane #gen-legend { width: auto; }
    GeneratePane #gen-status { width: 1fr; color: $text-muted; padding-left: 2; }
    GeneratePane #gen-beams { height: auto; display: none; }
    GeneratePane #gen-beams.shown { display: block; }
    """
    BINDINGS = [
        Binding("n", "next_token", "Next token", id="gen_next"),
        Binding("ctrl+t", "toggle_step", "Step mode", id="gen_step_mode"),
        Binding("ctrl+z", "undo_branch", "Undo branch", id="gen_undo"),
    ]

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.gen_id: str | None = None
        self.running = False
        self.history = BranchHistory()
        self.active: Branch | None = None  # the branch the running generation extends
        self.done_reason = ""
        self.model_choice: str | None = None  # LIVE, a run path, or None: follow the app
        self._presets: dict[str, dict[str, Any]] = {}
        self._rows: list[int] = []  # token id of each alternatives row
        self.beams: tuple[P.BeamText, ...] = ()  # the hypotheses of the last beam search, best first

    def compose(self) -> ComposeResult:
        with Horizontal(id="gen-top"):
            yield Label("model")
            yield RunPicker(id="gen-run")
            yield SnapshotPicker(id="gen-at")
            yield Select([], prompt="preset", id="gen-preset", compact=True)
            yield Button("save", id="gen-save-preset", compact=True)
        with Horizontal(id="gen-prompt-row"):
            yield Label("Prompt")
            yield Input("", placeholder="type a prompt, press enter", id="prompt", compact=True, select_on_focus=False)
            yield Tick("step mode", False, id="step-mode", compact=True)
        yield SamplingForm(id="gen-sampling")
        with Horizontal(id="gen-body"):
            with VerticalScroll(id="gen-output-box"):
                yield TokenView(id="gen-output")
                yield Static("", id="gen-beams")
            with Vertical(id="gen-side"):
                yield Label("Alternatives (enter: branch here)", classes="section")
                yield DataTable(id="alternatives", cursor_type="row", zebra_stripes=True)
                yield Static("", id="token-info")
                yield BranchTree(id="gen-tree")
        with Horizontal(id="gen-legend-row"):
            yield Static(tint_legend(), id="gen-legend")
            yield Static("", id="gen-status")

    def on_mount(self) -> None:
        self.query_one("#alternatives", DataTable).add_columns("#", "token", "p", "raw")
        self._load_presets()

    def on_show(self) -> None:
        want = self.model_choice if self.model_choice not in (None, LIVE) else getattr(self.app, "model_run", None)
        self.query_one(RunPicker).reload(training=bool(getattr(self.app, "train_job", None)), want=want)
        self._load_snapshots()  # a run still training writes new ones

    def focus_default(self) -> None:
        self.output.focus()  # not the prompt: a focused field would swallow 1-6 and the other keys

    @property
    def output(self) -> TokenView:
        return self.query_one("#gen-output", TokenView)

    @property
    def step_mode(self) -> bool:
        return bool(self.query_one("#step-mode", Tick).value)

    # -- the model ----------------------------------------------------------------------------------
    def set_model_label(self, name: str, path: str | None = None) -> None:
        """The user opened a run (Runs pane): sample from it from now on."""
        path = path or getattr(self.app, "model_run", None)
        self.model_choice = path
        picker = self.query_one(RunPicker)
        picker.reload(training=bool(getattr(self.app, "train_job", None)), want=path)
        self._load_snapshots()
        self._status(f"model: run {name}")

    def run_finished(self, run_dir: str | None) -> None:
        """A training run ended: follow it only if the live model was what we sampled."""
        if not run_dir:
            return
        from pathlib import Path

        if self.model_choice in (None, LIVE):
            self.model_choice = run_dir
            self.query_one(RunPicker).reload(training=False, want=run_dir)
            self._load_snapshots()
            self._status(f"model: run {Path(run_dir).name} (the run you were sampling finished)")
        else:
            self.query_one(RunPicker).reload(training=False)
            self.app.notify(f"{Path(run_dir).name} finished; pick it as the model to sample from it", timeout=5)

    @on(Select.Changed, "#gen-run")
    def _model_picked(self, event: Select.Changed) -> None:
        if isinstance(event.value, str):
            self.model_choice = event.value
            self._load_snapshots()

    def _run_choice(self) -> str | None:
        """The run the model comes from (None: the live model or none yet)."""
        if self.model_choice == LIVE:
            return None
        return self.model_choice or getattr(self.app, "model_run", None)

    def _load_snapshots(self) -> None:
        live = self.model_choice == LIVE or (self.model_choice is None and getattr(self.app, "train_job", None))
        self.query_one("#gen-at", SnapshotPicker).load(None if live else self._run_choice())

    def _model_source(self) -> str | None:
        """The worker's source: the live model (None), a run, or a snapshot of it (RUN@best/@last/@STEP)."""
        app = self.app
        choice = self.model_choice
        if choice == LIVE or (choice is None and app.train_job is not None):
            if app.train_job is None:
                raise ConfigError("nothing is training now; pick a run as the model")
            return None
        run = choice or app.model_run
        if run:
            at = self.query_one("#gen-at", SnapshotPicker)
            return run + (at.suffix if at.run == run else "")
        raise ConfigError("no model yet: train one (t) or pick a run in the model list")

    # -- settings and presets -------------------------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        return sampling_settings(self.query_one(SamplingForm).values())

    def _load_presets(self, select: str | None = None) -> None:
        self._presets = presets.load_presets()
        box = self.query_one("#gen-preset", Select)
        with box.prevent(Select.Changed):
            box.set_options([(name, name) for name in self._presets])
            if select is not None:
                box.value = select

    @on(Select.Changed, "#gen-preset")
    def _preset_picked(self, event: Select.Changed) -> None:
        if isinstance(event.value, str) and event.value in self._presets:
            self.query_one(SamplingForm).set_values(self._presets[event.value])
            self._status(f"preset {event.value}")

    def apply_preset(self, name: str) -> None:
        self.query_one("#gen-preset", Select).value = name

    @on(Button.Pressed, "#gen-save-preset")
    def action_save_preset(self) -> None:
        try:
            values = self.query_one(SamplingForm).changed()
            sampling_settings(self.query_one(SamplingForm).values())
        except SeqplayError as err:
            self.app.notify(str(err), title="Generate", severity="error", timeout=6)
            return

        def done(name: str | None) -> None:
            if name:
                try:
                    path = presets.save_preset(name, values)
                except (SeqplayError, OSError) as err:
                    self.app.notify(str(err), title="Generate", severity="error")
                    return
                self._load_presets(select=name.strip())
                self.app.notify(f"preset {name.strip()} saved to {path}", timeout=4)

        self.app.push_screen(AskText("Save these sampling settings as preset", ""), done)

    # -- starting, stepping, branching ----------------------------------------------------------------
    def start_generation(self, prompt: str | None = None, choose: int | None = None, keep: int | None = None) -> None:
        """Start a generation; with ``keep``, branch the shown one: keep that many tokens, force ``choose``."""
        app = self.app
        try:
            settings = self.settings()
            source = self._model_source()
            width, length_penalty = self.query_one(SamplingForm).search() if keep is None else (1, 1.0)
        except SeqplayError as err:
            app.notify(str(err), title="Generate", severity="error", timeout=6)
            return
        if self.gen_id and app.gen_id == self.gen_id:
            app.send(P.CancelGeneration(gen_id=self.gen_id))
        if width > 1:
            self._start_beams(settings, source, width, length_penalty, prompt)
            return
        self._show_beams(None)
        if keep is None:
            text = self.query_one("#prompt", Input).value if prompt is None else prompt
            branch = self.history.start(text, settings, source)
        else:
            branch = self.history.branch(keep, settings, source)
            if not self.step_mode:
                self.query_one("#step-mode", Tick).value = True
        self.active = branch
        self.output.show(branch.prompt, branch.tokens)
        self._tree()
        step = self.step_mode
        self.gen_id = app.new_generation_id()
        self.running = True
        self.done_reason = ""
        app.send(P.Generate(gen_id=self.gen_id, prompt=branch.prompt + branch.text, source=source, settings=settings,
                            max_tokens=int(settings.get("max_tokens") or 200), step_mode=step))
        if step:
            app.send(P.GenerateStep(gen_id=self.gen_id, choose=choose))
        self._status("generating" + (" (step mode: n = next token, enter on an alternative = branch)" if step else
                                     " (escape cancels)"))

    def _start_beams(self, settings: dict[str, Any], source: str | None, width: int, length_penalty: float,
                     prompt: str | None) -> None:
        """A beam search of the prompt: the worker answers with its hypotheses (no token stream)."""
        text = self.query_one("#prompt", Input).value if prompt is None else prompt
        self.output.show(text, [])
        self._show_beams([])
        self.active = None
        self.gen_id = self.app.new_generation_id()
        self.running = True
        self.done_reason = ""
        self.app.send(P.Generate(gen_id=self.gen_id, prompt=text, source=source, settings=settings,
                                 max_tokens=int(settings.get("max_tokens") or 200), beams=width,
                                 length_penalty=length_penalty))
        self._status(f"beam search, {width} beams (escape cancels)")

    def _show_beams(self, beams: tuple[P.BeamText, ...] | list | None) -> None:
        """List the hypotheses best first (None: hide the list; empty: searching)."""
        box = self.query_one("#gen-beams", Static)
        box.set_class(beams is not None, "shown")
        if beams is None:
            box.update("")
            return
        if not beams:
            box.update(Text("searching ...", style="dim"))
            return
        out = Text()
        for k, b in enumerate(beams, 1):
            why = "" if b.reason == "max_tokens" else f" · {b.reason}"
            out.append(f"\n{k}. score {b.score:.3f} · logp {b.logprob:.2f} · {b.tokens} tok{why}\n",
                       style="bold" if k == 1 else "dim bold")
            out.append(b.text)
            out.append("\n")
        box.update(out)

    def action_next_token(self) -> None:
        if self.gen_id and self.running and self.app.gen_id == self.gen_id:
            self.app.send(P.GenerateStep(gen_id=self.gen_id))
        elif self.step_mode and self.history.current is not None and self.history.current.tokens:
            self.start_generation(keep=len(self.history.current.tokens))  # continue: a branch at the end
        elif self.step_mode:
            self.start_generation()

    def action_toggle_step(self) -> None:
        box = self.query_one("#step-mode", Tick)
        box.value = not box.value

    def branch(self, alternative_index: int) -> None:
        row = self._rows[alternative_index] if 0 <= alternative_index < len(self._rows) else None
        if row is None or self.output.current() is None:
            return
        self.start_generation(choose=row, keep=self.output.cursor)

    def action_undo_branch(self) -> None:
        removed = self.history.undo()
        if removed is None:
            self.app.notify("nothing to undo", severity="warning", timeout=2)
            return
        if removed is self.active and self.running and self.gen_id:
            self.app.send(P.CancelGeneration(gen_id=self.gen_id))
            self.running = False
        self._show_current()
        self._status(f"removed {'branch' if removed.parent else 'generation'} #{removed.id}")

    def _show_current(self) -> None:
        self._show_beams(None)
        node = self.history.current
        if node is None:
            self.output.set_prompt("")
        else:
            self.output.show(node.prompt, node.tokens)
        self._tree()

    def _tree(self) -> None:
        self.query_one(BranchTree).show(self.history)

    @on(Tree.NodeSelected, "#gen-tree")
    def _node_selected(self, event: Tree.NodeSelected) -> None:
        event.stop()
        node = self.history.find(event.node.data) if event.node.data is not None else None
        if node is not None and node is not self.history.current:
            self._show_beams(None)
            self.history.current = node
            self.output.show(node.prompt, node.tokens)
            self._tree()

    @on(Input.Submitted, "#prompt")
    def _prompt_submitted(self) -> None:
        self.start_generation()
        self.output.focus()

    @on(Input.Submitted, "SamplingForm Input")
    def _sampling_submitted(self) -> None:
        self.start_generation()

    @on(DataTable.RowSelected, "#alternatives")
    def _alternative_picked(self, event: DataTable.RowSelected) -> None:
        self.branch(event.cursor_row)

    # -- events ------------------------------------------------------------------------------------
    def apply(self, events: list[P.Event]) -> None:
        tokens = [e for e in events if isinstance(e, P.GeneratedToken)]
        branch = self.active
        if tokens and branch is not None:
            branch.tokens.extend(tokens)
            if branch is self.history.current:
                self.output.grew()
                self.query_one("#gen-output-box", VerticalScroll).scroll_end(animate=False)
        for ev in events:
            if isinstance(ev, P.GenerationDone) and branch is None and self.query_one("#gen-beams").has_class("shown"):
                self.running = False
                self.done_reason = ev.reason
                self.beams = ev.beams
                self._show_beams(ev.beams if ev.beams else None)
                self._status(f"done: beam search · {len(ev.beams)} hypotheses · best score "
                             f"{ev.beams[0].score:.3f}" if ev.beams else f"done: {ev.reason}")
                continue
            if isinstance(ev, P.GenerationDone):
                self.running = False
                self.done_reason = ev.reason
                if branch is not None:
                    branch.reason = ev.reason
                speed = f" · {ev.tokens_per_s:.0f} tokens/s" if ev.tokens_per_s else ""
                n = len(branch.tokens) if branch else 0
                self._status(f"done: {ev.reason} · {n} tokens · logp {branch.logprob if branch else 0:.1f}{speed}")
                self._tree()
        if tokens and self.running and branch is not None:
            self._status(f"generating · {len(branch.tokens)} tokens" +
                         (" · n: next token, enter on an alternative: branch" if self.step_mode else " · escape cancels"))
        if tokens and self.step_mode:
            self._tree()

    def generation_failed(self) -> None:
        self.running = False
        self._show_beams(None)
        self.done_reason = "error"
        self._status("generation failed (see the notification)")

    def _status(self, text: str) -> None:
        self.query_one("#gen-status", Static).update(text)

    @on(TokenView.CursorMoved)
    def _cursor_moved(self, event: TokenView.CursorMoved) -> None:
        table = self.query_one("#alternatives", DataTable)
        table.clear()
        self._rows = []
        tok = self.output.current()
        info = self.query_one("#token-info", Static)
        if tok is None:
            info.update("")
            return
        pos = self.output.cursor
        kept = [a.token for a in tok.top if not a.removed]  # in processed order: a kept row's rank
        rank = tok.rank or (kept.index(tok.token) + 1 if tok.token in kept else 0)
        listed = any(a.token == tok.token for a in tok.top)
        rows = [*tok.top] if listed else [*tok.top, P.TokenAlternative(tok.token, tok.text, tok.prob, tok.raw_prob)]
        for alt in rows:
            chosen = alt.token == tok.token
            style = ("bold " if chosen else "") + (REMOVED if alt.removed else "")
            if alt.removed:
                place = "—"
            elif alt.token in kept:
                place = str(kept.index(alt.token) + 1)
            else:
                place = str(rank) if rank else f">{len(kept)}"
            raw = tok.raw_prob if chosen else alt.raw_prob
            table.add_row(Text(f"{'▶' if chosen else ' '}{place}", style=style), Text(glyph(alt.text), style=style),
                          Text("—" if alt.removed else f"{alt.prob:.3f}", style=style), Text(f"{raw:.3f}", style=style))
            self._rows.append(alt.token)
        where = "" if rank or listed else f" (outside the top {len(kept)})"
        filtered = " · filtered by the sampling settings" if tok.prob == 0 else ""
        info.update(Text(f"#{pos} {glyph(tok.text)}: p={tok.prob:.3f} raw {tok.raw_prob:.3f}"
                         f"{' · rank ' + str(rank) if rank else where} · entropy {tok.entropy:.2f} nats{filtered}"))
