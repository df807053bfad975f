"""Model pane: the architecture list from the registry, the hyper-parameters that architecture has,
the optimisation settings, the exact parameter count and an estimate of memory, speed and time.

The count and the estimate are the engine's (``engine.planning.parameter_count`` / ``estimate_run``)
on the vocabulary the Data pane got from ``prepare``: the number shown is the number trained.
"""

from __future__ import annotations

from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.containers import Grid, Horizontal, Vertical, VerticalScroll
from textual.widgets import Checkbox, Input, Label, ListItem, ListView, Select, Static

from engine.errors import ConfigError, SeqplayError
from engine.models.registry import ARCHS, get_arch, model_settings
from engine.planning import estimate_run, parameter_count
from engine.settings import Setting
from engine.training.config import OPTIMIZERS, SCHEDULES, TrainConfig
from tui import catalog

DEVICES = ("auto", "cpu", "cuda", "mps")
DEFAULT_ARCH = "transformer" if "transformer" in ARCHS else next(iter(ARCHS))
TRAINING_DEFAULTS = {"optimizer": "adamw", "lr": "", "schedule": "cosine", "clip": "1.0", "batch": "32",
                     "steps": "2000", "time-budget": "", "device": "auto", "auto-rollback": False}


def _field_id(name: str) -> str:
    return f"hp-{name}"


class FlagBox(Checkbox):
    """A checkbox whose label says its state ("on"/"off"), so it reads at a glance."""

    def __init__(self, value: bool, **kwargs) -> None:
        super().__init__("on" if value else "off", value, compact=True, **kwargs)

    def watch_value(self, value: bool) -> None:
        self.label = "on" if value else "off"


class ModelPane(Horizontal):
    """Choose and size a model, and how to train it."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.arch = DEFAULT_ARCH
        self.corpus_tokens: int | None = None
        self.vocab_size: int | None = None
        self.params_shown: int | None = None  # the parameter count on screen (None: not known yet)
        self.counted_for: str | None = None  # the architecture whose count (or refusal) is on screen
        self._values: dict[str, dict[str, Any]] = {}  # arch -> hyper-parameters typed so far

    def compose(self) -> ComposeResult:
        memory = getattr(self.app, "memory", {}).get("model", {})
        if memory.get("arch") in ARCHS:
            self.arch = memory["arch"]
        saved = memory.get("hparams", {})
        self._values = {a: dict(v) for a, v in saved.items() if isinstance(v, dict)}
        training = {**TRAINING_DEFAULTS, **{k: v for k, v in memory.get("training", {}).items() if k in TRAINING_DEFAULTS}}
        with Vertical(id="model-left"):
            yield Label("Architecture", classes="section")
            yield ListView(*[ListItem(Label(a.name), name=a.name) for a in ARCHS.values()],
                           id="archs", initial_index=list(ARCHS).index(self.arch))
        with VerticalScroll(id="model-right"):
            yield Static("", id="arch-description")
            yield Static("", id="arch-equation")
            yield Label("Hyper-parameters", classes="section")
            yield Grid(id="hparams", classes="form-grid")
            yield Static("", id="param-count")
            yield Label("Training", classes="section")
            with Grid(id="training", classes="form-grid"):
                yield Label("optimizer")
                yield Select([(o, o) for o in OPTIMIZERS], value=_choice(training["optimizer"], OPTIMIZERS),
                             allow_blank=False, id="optimizer", compact=True)
                yield Label("lr")
                yield Input(str(training["lr"]), placeholder="default", id="lr", type="number", compact=True)
                yield Label("schedule")
                yield Select([(s, s) for s in SCHEDULES], value=_choice(training["schedule"], SCHEDULES),
                             allow_blank=False, id="schedule", compact=True)
                yield Label("clip")
                yield Input(str(training["clip"]), id="clip", type="number", placeholder="off", compact=True)
                yield Label("batch")
                yield Input(str(training["batch"]), id="batch", type="integer", compact=True)
                yield Label("steps")
                yield Input(str(training["steps"]), id="steps", type="integer", placeholder="no limit", compact=True)
                yield Label("time (s)")
                yield Input(str(training["time-budget"]), id="time-budget", type="number", placeholder="no limit",
                            compact=True)
                yield Label("device")
                yield Select([(d, d) for d in DEVICES], value=_choice(training["device"], DEVICES), allow_blank=False,
                             id="device", compact=True)
                yield Label("auto-rollback")
                yield FlagBox(bool(training["auto-rollback"]), id="auto-rollback")
            yield Static("[dim]auto-rollback: on NaN reload the last good checkpoint and halve the lr[/]",
                         id="rollback-help")
            yield Label("Before you train", classes="section")
            yield Static("", id="estimate")

    async def on_mount(self) -> None:
        data = self.app.pane("data")
        if data is not None:
            self.vocab_size = data.vocab_size
            self.corpus_tokens = data.train_tokens
        await self._show_arch(self.arch)

    def focus_default(self) -> None:
        self.query_one("#archs").focus()

    def set_corpus(self, vocab_size: int | None, train_tokens: int | None) -> None:
        """The Data pane's tokenizer vocabulary and training tokens changed."""
        self.vocab_size, self.corpus_tokens = vocab_size, train_tokens
        if self.is_mounted:
            self._recompute()

    def remembered(self) -> dict[str, Any]:
        """What the next session restores (see tui.memory)."""
        self._keep_values()
        training: dict[str, Any] = {}
        for key in TRAINING_DEFAULTS:
            widget = self.query_one(f"#{key}")
            training[key] = bool(widget.value) if isinstance(widget, Checkbox) else str(widget.value)
        return {"arch": self.arch, "hparams": self._values, "training": training}

    # -- architecture ------------------------------------------------------------------------------
    @on(ListView.Highlighted, "#archs")
    async def _arch_highlighted(self, event: ListView.Highlighted) -> None:
        if event.item is not None and event.item.name and event.item.name != self.arch:
            self._keep_values()
            await self._show_arch(event.item.name)

    def _keep_values(self) -> None:
        values = {}
        for setting in model_settings(self.arch):
            found = self.query(f"#{_field_id(setting.name)}")
            if found:
                widget = found.first()
                values[setting.name] = bool(widget.value) if isinstance(widget, Checkbox) else str(widget.value)
        if values:
            self._values[self.arch] = values

    async def _show_arch(self, name: str) -> None:
        info = get_arch(name)
        self.arch = name
        self.params_shown = None  # until the new form is mounted and counted
        self.counted_for = None
        self.query_one("#arch-description", Static).update(f"[b]{info.name}[/b] ({info.family}, {info.task}): {info.description}")
        self.query_one("#arch-equation", Static).update(f"[i]{info.equation}[/i]")
        self.query_one("#lr", Input).placeholder = f"{info.default_lr:g}"
        box = self.query_one("#hparams", Grid)
        await box.remove_children()
        saved = self._values.get(name, {})
        widgets = []
        for setting in model_settings(name):
            widgets.append(Label(setting.name))
            widgets.append(_field_widget(setting, saved.get(setting.name, setting.default)))
        await box.mount_all(widgets)
        self._recompute()
        if self.app.is_mounted(self):
            self.app._update_subtitle()

    # -- values ---------------------------------------------------------------------------------
    def model_overrides(self) -> dict[str, Any]:
        """The hyper-parameter form as a dict of typed values (ConfigError on a bad entry)."""
        out: dict[str, Any] = {}
        for setting in model_settings(self.arch):
            name, default = setting.name, setting.default
            found = self.query(f"#{_field_id(name)}")
            if not found:
                continue
            widget = found.first()
            if isinstance(widget, Checkbox):
                out[name] = bool(widget.value)
                continue
            if isinstance(widget, Select):
                out[name] = str(widget.value)
                continue
            text = widget.value.strip()
            try:
                if isinstance(default, int):
                    out[name] = int(text)
                elif isinstance(default, float):
                    out[name] = float(text)
                else:
                    out[name] = text
            except ValueError:
                raise ConfigError(f"{name} must be a number, got {text!r}; fix it on the Model pane") from None
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
        cfg = self._config(source, tokenizer, val_fraction, device)
        get_arch(self.arch).make_config(self.vocab_size or 0, **cfg.model).validate()
        return cfg.validate()

    def _config(self, source: str, tokenizer: str, val_fraction: float, device: str) -> TrainConfig:
        chosen_device = str(self.query_one("#device", Select).value)
        return TrainConfig(
            source=source, tokenizer=tokenizer, val_fraction=val_fraction, arch=self.arch,
            model=self.model_overrides(), optimizer=str(self.query_one("#optimizer", Select).value),
            lr=self._number("lr", float, "learning rate"), schedule=str(self.query_one("#schedule", Select).value),
            clip=self._number("clip", float, "clip"), batch_size=self._number("batch", int, "batch") or 32,
            steps=self._number("steps", int, "steps"), time_budget=self._number("time-budget", float, "time budget"),
            device=device if chosen_device == "auto" else chosen_device,
            auto_rollback=bool(self.query_one("#auto-rollback", Checkbox).value),
        )

    @on(Input.Changed)
    @on(Checkbox.Changed)
    @on(Select.Changed)
    def _form_changed(self) -> None:
        self._recompute()

    def _recompute(self) -> None:
        count = self.query_one("#param-count", Static)
        estimate = self.query_one("#estimate", Static)
        self.params_shown = None
        data = self.app.pane("data")
        try:
            cfg = self._config(getattr(data, "spec", None) or "grammar", getattr(data, "tokenizer", "char"),
                               getattr(data, "val_fraction", 0.1), getattr(self.app, "device", "auto")).validate()
            if self.vocab_size is None:
                get_arch(self.arch).make_config(0, **cfg.model).validate()
                count.update("parameters: [dim]waiting for the tokenizer's vocabulary (Data pane) ...[/]")
                estimate.update("")
                return
            params = parameter_count(cfg, self.vocab_size)
        except SeqplayError as err:
            count.update(f"[red]{err}[/]")
            estimate.update("")
            self.counted_for = self.arch
            return
        self.params_shown = params
        self.counted_for = self.arch
        count.update(f"parameters: [b]{params:,}[/b]  [dim](vocabulary {self.vocab_size:,} from the Data pane)[/]")
        device = cfg.device if cfg.device != "auto" else (getattr(self.app, "worker_device", None) or "auto")
        est = estimate_run(cfg, self.vocab_size, self.corpus_tokens, device)
        where = device if device != "auto" else "auto (the worker picks cuda, mps or cpu)"
        lines = [f"device [b]{where}[/b] · memory ≈ {catalog.human_bytes(est.memory_bytes)} · "
                 f"≈ {catalog.human_count(est.tokens_per_s)} tokens/s · time ≈ {catalog.human_seconds(est.seconds)} "
                 "[dim](rough)[/]"]
        if est.warning:
            lines.append(f"[yellow]warning: {est.warning}[/]")
        estimate.update("\n".join(lines))


def _field_widget(setting: Setting, value: Any) -> Checkbox | Select | Input:
    """The form widget of one model setting: a menu of its choices, an on/off box, or a typed input."""
    if setting.choices:
        return Select([(c, c) for c in setting.choices], value=_choice(value, setting.choices), allow_blank=False,
                      id=_field_id(setting.name), compact=True)
    if setting.kind is bool:
        return FlagBox(bool(value), id=_field_id(setting.name))
    kind = {int: "integer", float: "number"}.get(setting.kind, "text")
    return Input("" if value is None else str(value), id=_field_id(setting.name), type=kind, compact=True)


def _choice(value: Any, options: tuple[str, ...]) -> str:
    return value if value in options else options[0]
