"""How to turn a model's next-token logits into a choice: every sampling control, its default, its bounds.

Torch-free so the TUI can import it at start-up; ``engine.generation.processors`` implements the stages.
``SamplingSettings`` is the one place the defaults live: the CLI options (``cli_options``), the
``--set k=v`` parser (``parse_assignments``), JSON presets and the worker protocol
(``SamplingSettings.to_dict()`` is what ``engine.worker.protocol.Generate.settings`` carries) derive from
its fields and their metadata.

The chain is an ordered list of stages (``STAGES``, each with its parameters). ``order`` sets the order;
names it leaves out run after the listed ones, in ``DEFAULT_ORDER``. A stage whose parameters are
neutral (temperature 1, top_k 0, top_p 1, ...) is skipped. ``chain()`` / ``from_chain()`` give the
editable-list view (stage name + its parameters, in order) that presets save. docs/sampling.md gives
each stage's reference and formula.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import ConfigError
from engine.settings import Setting, check_fields, setting, settings_of


@dataclass(frozen=True)
class Stage:
    """One stage of the chain: its parameters (fields of SamplingSettings) and what it looks at."""

    name: str
    params: tuple[str, ...]
    kind: str  # "history" (penalties and bans: also run in beam search) | "warp" (sampling only)
    reference: str


STAGES: dict[str, Stage] = {s.name: s for s in (
    Stage("repetition_penalty", ("repetition_penalty",), "history", "Hugging Face RepetitionPenaltyLogitsProcessor (CTRL)"),
    Stage("presence_frequency", ("presence_penalty", "frequency_penalty"), "history", "OpenAI presence/frequency penalties"),
    Stage("dry", ("dry_multiplier", "dry_base", "dry_allowed_length", "dry_sequence_breakers", "dry_range"), "history",
          "DRY, text-generation-webui / llama.cpp"),
    Stage("no_repeat_ngram", ("no_repeat_ngram",), "history", "Hugging Face NoRepeatNGramLogitsProcessor"),
    Stage("logit_bias", ("logit_bias",), "history", "OpenAI logit_bias"),
    Stage("banned", ("banned",), "history", "Hugging Face bad_words_ids / suppress_tokens"),
    Stage("top_n_sigma", ("top_n_sigma",), "warp", "top-nσ (Tang et al. 2024), llama.cpp top-n-sigma"),
    Stage("temperature", ("temperature", "dynatemp_range", "dynatemp_exponent"), "warp",
          "Hugging Face TemperatureLogitsWarper; dynamic temperature: llama.cpp temp_ext"),
    Stage("top_k", ("top_k",), "warp", "Hugging Face TopKLogitsWarper"),
    Stage("top_p", ("top_p",), "warp", "Hugging Face TopPLogitsWarper"),
    Stage("min_p", ("min_p",), "warp", "Hugging Face MinPLogitsWarper"),
    Stage("typical_p", ("typical_p",), "warp", "Hugging Face TypicalLogitsWarper"),
    Stage("epsilon", ("epsilon",), "warp", "Hugging Face EpsilonLogitsWarper"),
    Stage("eta", ("eta",), "warp", "Hugging Face EtaLogitsWarper"),
    Stage("xtc", ("xtc_threshold", "xtc_probability"), "warp", "XTC, text-generation-webui / llama.cpp"),
    Stage("mirostat", ("mirostat_tau", "mirostat_eta"), "warp", "Mirostat 2 (Basu et al. 2021), llama.cpp mirostat_v2"),
)}

DEFAULT_ORDER: tuple[str, ...] = tuple(STAGES)
DRY_BREAKERS: tuple[str, ...] = ("\n", ":", '"', "*")  # text-generation-webui's default sequence breakers


MAX_SEED = 2**32 - 1  # as TrainConfig's seed
MAX_TOKENS = 1_000_000
MAX_VOCAB = 10_000_000


# Beam search (``engine.generation.beams``): its width and the exponent of its length penalty (as Hugging
# Face's generate: score = logprob / len**length_penalty). Not sampling stages, so not SamplingSettings fields.
BEAMS = Setting(name="beams", kind=int, default=1, lo=1, hi=1024, help="Beam width (> 1: beam search).")
LENGTH_PENALTY = Setting(name="length_penalty", kind=float, default=1.0,
                         help="Beam search: a finished hypothesis scores logprob / len**this (Hugging Face).")


def _f(default: Any, help: str, *, lo: float | None = None, hi: float | None = None, lo_open: bool = False,
       hi_open: bool = False, cli: bool = True, **meta: Any) -> Any:
    """A field with its ``engine.settings.Setting`` (``hi=inf``: unbounded above, infinity allowed;
    ``cli`` False: not a plain ``seqplay generate`` option)."""
    allow_inf = hi == math.inf
    kw = dict(help=help, lo=lo, hi=None if allow_inf else hi, lo_open=lo_open, hi_open=hi_open,
              allow_inf=allow_inf, cli=cli, **meta)
    if isinstance(default, list | dict):
        return setting(default_factory=lambda: type(default)(default), **kw)
    return setting(default, **kw)


@dataclass
class SamplingSettings:
    """Every knob of next-token choice. Neutral values switch a stage off."""

    temperature: float = _f(1.0, "Divide logits by T; 0 = greedy (arg-max, first index on ties).", lo=0.0)
    dynatemp_range: float = _f(0.0, "Dynamic temperature: T ranges over T±range by normalised entropy (0 = off).", lo=0.0)
    dynatemp_exponent: float = _f(1.0, "Dynamic temperature exponent on the normalised entropy.", lo=0.0, lo_open=True)
    top_k: int = _f(0, "Keep the k most likely tokens, ties at the k-th kept (0 = off).", lo=0, hi=MAX_VOCAB)
    top_p: float = _f(1.0, "Nucleus: keep the most likely tokens up to this mass (1 = off).", lo=0.0, hi=1.0, lo_open=True)
    min_p: float = _f(0.0, "Keep p >= min_p * max p (0 = off).", lo=0.0, hi=1.0)
    typical_p: float = _f(1.0, "Locally typical mass (1 = off).", lo=0.0, hi=1.0, lo_open=True)
    epsilon: float = _f(0.0, "Epsilon cut-off: drop p < epsilon (0 = off; try 3e-4).", lo=0.0, hi=1.0, hi_open=True)
    eta: float = _f(0.0, "Eta cut-off: drop p < min(eta, sqrt(eta) e^-H) (0 = off; try 2e-3).", lo=0.0, hi=1.0, hi_open=True)
    top_n_sigma: float = _f(0.0, "Top-nσ: keep logits >= max - n·σ (0 = off; try 1).", lo=0.0)
    repetition_penalty: float = _f(1.0, "CTRL penalty on every token of the prompt and text (> 1 discourages repeats).",
                                   lo=0.0, lo_open=True)
    presence_penalty: float = _f(0.0, "OpenAI: subtract this from every token generated so far (-2 to 2).", lo=-2.0, hi=2.0)
    frequency_penalty: float = _f(0.0, "OpenAI: subtract this times the token's count in the generated text (-2 to 2).",
                                  lo=-2.0, hi=2.0)
    repetition_window: int = _f(0, "Option (not in the references): the three penalties look only at the last N tokens "
                                   "(0 = off: the whole input / everything generated).", lo=0, hi=MAX_TOKENS)
    dry_multiplier: float = _f(0.0, "DRY: penalty multiplier for repeating a sequence (0 = off; try 0.8).", lo=0.0)
    dry_base: float = _f(1.75, "DRY: penalty base (grows base**(length - allowed)).", lo=1.0)
    dry_allowed_length: int = _f(2, "DRY: repeated sequences up to this length are not penalised.", lo=0)
    dry_sequence_breakers: list[str] = _f(list(DRY_BREAKERS), "DRY: texts that break a repeated sequence.", cli=False)
    dry_range: int = _f(0, "DRY: look at the last N tokens (0 = all).", lo=0)
    xtc_threshold: float = _f(0.1, "XTC: tokens with p >= this are 'top choices'.", lo=0.0, hi=1.0)
    xtc_probability: float = _f(0.0, "XTC: chance per token of excluding the top choices (0 = off; try 0.5).", lo=0.0, hi=1.0)
    mirostat_tau: float = _f(0.0, "Mirostat 2: target surprise in bits (0 = off; try 5).", lo=0.0)
    mirostat_eta: float = _f(0.1, "Mirostat 2: learning rate of mu.", lo=0.0)
    no_repeat_ngram: int = _f(0, "Never repeat an n-gram of this size (0 = off).", lo=0, hi=1000)
    logit_bias: dict[int, float] = _f({}, "Token id -> value added to its logit.", cli=False)
    banned: list[int] = _f([], "Token ids never to produce.", cli=False)
    order: list[str] = _f(list(DEFAULT_ORDER), "Stage order (names left out follow in the default order).", cli=False)
    seed: int | None = _f(None, "Seed of the random stream.", lo=0, hi=MAX_SEED, cli=False,
                            none_means="a fresh random seed each generation")
    max_tokens: int = _f(200, "New tokens at most.", lo=1, hi=MAX_TOKENS, cli=False, flag="--max-tokens")
    stop: list[str] = _f([], "Stop before any of these texts.", cli=False)
    top_alternatives: int = _f(5, "Alternatives reported with each token.", lo=0, hi=1000, cli=False, flag="--alternatives")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    # -- the chain as an ordered list ----------------------------------------------------------------
    def resolved_order(self) -> list[str]:
        """``order`` followed by the stages it does not name, in the default order."""
        listed = list(self.order)
        return listed + [name for name in DEFAULT_ORDER if name not in listed]

    def stage_active(self, name: str) -> bool:
        """Whether stage ``name`` changes anything with these parameters."""
        s = self
        return {
            "repetition_penalty": s.repetition_penalty != 1.0,
            "presence_frequency": s.presence_penalty != 0.0 or s.frequency_penalty != 0.0,
            "dry": s.dry_multiplier > 0.0,
            "no_repeat_ngram": s.no_repeat_ngram > 0,
            "logit_bias": bool(s.logit_bias),
            "banned": bool(s.banned),
            "top_n_sigma": s.top_n_sigma > 0.0,
            "temperature": s.temperature != 1.0 or s.dynatemp_range > 0.0,
            "top_k": s.top_k > 0,
            "top_p": s.top_p < 1.0,
            "min_p": s.min_p > 0.0,
            "typical_p": s.typical_p < 1.0,
            "epsilon": s.epsilon > 0.0,
            "eta": s.eta > 0.0,
            "xtc": s.xtc_probability > 0.0 and s.xtc_threshold <= 0.5,
            "mirostat": s.mirostat_tau > 0.0,
        }[name]

    def active_stages(self) -> list[str]:
        return [name for name in self.resolved_order() if self.stage_active(name)]

    def chain(self) -> list[dict[str, Any]]:
        """The active stages in order, each ``{"stage": name, param: value, ...}`` (a preset's list)."""
        data = self.to_dict()
        return [{"stage": name, **{p: data[p] for p in STAGES[name].params}} for name in self.active_stages()]

    @classmethod
    def from_chain(cls, chain: list[dict[str, Any]], **rest: Any) -> SamplingSettings:
        """Settings from an ordered stage list: the listed stages in that order with their parameters
        (unset parameters keep their defaults); stages not listed are off."""
        data: dict[str, Any] = {k: v for k, v in rest.items() if k != "chain"}
        order = []
        if not isinstance(chain, list):
            raise ConfigError("a sampling chain is a list of {\"stage\": name, parameter: value} objects; fix it")
        for item in chain:
            if not isinstance(item, dict):
                raise ConfigError(f"chain entry {item!r} is not an object like {{\"stage\": \"top_k\", \"top_k\": 40}}; fix it")
            item = dict(item)
            name = item.pop("stage", None)
            if name not in STAGES:
                raise ConfigError(f"unknown sampling stage {name!r}; use one of {', '.join(STAGES)}")
            if name in order:
                raise ConfigError(f"stage {name} is listed twice; list each stage once")
            extra = sorted(set(item) - set(STAGES[name].params))
            if extra:
                raise ConfigError(f"stage {name} has no parameter {', '.join(extra)}; it takes {', '.join(STAGES[name].params)}")
            order.append(name)
            data.update(item)
        settings = cls.from_dict(data).validate()
        settings.order = order
        for name in DEFAULT_ORDER:  # stages not listed are switched off
            if name not in order and settings.stage_active(name):
                for p in STAGES[name].params:
                    setattr(settings, p, _default(p))
        return settings

    # -- presets -------------------------------------------------------------------------------------
    def to_preset(self) -> dict[str, Any]:
        """A JSON-able preset: the ordered chain plus the non-stage settings."""
        staged = {p for s in STAGES.values() for p in s.params}
        data = self.to_dict()
        return {"chain": self.chain(), **{k: v for k, v in data.items() if k not in staged and k != "order"}}

    @classmethod
    def from_preset(cls, preset: dict[str, Any]) -> SamplingSettings:
        if not isinstance(preset, dict):
            raise ConfigError("a sampling preset is a JSON object with a \"chain\" list; fix the file")
        if "chain" not in preset:
            return cls.from_dict(preset)
        rest = {k: v for k, v in preset.items() if k != "chain"}
        return cls.from_chain(preset["chain"] or [], **rest)

    def save_preset(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_preset(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")

    @classmethod
    def load_preset(cls, path: str | Path) -> SamplingSettings:
        try:
            preset = json.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as err:
            raise ConfigError(f"cannot read preset {path}: {err.strerror}; check the path") from None
        except json.JSONDecodeError as err:
            raise ConfigError(f"preset {path} is not valid JSON (line {err.lineno}); fix the file") from None
        return cls.from_preset(preset)

    # -- conversions ---------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["logit_bias"] = {str(k): v for k, v in self.logit_bias.items()}  # JSON keys are strings
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> SamplingSettings:
        data = dict(data or {})
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"unknown sampling setting(s) {', '.join(unknown)}; remove them")
        try:
            if "logit_bias" in data:
                data["logit_bias"] = {int(k): float(v) for k, v in dict(data["logit_bias"] or {}).items()}
            if "banned" in data:
                data["banned"] = [int(t) for t in _as_list(data["banned"], "banned")]
        except (TypeError, ValueError):
            raise ConfigError("logit_bias maps token ids to numbers and banned lists token ids; fix their values") from None
        for name in ("order", "stop", "dry_sequence_breakers"):
            if name in data:
                data[name] = _as_list(data[name], name)
        return cls(**data)

    def replace(self, **changes: Any) -> SamplingSettings:
        return SamplingSettings.from_dict({**self.to_dict(), **changes})

    def validate(self, vocab_size: int | None = None) -> SamplingSettings:
        """Refuse settings that cannot work with a one-line ConfigError."""
        check_fields(self)  # every number against its bounds (engine.settings)
        unknown = [name for name in self.order if name not in STAGES]
        if unknown or len(set(self.order)) != len(self.order):
            raise ConfigError(
                f"sampling order must name each of {', '.join(DEFAULT_ORDER)} at most once; got {', '.join(self.order)}"
            )
        if self.seed is not None and (not isinstance(self.seed, int) or isinstance(self.seed, bool)):
            raise ConfigError(f"seed must be a whole number, got {self.seed!r}")
        if any(not -100.0 <= float(b) <= 100.0 for b in self.logit_bias.values()):
            raise ConfigError("logit bias values must be in [-100, 100] (as OpenAI's logit_bias); use --ban to forbid a token")
        if vocab_size is not None:
            bad = [t for t in [*self.logit_bias, *self.banned] if not 0 <= int(t) < vocab_size]
            if bad:
                raise ConfigError(f"token id(s) {bad[:5]} are outside the vocabulary (0..{vocab_size - 1}); fix the bias/ban list")
            if len(set(self.banned)) >= vocab_size:
                raise ConfigError("every token is banned; ban fewer tokens")
        if any(not isinstance(s, str) or not s for s in self.stop):
            raise ConfigError("stop strings must be non-empty text")
        if any(not isinstance(s, str) or not s for s in self.dry_sequence_breakers):
            raise ConfigError("DRY sequence breakers must be non-empty text")
        return self


def _as_list(value: Any, name: str) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise ConfigError(f"{name} must be a list, got {value!r}")
    return list(value)


def _default(name: str) -> Any:
    f = SamplingSettings.__dataclass_fields__[name]
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default  # type: ignore[misc]


def setting_of(name: str) -> Setting:
    """The Setting of one SamplingSettings field."""
    return next(s for s in settings_of(SamplingSettings) if s.name == name)


def cli_fields() -> list[Setting]:
    """The settings that are plain ``--name value`` options of the generation commands, in order."""
    return [s for s in settings_of(SamplingSettings) if s.cli]


def describe() -> list[dict[str, Any]]:
    """Every setting as data for a form or a help screen: its Setting (``Setting.to_dict``) and its stage."""
    stage_of = {p: s.name for s in STAGES.values() for p in s.params}
    return [{**s.to_dict(), "stage": stage_of.get(s.name)} for s in settings_of(SamplingSettings)]


def parse_assignments(pairs: list[str] | tuple[str, ...], base: SamplingSettings | None = None) -> SamplingSettings:
    """``["top_k=5", "temperature=0.7", "banned=[3,4]"]`` applied to ``base`` (values are JSON, or text).
    Names may use - or _."""
    data = (base or SamplingSettings()).to_dict()
    for pair in pairs:
        name, eq, raw = pair.partition("=")
        name = name.strip().replace("-", "_")
        if not eq or not name:
            raise ConfigError(f"--set takes name=value, got {pair!r}; e.g. --set-a temperature=0.7")
        if name not in SamplingSettings.__dataclass_fields__:
            raise ConfigError(f"unknown sampling setting {name!r}; see `seqplay generate --help` for the names")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        data[name] = value
    return SamplingSettings.from_dict(data)
