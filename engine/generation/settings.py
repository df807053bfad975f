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
import math
from dataclasses import dataclass, field
from typing import Any

from engine.errors import ConfigError

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

    temperature: float = 1.0  # 0 = greedy (arg-max, first index on ties)
    top_k: int = 0  # 0 = off; ties at the k-th value are kept (as Hugging Face)
    top_p: float = 1.0  # nucleus mass; 1 = off
    min_p: float = 0.0  # keep p >= min_p * max p; 0 = off
    typical_p: float = 1.0  # locally typical mass; 1 = off
    epsilon: float = 0.0  # keep p >= epsilon; 0 = off
    eta: float = 0.0  # keep p >= min(eta, sqrt(eta) * exp(-entropy)); 0 = off
    repetition_penalty: float = 1.0  # > 1 discourages tokens seen in the last repetition_window tokens
    repetition_window: int = 64  # tokens looked at by the three penalties; 0 = the whole text
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    no_repeat_ngram: int = 0  # 0 = off
    logit_bias: dict[int, float] = field(default_factory=dict)
    banned: list[int] = field(default_factory=list)
    order: list[str] = field(default_factory=lambda: list(DEFAULT_ORDER))
    seed: int | None = None  # None: a fresh random seed each generation
    max_tokens: int = 200
    stop: list[str] = field(default_factory=list)
    top_alternatives: int = 5  # alternatives reported with each token

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

        def number(name: str, lo: float, hi: float, lo_open: bool = False) -> None:
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool) or math.isnan(value):
                raise ConfigError(f"{name.replace('_', '-')} must be a number, got {value!r}")
            if value < lo or value > hi or (lo_open and value == lo):
                bound = f"({lo}, {hi}]" if lo_open else f"[{lo}, {hi}]"
                raise ConfigError(f"{name.replace('_', '-')} must be in {bound}, got {value}")

        number("temperature", 0.0, math.inf)
        number("top_p", 0.0, 1.0, lo_open=True)
        number("min_p", 0.0, 1.0)
        number("typical_p", 0.0, 1.0, lo_open=True)
        number("epsilon", 0.0, 1.0)
        number("eta", 0.0, 1.0)
        number("repetition_penalty", 0.0, math.inf, lo_open=True)
        number("presence_penalty", -math.inf, math.inf)
        number("frequency_penalty", -math.inf, math.inf)
        for name in ("top_k", "no_repeat_ngram", "repetition_window", "top_alternatives", "max_tokens"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"{name.replace('_', '-')} must be a whole number >= 0, got {value!r}")
        if self.epsilon >= 1.0 or self.eta >= 1.0:
            raise ConfigError("epsilon and eta cut-offs must be below 1 (try 3e-4 to 4e-3)")
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
