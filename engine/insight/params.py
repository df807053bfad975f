"""The typed settings of every analysis: what ``seqplay gradients|attention|...`` takes as flags, what
the worker's ``Analyze`` command carries and what the app's Insight pane shows as a form.

Torch-free (the app and the protocol import it). Each analysis is one frozen dataclass; every field's
``metadata`` holds ``label`` and ``help`` (the form derives its controls from them) and, for text
choices, ``choices``. ``validate()`` refuses values that cannot work with one line, the same for the
CLI, a config file and the app. ``None`` means "let the engine choose" (e.g. a pattern found in the text).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar

from engine.errors import ConfigError


def _f(default: Any, label: str, help: str, **extra: Any) -> Any:
    return field(default=default, metadata={"label": label, "help": help, **extra})


@dataclass(frozen=True)
class AnalysisParams:
    """Base class: ``analysis`` names the analysis; ``needs_run`` says whether it reads a model."""

    analysis: ClassVar[str] = ""
    needs_run: ClassVar[bool] = True
    title: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> AnalysisParams:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            kind = field_type(self, f.name)
            if value is None:
                if not optional(self, f.name):
                    raise ConfigError(f"{f.metadata.get('label', f.name)} needs a value")
                continue
            if kind is bool and not isinstance(value, bool):
                raise ConfigError(f"{f.metadata.get('label', f.name)} must be true or false, got {value!r}")
            if kind in (int, float) and (isinstance(value, bool) or not isinstance(value, int | float)
                                         or (kind is int and not isinstance(value, int)) or not math.isfinite(value)):
                raise ConfigError(f"{f.metadata.get('label', f.name)} must be a {'whole ' if kind is int else ''}number, got {value!r}")
            lo = f.metadata.get("min")
            if lo is not None and value < lo:
                raise ConfigError(f"{f.metadata.get('label', f.name)} must be at least {lo}, got {value}")
            choices = f.metadata.get("choices")
            if choices and value not in choices:
                raise ConfigError(f"{f.metadata.get('label', f.name)} must be one of {', '.join(choices)}, got {value!r}")
        return self


def field_type(params: type[AnalysisParams] | AnalysisParams, name: str) -> type:
    """The plain type of a field (``int | None`` -> int)."""
    cls = params if isinstance(params, type) else type(params)
    hint = typing.get_type_hints(cls)[name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return args[0]
    return hint


def optional(params: type[AnalysisParams] | AnalysisParams, name: str) -> bool:
    cls = params if isinstance(params, type) else type(params)
    return type(None) in typing.get_args(typing.get_type_hints(cls)[name])


@dataclass(frozen=True)
class GradientsParams(AnalysisParams):
    """||dL_T/dh_t|| against the distance T - t, for fresh models or a trained run and its init."""

    analysis: ClassVar[str] = "gradients"
    needs_run: ClassVar[bool] = False
    title: ClassVar[str] = "gradients through time"
    fresh: bool = _f(True, "fresh models", "compare fresh architectures at init (off: the picked run, trained vs init)")
    archs: str = _f("rnn,rnn-relu,ugrnn,gru,lstm,transformer", "archs", "fresh architectures, comma-separated")
    distance: int = _f(100, "distance", "longest distance T - t measured", min=2)
    windows: int = _f(8, "windows", "text windows averaged per model", min=1)
    seeds: int = _f(3, "seeds", "initialisations averaged per fresh model", min=1)
    source: str = _f("grammar", "corpus", "fresh models' text")
    width: int = _f(64, "width", "fresh models' width", min=1)
    layers: int = _f(1, "layers", "fresh models' layers", min=1)
    clip: float | None = _f(None, "clip", "also show the curve after clipping the gradient norm to this")
    identity_init: bool = _f(False, "identity init", "initialise RNNs with W_h = I (Le et al. 2015)")


@dataclass(frozen=True)
class AttentionParams(AnalysisParams):
    """Self-attention maps of a Transformer (seq2seq: cross-attention alignment)."""

    analysis: ClassVar[str] = "attention"
    title: ClassVar[str] = "attention maps"
    prompt: str | None = _f(None, "prompt", "text to attend over (empty: drawn from the run's validation text)")
    target: str | None = _f(None, "target", "seq2seq: the target aligned with the prompt")
    layer: int | None = _f(None, "layer", "only this layer (empty: all; negative counts from the end)")
    head: int | None = _f(None, "head", "only this head (empty: all)")


@dataclass(frozen=True)
class GatesParams(AnalysisParams):
    """Gate activations and hidden units of a recurrent run over a text; units tracking a pattern."""

    analysis: ClassVar[str] = "gates"
    title: ClassVar[str] = "gates and units"
    text: str | None = _f(None, "text", "text to run (empty: the run's validation text)")
    layer: int = _f(-1, "layer", "which layer (negative counts from the end)")
    units: str = _f("", "units", "units to show, e.g. h12,c3")
    pattern: str | None = _f(None, "pattern", "regex or preset (empty: one found in the text)")
    top: int = _f(5, "top", "units the pattern search returns", min=1)


@dataclass(frozen=True)
class SurprisalParams(AnalysisParams):
    """Per-token loss over a text; with ``other``, the per-character difference run - other."""

    analysis: ClassVar[str] = "surprisal"
    title: ClassVar[str] = "surprisal"
    other: str | None = _f(None, "compare with", "a second run: show the difference (empty: none)", run=True)
    text: str | None = _f(None, "text", "text to score (empty: the run's validation text)")
    chars: int = _f(600, "chars", "characters of validation text when no text is given", min=2)


@dataclass(frozen=True)
class TableParams(AnalysisParams):
    """The perplexity table of the runs on a corpus; optionally train a set of archs first."""

    analysis: ClassVar[str] = "table"
    needs_run: ClassVar[bool] = False
    title: ClassVar[str] = "perplexity table"
    corpus: str | None = _f(None, "corpus", "runs on this corpus (empty: the picked run's, else every corpus)")
    train: str = _f("", "train archs", "train these first, e.g. rnn,lstm (ngram: the baseline)")
    time_budget: float | None = _f(None, "time (s)", "seconds of training per architecture")
    steps: int | None = _f(None, "steps", "steps per architecture")
    params: int | None = _f(None, "params", "match every model to about this many parameters")
    tokenizer: str = _f("char", "tokenizer", "tokenizer of the trained runs", choices=("char", "byte", "word", "bpe"))


@dataclass(frozen=True)
class MemorizationParams(AnalysisParams):
    """Longest span of generated samples copied from the training text; n-gram overlap."""

    analysis: ClassVar[str] = "memorization"
    title: ClassVar[str] = "memorisation"
    samples: int = _f(2, "samples", "samples to generate", min=1)
    tokens: int = _f(200, "tokens", "tokens per sample", min=1)
    temperature: float = _f(1.0, "temperature", "sampling temperature", min=0.0)
    n: int = _f(8, "n-gram", "n of the character n-gram overlap", min=1)
    seed: int = _f(0, "seed", "seed of the first sample")


PARAMS: dict[str, type[AnalysisParams]] = {
    cls.analysis: cls
    for cls in (GradientsParams, AttentionParams, GatesParams, SurprisalParams, TableParams, MemorizationParams)
}


def params_from_dict(analysis: str, data: dict[str, Any] | None) -> AnalysisParams:
    """The typed, validated settings of ``analysis`` from a plain dict (JSON, a form)."""
    cls = PARAMS.get(analysis)
    if cls is None:
        raise ConfigError(f"unknown analysis {analysis!r}; choose from {', '.join(PARAMS)}")
    data = dict(data or {})
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown {analysis} setting(s) {', '.join(unknown)}; remove them")
    for name, value in list(data.items()):
        if isinstance(value, int) and not isinstance(value, bool) and field_type(cls, name) is float:
            data[name] = float(value)
    return cls(**data).validate()
