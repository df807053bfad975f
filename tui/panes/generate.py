"""Generate pane: a prompt, sampling controls, streamed tokens tinted by probability, the top
alternatives of the token under the cursor, and a step mode that lets the user branch the text."""

from __future__ import annotations

from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Checkbox, DataTable, Input, Label, Static

from engine.worker import protocol as P
from engine.errors import ConfigError, SeqplayError
from tui.widgets.tokens import TokenView, visible

# (field, label, default, type) of the sampling controls; names follow SamplingSettings.
CONTROLS: list[tuple[str, str, str, type]] = [
    ("temperature", "temp", "1.0", float),
    ("top_k", "top-k", "0", int),
    ("top_p", "top-p", "1.0", float),
    ("min_p", "min-p", "0.0", float),
    ("typical_p", "typical", "1.0", float),
    ("repetition_penalty", "rep.pen", "1.0", float),
    ("max_tokens", "max tok", "200", int),
    ("seed", "seed", "", int),
]


def sampling_settings(values: dict[str, Any]) -> dict[str, Any]:
    """Validate the controls through engine.generation.settings when it exists; return a plain dict."""
    try:
        from engine.generation.settings import SamplingSettings
    except ImportError:
        return values
    settings = SamplingSettings.from_dict({k: v for k, v in values.items() if v is not None or k == "seed"})
    settings.validate()
    return settings.to_dict()


class GeneratePane(Vertical):
    """Sample from the model being trained or from an opened run."""

    BINDINGS = [
        Binding("n", "next_token", "Next token", id="gen_next"),
        Binding("ctrl+t", "toggle_step", "Step mode", id="gen_step_mode"),
    ]

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.gen_id: str | None = None
        self.running = False
        self.base_prompt = ""  # the prompt of the displayed text (before any branch)
        self.branch_offset = 0  # display index of the current generation's first token
        self.done_reason = ""

    def compose(self) -> ComposeResult:
        yield Static("model: the run being trained, or a run opened on the Runs pane (5)", id="gen-model")
        with Horizontal(classes="form-row"):
            yield Label("Prompt")
            yield Input("", placeholder="type a prompt, press enter", id="prompt", compact=True)
            yield Checkbox("step mode", False, id="step-mode", compact=True)
        with Horizontal(classes="form-row", id="sampling"):
            for name, label, default, kind in CONTROLS:
                yield Label(label)
                yield Input(default, id=f"s-{name}", type="integer" if kind is int else "number",
                            placeholder="none" if name == "seed" else "", classes="sampling", compact=True)
        with Horizontal(id="gen-body"):
            with VerticalScroll(id="gen-output-box"):
                yield TokenView(id="gen-output")
            with Vertical(id="gen-side"):
                yield Label("Alternatives (enter: branch here)", classes="section")
                yield DataTable(id="alternatives", cursor_type="row", zebra_stripes=True)
                yield Static("", id="token-info")
        yield Static("", id="gen-status")

    def on_mount(self) -> None:
        self.query_one("#alternatives", DataTable).add_columns("token", "prob")

    def focus_default(self) -> None:
        self.output.focus()  # not the prompt: a focused field would swallow 1-6 and the other keys

    @property
    def output(self) -> TokenView:
        return self.query_one("#gen-output", TokenView)

    @property
    def step_mode(self) -> bool:
        return bool(self.query_one("#step-mode", Checkbox).value)

    def set_model_label(self, name: str) -> None:
        self.query_one("#gen-model", Static).update(f"model: run [b]{name}[/b]")

    # -- settings ----------------------------------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, label, _default, kind in CONTROLS:
            text = self.query_one(f"#s-{name}", Input).value.strip()
            if not text:
                values[name] = None
                continue
            try:
                values[name] = kind(text)
            except ValueError:
                raise ConfigError(f"{label} must be a number, got {text!r}") from None
        if values["temperature"] is not None and values["temperature"] < 0:
            raise ConfigError("temperature must be 0 or more (0 = greedy)")
        if values["max_tokens"] is None or values["max_tokens"] < 1:
            raise ConfigError("max tokens must be at least 1")
        return sampling_settings(values)

    def _model_source(self) -> str | None:
        app = self.app
        if app.train_job is not None:
            return None
        if app.model_run:
            return app.model_run
        raise ConfigError("no model yet: train one (t) or open a run on the Runs pane (5)")

    # -- starting, stepping, branching ----------------------------------------------------------------
    def start_generation(self, prompt: str | None = None, choose: int | None = None, keep: int | None = None) -> None:
        """Start a generation. With ``keep``, branch: keep that many tokens and force ``choose`` next."""
        app = self.app
        try:
            settings = self.settings()
            source = self._model_source()
        except SeqplayError as err:
            app.notify(str(err), title="Generate", severity="error", timeout=6)
            return
        if self.gen_id and app.gen_id == self.gen_id:
            app.send(P.CancelGeneration(gen_id=self.gen_id))
        if keep is None:
            self.base_prompt = self.query_one("#prompt", Input).value if prompt is None else prompt
            self.output.set_prompt(self.base_prompt)
            self.branch_offset = 0
            full_prompt = self.base_prompt
        else:
            self.output.truncate(keep)
            self.branch_offset = keep
            full_prompt = self.base_prompt + self.output.text
        step = self.step_mode or keep is not None
        if keep is not None and not self.step_mode:
            self.query_one("#step-mode", Checkbox).value = True
        self.gen_id = app.new_generation_id()
        self.running = True
        self.done_reason = ""
        app.send(P.Generate(gen_id=self.gen_id, prompt=full_prompt, source=source, settings=settings,
                            max_tokens=int(settings.get("max_tokens") or 200), step_mode=step))
        if step:
            app.send(P.GenerateStep(gen_id=self.gen_id, choose=choose))
        self._status("generating" + (" (step mode: n = next token, enter on an alternative = branch)" if step else
                                     " (escape cancels)"))

    def action_next_token(self) -> None:
        if self.gen_id and self.running and self.app.gen_id == self.gen_id:
            self.app.send(P.GenerateStep(gen_id=self.gen_id))
        elif self.step_mode:
            self.start_generation(prompt=self.base_prompt + self.output.text) if self.output.tokens else self.start_generation()

    def action_toggle_step(self) -> None:
        box = self.query_one("#step-mode", Checkbox)
        box.value = not box.value

    def branch(self, alternative_index: int) -> None:
        tok = self.output.current()
        if tok is None:
            return
        alternatives = tok.top
        if not 0 <= alternative_index < len(alternatives):
            return
        self.start_generation(choose=alternatives[alternative_index].token, keep=self.output.cursor)

    @on(Input.Submitted, "#prompt")
    def _prompt_submitted(self) -> None:
        self.start_generation()
        self.output.focus()

    @on(DataTable.RowSelected, "#alternatives")
    def _alternative_picked(self, event: DataTable.RowSelected) -> None:
        self.branch(event.cursor_row)

    # -- events ------------------------------------------------------------------------------------
    def apply(self, events: list[P.Event]) -> None:
        tokens = [e for e in events if isinstance(e, P.GeneratedToken)]
        if tokens:
            self.output.add(tokens)
            self.query_one("#gen-output-box", VerticalScroll).scroll_end(animate=False)
        for ev in events:
            if isinstance(ev, P.GenerationDone):
                self.running = False
                self.done_reason = ev.reason
                speed = f" · {ev.tokens_per_s:.0f} tokens/s" if ev.tokens_per_s else ""
                self._status(f"done: {ev.reason} · {len(self.output.tokens)} tokens{speed}")
        if tokens and self.running:
            self._status(f"generating · {len(self.output.tokens)} tokens" +
                         (" · n: next token, enter on an alternative: branch" if self.step_mode else " · escape cancels"))

    def generation_failed(self) -> None:
        self.running = False
        self.done_reason = "error"
        self._status("generation failed (see the notification)")

    def _status(self, text: str) -> None:
        self.query_one("#gen-status", Static).update(text)

    @on(TokenView.CursorMoved)
    def _cursor_moved(self, event: TokenView.CursorMoved) -> None:
        table = self.query_one("#alternatives", DataTable)
        table.clear()
        tok = self.output.current()
        info = self.query_one("#token-info", Static)
        if tok is None:
            info.update("")
            return
        for alt in tok.top:
            mark = "▶ " if alt.token == tok.token else "  "
            table.add_row(f"{mark}{visible(alt.text)!r}", f"{alt.prob:.3f}")
        info.update(f"token {tok.index} {visible(tok.text)!r}: p={tok.prob:.3f} (raw {tok.raw_prob:.3f}) · "
                    f"entropy {tok.entropy:.2f} nats")
