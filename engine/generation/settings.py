"""How to turn a model's next-token logits into a choice: the settings of every logit processor.

Torch-free so the TUI can import it at start-up; ``engine.generation.processors`` re-exports it and implements the
processors. ``SamplingSettings.to_dict()`` is what ``engine.worker.protocol.Generate.settings`` carries.

The processors run in ``order`` (default ``DEFAULT_ORDER``): first the penalties that look at the text
so far, then logit bias and bans, then temperature, then the truncation filters. A processor whose
setting is neutral (temperature 1, top_k 0, top_p 1, ...) is skipped. Names missing from ``order`` run
after the listed ones, in the default order, so ``order`` can name only the ones to move.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from engine.errors import ConfigError
from engine.settings import check_fields, setting

MAX_SEED = 2**32 - 1  # as TrainConfig's seed
MAX_TOKENS = 1_000_000
MAX_VOCAB = 10_000_000

DEFAULT_ORDER: tuple[str, ...] = (
    "repetition_penalty",  # CTRL / Hugging Face: divide positive logits, multiply negative ones
    "presence_frequency",  # OpenAI: logit -= count * frequency + (count > 0) * presence
    "no_repeat_ngram",  # ban tokens that would complete an n-gram already in the text
    "logit_bias",  # add a constant to chosen tokens
    "banned",  # never choose these tokens
    "temperature",  # divide by T; T = 0 keeps only the arg-max (greedy)
    "top_k",
    "top_p",
    "min_p",
    "typical_p",
    "epsilon",
    "eta",
)


@dataclass
class SamplingSettings:
    """Every knob of next-token choice. Neutral values switch a processor off."""

    temperature: float = setting(1.0, lo=0.0, help="0 = greedy (arg-max, first index on ties).")
    top_k: int = setting(0, lo=0, hi=MAX_VOCAB, help="Keep the k most likely tokens (0 = off; ties kept, as Hugging Face).")
    top_p: float = setting(1.0, lo=0.0, hi=1.0, lo_open=True, help="Nucleus mass (1 = off).")
    min_p: float = setting(0.0, lo=0.0, hi=1.0, help="Keep p >= min_p * max p (0 = off).")
    typical_p: float = setting(1.0, lo=0.0, hi=1.0, lo_open=True, help="Locally typical mass (1 = off).")
    epsilon: float = setting(0.0, lo=0.0, hi=1.0, hi_open=True, help="Keep p >= epsilon (0 = off; try 3e-4).")
    eta: float = setting(0.0, lo=0.0, hi=1.0, hi_open=True, help="Keep p >= min(eta, sqrt(eta) exp(-H)) (0 = off; try 4e-3).")
    repetition_penalty: float = setting(1.0, lo=0.0, lo_open=True, help="CTRL penalty (> 1 discourages repeats).")
    repetition_window: int = setting(64, lo=0, hi=MAX_TOKENS, help="Tokens the penalties look back over (0 = all).")
    presence_penalty: float = setting(0.0, lo=-2.0, hi=2.0, help="OpenAI presence penalty, -2 to 2.")
    frequency_penalty: float = setting(0.0, lo=-2.0, hi=2.0, help="OpenAI frequency penalty, -2 to 2.")
    no_repeat_ngram: int = setting(0, lo=0, hi=1000, help="Never repeat an n-gram of this size (0 = off).")
    logit_bias: dict[int, float] = field(default_factory=dict)
    banned: list[int] = field(default_factory=list)
    order: list[str] = field(default_factory=lambda: list(DEFAULT_ORDER))
    seed: int | None = setting(None, lo=0, hi=MAX_SEED, none_means="a fresh random seed each generation",
                               help="Seed for reproducible sampling.")
    max_tokens: int = setting(200, lo=1, hi=MAX_TOKENS, flag="--max-tokens", help="New tokens at most.")
    stop: list[str] = field(default_factory=list)
    top_alternatives: int = setting(5, lo=0, hi=1000, flag="--alternatives", help="Alternatives reported with each token.")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

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
        if "logit_bias" in data:
            data["logit_bias"] = {int(k): float(v) for k, v in dict(data["logit_bias"] or {}).items()}
        for name in ("banned", "order", "stop"):
            if name in data:
                data[name] = list(data[name] or [])
        return cls(**data)

    def resolved_order(self) -> list[str]:
        """``order`` followed by the processors it does not name, in the default order."""
        listed = list(self.order)
        return listed + [name for name in DEFAULT_ORDER if name not in listed]

    def validate(self, vocab_size: int | None = None) -> SamplingSettings:
        """Refuse settings that cannot work with a one-line ConfigError."""

        check_fields(self)  # every number against its bounds (engine.settings)
        unknown = [name for name in self.order if name not in DEFAULT_ORDER]
        if unknown or len(set(self.order)) != len(self.order):
            raise ConfigError(
                f"sampling order must name each of {', '.join(DEFAULT_ORDER)} at most once; got {', '.join(self.order)}"
            )
        if vocab_size is not None:
            bad = [t for t in [*self.logit_bias, *self.banned] if not 0 <= int(t) < vocab_size]
            if bad:
                raise ConfigError(f"token id(s) {bad[:5]} are outside the vocabulary (0..{vocab_size - 1}); fix the bias/ban list")
            if len(set(self.banned)) >= vocab_size:
                raise ConfigError("every token is banned; ban fewer tokens")
        if any(not isinstance(s, str) or not s for s in self.stop):
            raise ConfigError("stop strings must be non-empty text")
        return self
