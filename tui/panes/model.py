"""Model pane: the architecture list from the registry, the hyper-parameters that architecture has,
the optimisation settings, the exact parameter count, an estimate of memory, speed and time, and the
pre-flight rows of what the run will do.

A field the user has not changed is the fast defaults' to fill, as for ``seqplay train FILE``
(``engine.training.presets.fast_defaults`` on the Data pane's split sizes): the pane writes the value
they pick into the field and lists the picked names under "Before you train"; typing another value
makes it the user's. The count, the estimate and the pre-flight rows are the engine's
(``engine.planning``, ``presets.preflight``) on the config that trains: the numbers shown are the run's.
"""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from textual import on
from textual.app import ComposeResult
from textual.containers import Grid, Horizontal, Vertical, VerticalScroll
from textual.widgets import Checkbox, Input, Label, ListItem, ListView, Select, Static

from engine.errors import ConfigError, SeqplayError
from engine.models.registry import ARCHS, get_arch, model_settings
from engine.planning import estimate_run, parameter_count
from engine.settings import Setting
from engine.training.config import OPTIMIZERS, SCHEDULES, TrainConfig
from engine.training.presets import Choice, fast_defaults, preflight
from tui import catalog

DEVICES = ("auto", "cpu", "cuda", "mps")
DEFAULT_ARCH = "transformer" if "transformer" in ARCHS else next(iter(ARCHS))
TRAINING_DEFAULTS = {"optimizer": "adamw", "lr": "", "schedule": "cosine", "clip": "1.0", "batch": "32",
                     "steps": "2000", "time-budget": "", "device": "auto", "auto-rollback": False}
# TrainConfig name -> the training field that shows it (the ones the fast defaults may fill)
FORM_FIELDS = {"optimizer": "optimizer", "lr": "lr", "schedule": "schedule", "clip": "clip", "batch_size": "batch",
               "steps": "steps", "time_budget": "time-budget"}


def _shown(value: Any) -> str:
    """A value as its field shows it (None: empty, the placeholder says what that means)."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _same(a: str, b: str) -> bool:
    """Two field texts that mean the same value ("1.0" and "1")."""
    a, b = a.strip(), b.strip()
    try:
        return float(a) == float(b)
    except ValueError:
        return a == b


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
        self._auto: dict[str, str] = {}  # field id -> the text this pane last wrote there (not the user)
        self.picked: list[Choice] = []  # what the fast defaults chose for the config on screen

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
        given_fields = {FORM_FIELDS[n] for n in self._given() if n in FORM_FIELDS}
        for key in TRAINING_DEFAULTS:
            widget = self.query_one(f"#{key}")
            if key in FORM_FIELDS.values() and key not in given_fields:
                training[key] = TRAINING_DEFAULTS[key]  # the fast defaults' value is not the user's
            else:
                training[key] = bool(widget.value) if isinstance(widget, Checkbox) else str(widget.value)
        return {"arch": self.arch, "hparams": self._values, "training": training}

    # -- architecture ------------------------------------------------------------------------------
    @on(ListView.Highlighted, "#archs")
    async def _arch_highlighted(self, event: ListView.Highlighted) -> None:
        if event.item is not None and event.item.name and event.item.name != self.arch:
            self._keep_values()
            await self._show_arch(event.item.name)

    def _keep_values(self) -> None:
        """Remember the hyper-parameters the user gave for this architecture (not the defaults')."""
        values = {}
        given = self._given()
        for setting in model_settings(self.arch):
            found = self.query(f"#{_field_id(setting.name)}")
            if found and f"model.{setting.name}" in given:
                widget = found.first()
                values[setting.name] = bool(widget.value) if isinstance(widget, Checkbox) else str(widget.value)
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
        self._auto = {k: v for k, v in self._auto.items() if not k.startswith("hp-")}  # a new form
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
    def model_overrides(self, given: set[str] | None = None) -> dict[str, Any]:
        """The hyper-parameter form as a dict of typed values (ConfigError on a bad entry); with
        ``given``, only the settings named there (``model.<name>``)."""
        out: dict[str, Any] = {}
        for setting in model_settings(self.arch):
            name, default = setting.name, setting.default
            found = self.query(f"#{_field_id(name)}")
            if not found or (given is not None and f"model.{name}" not in given):
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

    def train_config(self, source: str | None, tokenizer: str, val_fraction: float, device: str = "auto") -> TrainConfig:
        """The validated TrainConfig that trains: the user's fields, the fast defaults for the rest
        (raises ConfigError with a one-line message)."""
        if not source:
            raise ConfigError("no corpus is loaded; pick one on the Data pane (1)")
        cfg, _ = self.resolved(source, tokenizer, val_fraction, device)
        return cfg

    def resolved(self, source: str, tokenizer: str, val_fraction: float, device: str,
                 given: set[str] | None = None) -> tuple[TrainConfig, list[Choice]]:
        """The config of the form with ``fast_defaults`` applied to every field the user has not
        changed (``given``, default ``_given()``; once the Data pane knows the split sizes), and what
        they picked."""
        given = self._given() if given is None else given
        cfg = self._config(source, tokenizer, val_fraction, device, given).validate()
        counts = getattr(self.app.pane("data"), "counts", None)
        picked: list[Choice] = []
        if counts is not None:
            cfg, picked = fast_defaults(cfg, given, counts.train_tokens, counts.val_tokens)
        get_arch(self.arch).make_config(self.vocab_size or 0, **cfg.model).validate()
        return cfg, picked

    def _text(self, widget_id: str) -> str:
        widget = self.query_one(f"#{widget_id}")
        return str(bool(widget.value)) if isinstance(widget, Checkbox) else str(widget.value).strip()

    def _given(self) -> set[str]:
        """TrainConfig names (``model.<name>`` for hyper-parameters) of the fields the user changed:
        those whose text is neither their default nor what this pane last wrote there."""
        out = set()
        for name, wid in FORM_FIELDS.items():
            if not _same(self._text(wid), self._auto.get(wid, str(TRAINING_DEFAULTS[wid]))):
                out.add(name)
        for setting in model_settings(self.arch):
            wid = _field_id(setting.name)
            if self.query(f"#{wid}") and not _same(self._text(wid), self._auto.get(wid, _shown(setting.default))):
                out.add(f"model.{setting.name}")
        return out

    def _config(self, source: str, tokenizer: str, val_fraction: float, device: str, given: set[str]) -> TrainConfig:
        """The form's config: the user's fields as typed, the others at their defaults."""
        def text(name: str) -> str:
            wid = FORM_FIELDS[name]
            return self._text(wid) if name in given else str(TRAINING_DEFAULTS[wid])

        def number(name: str, kind: type, label: str) -> Any:
            value = text(name)
            if not value:
                return None
            try:
                return kind(value)
            except ValueError:
                raise ConfigError(f"{label} must be a number, got {value!r}; fix it on the Model pane") from None

        chosen_device = str(self.query_one("#device", Select).value)
        return TrainConfig(
            source=source, tokenizer=tokenizer, val_fraction=val_fraction, arch=self.arch,
            model=self.model_overrides(given), optimizer=text("optimizer"), lr=number("lr", float, "learning rate"),
            schedule=text("schedule"), clip=number("clip", float, "clip"),
            batch_size=number("batch_size", int, "batch") or 32, steps=number("steps", int, "steps"),
            time_budget=number("time_budget", float, "time budget"),
            device=device if chosen_device == "auto" else chosen_device,
            auto_rollback=bool(self.query_one("#auto-rollback", Checkbox).value),
        )

    def _show_resolved(self, cfg: TrainConfig, given: set[str]) -> None:
        """Write the config's value into every field the user has not changed (no Changed event)."""
        values = {"optimizer": cfg.optimizer, "lr": cfg.lr, "schedule": cfg.schedule, "clip": cfg.clip,
                  "batch_size": cfg.batch_size, "steps": cfg.steps, "time_budget": cfg.time_budget}
        fields = [(FORM_FIELDS[n], v) for n, v in values.items() if n not in given]
        for setting in model_settings(self.arch):
            name = setting.name
            if f"model.{name}" in given or not self.query(f"#{_field_id(name)}"):
                continue
            value = cfg.context if name == "context" and cfg.context is not None else cfg.model.get(name, setting.default)
            fields.append((_field_id(name), value))
        for wid, value in fields:
            widget = self.query_one(f"#{wid}")
            text = _shown(value)
            self._auto[wid] = text
            if isinstance(widget, Input) and not _same(widget.value, text):
                with widget.prevent(Input.Changed):
                    widget.value = text
            elif isinstance(widget, Select) and str(widget.value) != text:
                with widget.prevent(Select.Changed):
                    widget.value = text
            elif isinstance(widget, Checkbox) and bool(widget.value) != bool(value):
                with widget.prevent(Checkbox.Changed):
                    widget.value = bool(value)

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
            given = self._given()
            cfg, self.picked = self.resolved(getattr(data, "spec", None) or "grammar", getattr(data, "tokenizer", "char"),
                                             getattr(data, "val_fraction", 0.1), getattr(self.app, "device", "auto"), given)
            self._show_resolved(cfg, given)
            if self.vocab_size is None:
                count.update("parameters: [dim]waiting for the tokenizer's vocabulary (Data pane) ...[/]")
                estimate.update("")
                return
            params = parameter_count(cfg, self.vocab_size)
        except SeqplayError as err:
            count.update(f"[red]{escape(str(err))}[/]")
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
            lines.append(f"[yellow]warning: {escape(est.warning)}[/]")
        counts = getattr(data, "counts", None)
        if counts is not None:
            rows = preflight(cfg, self.picked, counts.train_tokens, counts.val_tokens, self.vocab_size,
                             override="type a value to override")
            lines += [f"[dim]{label}:[/] {escape(value)}" for label, value in rows if label not in ("model", "data")]
        estimate.update("\n".join(lines))


def _field_widget(setting: Setting, value: Any) -> Checkbox | Select | Input:
    """The form widget of one model setting: a menu of its choices, an on/off box, or a typed input."""
    if setting.choices:
        return Select([(c, c) for c in setting.choices], value=_choice(value, setting.choices), allow_blank=False,
                      id=_field_id(setting.name), compact=True)
    if setting.kind is bool:
        return FlagBox(bool(value), id=_field_id(setting.name))
    kind = {int: "integer", float: "number"}.get(setting.kind, "text")
    return Input(_shown(value), id=_field_id(setting.name), type=kind, compact=True)


def _choice(value: Any, options: tuple[str, ...]) -> str:
    return value if value in options else options[0]
