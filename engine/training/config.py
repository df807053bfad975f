"""Training configuration: one torch-free dataclass shared by the CLI, the TUI and the worker.

``TrainConfig.to_dict()`` is what ``StartTraining`` carries and what a run folder's ``config.json``
holds. Model hyper-parameters live in ``model`` (a dict of overrides of the architecture's config
dataclass, see ``engine.models.registry``); the CLI's ``--layers/--width/--heads/--context/--dropout``
map onto fields of the same name.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from engine.errors import ConfigError

OPTIMIZERS = ("adamw", "adam", "sgd", "rmsprop", "adagrad")
SCHEDULES = ("constant", "cosine", "plateau")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
TOKENIZERS = ("char", "byte", "word", "bpe")


def _accepts(hint: Any, value: Any) -> bool:
    """Whether a JSON value fits a dataclass field's type hint (int counts as float; bool is no int)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_accepts(h, value) for h in typing.get_args(hint))
    if hint is Any:
        return True
    if hint is type(None):
        return value is None
    if origin is not None:
        return isinstance(value, origin)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def strict_from_dict(cls: type, data: dict[str, Any], what: str) -> Any:
    """Build a config dataclass from untrusted JSON: unknown names and values of the wrong type are
    refused with a one-line ConfigError, never passed on to code that would fail later."""
    if not isinstance(data, dict):
        raise ConfigError(f"a {what} block must be a JSON object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown {what}(s) {', '.join(map(str, unknown))}; remove them from the config")
    for name, value in data.items():
        if not _accepts(hints[name], value):
            raise ConfigError(f"{what} {name}={value!r} has the wrong type (expected {hints[name]}); fix the config")
    return cls(**data)


@dataclass
class TrainConfig:
    # data
    source: str = "grammar"  # a file path or a built-in corpus name (see ``seqplay corpora``)
    tokenizer: str = "char"
    vocab_size: int | None = None  # bpe/word vocabulary size (None: tokenizer default)
    val_fraction: float = 0.1
    # model
    arch: str = "transformer"
    model: dict[str, Any] = field(default_factory=dict)
    # optimisation
    optimizer: str = "adamw"
    lr: float | None = None  # None: the architecture's default learning rate
    schedule: str = "cosine"
    warmup: int = 100
    min_lr_ratio: float = 0.1
    clip: float | None = 1.0
    weight_decay: float = 0.1
    momentum: float = 0.9
    batch_size: int = 32
    context: int | None = None  # attention/MLP window or truncated-BPTT length; None: model default
    grad_accum: int = 1
    # budget (None/0: unlimited); training stops at whichever comes first
    steps: int | None = 2000
    time_budget: float | None = None  # seconds
    # evaluation, samples, checkpoints
    eval_every: int = 200
    eval_batches: int = 20
    sample_every: int = 200
    sample_tokens: int = 200
    checkpoint_every: int | None = None  # None: at every evaluation
    keep_last: int = 3
    snapshot_base: int = 50  # time machine: model snapshots at steps 0, b, 2b, 4b, ... + last + best (0: off)
    # machinery
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    precision: str = "auto"
    compile: str = "auto"  # auto | on | off
    threads: int | None = None
    seed: int = 1337
    runs_dir: str | None = None
    run_name: str | None = None
    tensorboard: bool = False
    auto_rollback: bool = False  # on NaN/inf: reload last good checkpoint, halve the lr, continue
    nproc: int = 1

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        return strict_from_dict(cls, data, "training setting")

    def validate(self) -> TrainConfig:
        """Refuse settings that cannot work, before anything is allocated."""
        if self.tokenizer not in TOKENIZERS:
            raise ConfigError(f"unknown tokenizer {self.tokenizer!r}; choose one of {', '.join(TOKENIZERS)}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"unknown schedule {self.schedule!r}; choose one of {', '.join(SCHEDULES)}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"unknown precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}")
        if not 0.0 < self.val_fraction < 0.9:
            raise ConfigError(f"validation fraction {self.val_fraction} must be between 0 and 0.9 (e.g. 0.1)")
        for name in ("batch_size", "grad_accum", "eval_every", "eval_batches", "keep_last", "nproc"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name.replace('_', '-')} must be a positive whole number, got {value!r}")
        if self.context is not None and (not isinstance(self.context, int) or self.context < 1):
            raise ConfigError(f"context must be a positive whole number, got {self.context!r}")
        if self.steps is not None and self.steps < 0:
            raise ConfigError(f"steps must be 0 or more, got {self.steps}")
        if self.time_budget is not None and self.time_budget < 0:
            raise ConfigError(f"time budget must be 0 or more seconds, got {self.time_budget}")
        if self.lr is not None and not (self.lr > 0):
            raise ConfigError(f"learning rate must be positive, got {self.lr}")
        if self.clip is not None and not (self.clip > 0):
            raise ConfigError(f"clip must be positive (or omitted to disable clipping), got {self.clip}")
        if not isinstance(self.snapshot_base, int) or self.snapshot_base < 0:
            raise ConfigError(f"snapshot base must be a whole number >= 0 (0: no snapshots), got {self.snapshot_base!r}")
        if self.vocab_size is not None and self.vocab_size < 2:
            raise ConfigError(f"vocabulary size must be at least 2, got {self.vocab_size}")
        return self
