"""Model pane: the architecture list from the registry, a hyper-parameter form with a live parameter
count, the optimisation settings, and an estimate of memory, speed and time before training starts."""

from __future__ import annotations

import dataclasses
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Checkbox, Input, Label, ListItem, ListView, Select, Static

from engine.training.config import OPTIMIZERS, SCHEDULES, TrainConfig
from engine.errors import ConfigError, SeqplayError
from engine.models.registry import ARCHS, get_arch
from tui import catalog

DEVICES = ("auto", "cpu", "cuda", "mps")
DEFAULT_ARCH = "transformer" if "transformer" in ARCHS else next(iter(ARCHS))


def _field_id(name: str) -> str:
    return f"hp-{name}"


class ModelPane(Horizontal):
    """Choose and size a model, and how to train it."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.arch = DEFAULT_ARCH
        self.corpus_tokens: int | None = None
        self.vocab_size = 96
        self._building = False

    def compose(self) -> ComposeResult:
        with Vertical(id="model-left"):
            yield Label("Architecture", classes="section")
            yield ListView(*[ListItem(Label(f"{a.name:<12}[dim]{a.family}[/]"), name=a.name) for a in ARCHS.values()],
                           id="archs", initial_index=list(ARCHS).index(self.arch))
        with VerticalScroll(id="model-right"):
            yield Static("", id="arch-description")
            yield Static("", id="arch-equation")
            yield Label("Hyper-parameters", classes="section")
            yield Vertical(id="hparams")
            yield Static("", id="param-count")
            yield Label("Training", classes="section")
            with Horizontal(classes="form-row"):
                yield Label("Optimizer")
                yield Select([(o, o) for o in OPTIMIZERS], value="adamw", allow_blank=False, id="optimizer", compact=True)
                yield Label("LR")
                yield Input("", placeholder="default", id="lr", type="number", compact=True)
                yield Label("Schedule")
                yield Select([(s, s) for s in SCHEDULES], value="cosine", allow_blank=False, id="schedule", compact=True)
            with Horizontal(classes="form-row"):
                yield Label("Clip")
                yield Input("1.0", id="clip", type="number", placeholder="off", compact=True)
                yield Label("Batch")
                yield Input("32", id="batch", type="integer", compact=True)
                yield Label("Context")
                yield Input("", placeholder="default", id="context", type="integer", compact=True)
            with Horizontal(classes="form-row"):
                yield Label("Steps")
                yield Input("2000", id="steps", type="integer", placeholder="no limit", compact=True)
                yield Label("Time (s)")
                yield Input("", id="time-budget", type="number", placeholder="no limit", compact=True)
                yield Label("Device")
                yield Select([(d, d) for d in DEVICES], value="auto", allow_blank=False, id="device", compact=True)
            with Horizontal(classes="form-row"):
                yield Checkbox("auto-rollback (on NaN: reload the last good checkpoint, halve the lr)",
                               False, id="auto-rollback", compact=True)
            yield Label("Before you train", classes="section")
            yield Static("", id="estimate")

    def on_mount(self) -> None:
        data = self.app.pane("data")
        if data is not None and data.stats is not None:
            self.vocab_size = {"char": data.stats.vocab, "byte": 256}.get(data.tokenizer, 4096)
        self._show_arch(self.arch)

    def focus_default(self) -> None:
        self.query_one("#archs").focus()

    def set_corpus_size(self, train_tokens: int | None) -> None:
        self.corpus_tokens = train_tokens
        if not self.is_mounted:
            return  # on_mount computes everything
        pane = self.app.pane("data")
        if pane is not None:
            stats = pane.stats
            if stats is not None:
                self.vocab_size = {"char": stats.vocab, "byte": 256}.get(pane.tokenizer, 4096)
        self._recompute()

    # -- architecture ------------------------------------------------------------------------------
    @on(ListView.Highlighted, "#archs")
    def _arch_highlighted(self, event: ListView.Highlighted) -> None:
        if event.item is not None and event.item.name and event.item.name != self.arch:
            self._show_arch(event.item.name)

    def _show_arch(self, name: str) -> None:
        info = get_arch(name)
        self.arch = name
        self.query_one("#arch-description", Static).update(f"[b]{info.name}[/b] ({info.family}, {info.task}): {info.description}")
        self.query_one("#arch-equation", Static).update(f"[i]{info.equation}[/i]")
        self.query_one("#lr", Input).placeholder = f"{info.default_lr:g}"
        box = self.query_one("#hparams", Vertical)
        box.remove_children()
        cfg = info.make_config(self.vocab_size)
        rows = []
        row: list = []
        for f in dataclasses.fields(cfg):
            if f.name == "vocab_size":
                continue
            value = getattr(cfg, f.name)
            if isinstance(value, bool):
                widget = Checkbox(f.name, value, id=_field_id(f.name), compact=True)
                row.append(widget)
            else:
                kind = "integer" if isinstance(value, int) else "number" if isinstance(value, float) else "text"
                row += [Label(f.name), Input(str(value), id=_field_id(f.name), type=kind, classes="hp", compact=True)]
            if len(row) >= 6:
                rows.append(Horizontal(*row, classes="form-row"))
                row = []
        if row:
            rows.append(Horizontal(*row, classes="form-row"))
        box.mount_all(rows)
        self.call_after_refresh(self._recompute)
        if self.app.is_mounted(self):
            self.app._update_subtitle()

    # -- values ---------------------------------------------------------------------------------
    def model_overrides(self) -> dict[str, Any]:
        """The hyper-parameter form as a dict of typed values (ConfigError on a bad entry)."""
        info = get_arch(self.arch)
        cfg = info.make_config(self.vocab_size)
        out: dict[str, Any] = {}
        for f in dataclasses.fields(cfg):
            if f.name == "vocab_size":
                continue
            found = self.query(f"#{_field_id(f.name)}")
            if not found:
                continue
            widget = found.first()
            default = getattr(cfg, f.name)
            if isinstance(widget, Checkbox):
                out[f.name] = bool(widget.value)
                continue
            text = widget.value.strip()
            try:
                if isinstance(default, bool):
                    out[f.name] = text.lower() in ("1", "true", "yes", "on")
                elif isinstance(default, int):
                    out[f.name] = int(text)
                elif isinstance(default, float):
                    out[f.name] = float(text)
                else:
                    out[f.name] = text
            except ValueError:
                raise ConfigError(f"{f.name} must be a number, got {text!r}; fix it on the Model pane") from None
        return out

    def _number(self, widget_id: str, kind: type, name: str) -> Any:
        text = self.query_one(f"#{widget_id}", Input).value.strip()
        if not text:
            return None
        try:
            return kind(text)
        except ValueError:
            raise ConfigError(f"{name} must be a number, got {text!r}; fix it on the Model pane") from None

    def train_config(self, source: str | None, tokenizer: str, val_fraction: float, device: str = "auto") -> TrainConfig:
        """A validated TrainConfig from the form (raises ConfigError with a one-line message)."""
        if not source:
            raise ConfigError("no corpus is loaded; pick one on the Data pane (1)")
        overrides = self.model_overrides()
        context = self._number("context", int, "context")
        if context is not None and "context" in overrides:
            overrides["context"] = context
        get_arch(self.arch).make_config(self.vocab_size, **overrides).validate()
        chosen_device = str(self.query_one("#device", Select).value)
        cfg = TrainConfig(
            source=source, tokenizer=tokenizer, val_fraction=val_fraction, arch=self.arch, model=overrides,
            optimizer=str(self.query_one("#optimizer", Select).value), lr=self._number("lr", float, "learning rate"),
            schedule=str(self.query_one("#schedule", Select).value), clip=self._number("clip", float, "clip"),
            batch_size=self._number("batch", int, "batch") or 32, context=context,
            steps=self._number("steps", int, "steps"), time_budget=self._number("time-budget", float, "time budget"),
            device=device if chosen_device == "auto" else chosen_device,
            auto_rollback=bool(self.query_one("#auto-rollback", Checkbox).value),
        )
        return cfg.validate()

    @on(Input.Changed)
    @on(Checkbox.Changed)
    @on(Select.Changed)
    def _form_changed(self) -> None:
        self._recompute()

    def _recompute(self) -> None:
        count = self.query_one("#param-count", Static)
        estimate = self.query_one("#estimate", Static)
        try:
            overrides = self.model_overrides()
            cfg = get_arch(self.arch).make_config(self.vocab_size, **overrides)
            cfg.validate()
        except SeqplayError as err:
            count.update(f"[red]{err}[/]")
            estimate.update("")
            return
        try:
            params = cfg.num_params()
        except NotImplementedError:
            count.update(f"parameters: (not computable yet for {self.arch}); vocabulary ≈ {self.vocab_size}")
            estimate.update("")
            return
        count.update(f"parameters: [b]{params:,}[/b]  (vocabulary {self.vocab_size})")
        try:
            batch = self._number("batch", int, "batch") or 32
            context = self._number("context", int, "context") or int(getattr(cfg, "context", 64))
            steps = self._number("steps", int, "steps")
            budget = self._number("time-budget", float, "time budget")
        except ConfigError as err:
            estimate.update(f"[red]{err}[/]")
            return
        device = catalog.detect_device(str(self.query_one("#device", Select).value)
                                       if self.query_one("#device", Select).value != "auto"
                                       else getattr(self.app, "device", "auto"))
        est = catalog.estimate(params, int(getattr(cfg, "width", 64)), int(getattr(cfg, "layers", 1)), batch, context,
                               steps, budget, device, self.corpus_tokens)
        lines = [f"device [b]{device}[/b] · memory ≈ {catalog.human_bytes(est.memory_bytes)} · "
                 f"≈ {catalog.human_count(est.tokens_per_s)} tokens/s · time ≈ {catalog.human_seconds(est.seconds)} "
                 "[dim](rough estimate)[/]"]
        if est.warning:
            lines.append(f"[yellow]warning: {est.warning}[/]")
        estimate.update("\n".join(lines))
