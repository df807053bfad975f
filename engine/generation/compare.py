"""Same-randomness A/B: two generations driven by one random stream.

Side A and side B (two sampler settings, two checkpoints, or two runs with the same tokenizer) each run
an ordinary ``Generation`` with the same seed, so at step ``t`` both draw with the same uniform ``u_t``
by the inverse CDF of their own processed distribution (``processors.inverse_cdf``). While their texts
agree, a token differs only where the two inverse CDFs at ``u_t`` differ: a difference is the knob, not
luck. After the first divergence each side goes on with the same stream.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.errors import ConfigError
from engine.generation.processors import SamplingSettings
from engine.generation.streaming import Generation


@dataclass
class SideResult:
    """One side: its text, tokens, the probabilities of its chosen tokens and its settings."""

    label: str
    text: str
    tokens: list[int]
    logprobs: list[float]  # log q(x_t), q the side's processed distribution
    raw_logprobs: list[float]  # log p(x_t) under the side's model
    reason: str
    settings: dict[str, Any]
    approximate: bool = False

    @property
    def mean_logprob(self) -> float:
        return sum(self.logprobs) / len(self.logprobs) if self.logprobs else 0.0

    @property
    def mean_raw_logprob(self) -> float:
        return sum(self.raw_logprobs) / len(self.raw_logprobs) if self.raw_logprobs else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "text": self.text, "tokens": self.tokens, "reason": self.reason,
                "mean_logprob": self.mean_logprob, "mean_raw_logprob": self.mean_raw_logprob,
                "logprobs": self.logprobs, "settings": self.settings, "approximate": self.approximate}


@dataclass
class CompareResult:
    """Both sides, the seed and uniforms they shared, and the first step where their tokens differ."""

    seed: int
    prompt: str
    a: SideResult
    b: SideResult
    uniforms: list[float] = field(default_factory=list)
    divergence: int | None = None  # index of the first differing token (None: identical)

    def to_dict(self) -> dict[str, Any]:
        d = self.divergence
        div = None
        if d is not None:
            tok = lambda s: s.tokens[d] if d < len(s.tokens) else None  # noqa: E731
            div = {"index": d, "u": self.uniforms[d] if d < len(self.uniforms) else None,
                   "a_token": tok(self.a), "b_token": tok(self.b)}
        return {"event": "compare", "seed": self.seed, "prompt": self.prompt, "a": self.a.to_dict(),
                "b": self.b.to_dict(), "divergence": div}


def _run(label: str, model: Any, tokenizer: Any, prompt: str | Sequence[int], settings: SamplingSettings,
         window: str) -> tuple[SideResult, list[float]]:
    import math

    gen = Generation(model, tokenizer, prompt, settings, window=window)
    logprobs, raw, uniforms = [], [], []
    while not gen.done:
        event = gen.next()
        logprobs.append(math.log(event.prob) if event.prob > 0 else float("-inf"))
        raw.append(math.log(event.raw_prob) if event.raw_prob > 0 else float("-inf"))
        uniforms.append(gen.chooser.last_u)
    tokens = [*gen.generated] + ([gen.eot_id] if gen.reason == "eot" else [])
    return SideResult(label, gen.text, tokens, logprobs, raw, gen.reason or "", settings.to_dict(),
                      gen.approximate), uniforms


def same_tokenizer(a: Any, b: Any) -> bool:
    to_dict = getattr(a, "to_dict", None)
    if to_dict is not None and getattr(b, "to_dict", None) is not None:
        return a.to_dict() == b.to_dict()
    return a is b


def compare(side_a: tuple[Any, Any], side_b: tuple[Any, Any], prompt: str | Sequence[int],
            settings_a: SamplingSettings, settings_b: SamplingSettings, *, seed: int | None = None,
            window: str = "exact", labels: tuple[str, str] = ("A", "B")) -> CompareResult:
    """Generate with ``(model, tokenizer)`` pairs A and B from one random stream (``seed``; else the
    settings' seed; else a fresh one). The tokenizers must be the same."""
    (model_a, tok_a), (model_b, tok_b) = side_a, side_b
    if not same_tokenizer(tok_a, tok_b):
        raise ConfigError("the two sides have different tokenizers; compare runs trained with the same tokenizer and data")
    if seed is None:
        seed = settings_a.seed if settings_a.seed is not None else settings_b.seed
    if seed is None:
        seed = random.SystemRandom().randrange(2**31)
    a, ua = _run(labels[0], model_a, tok_a, prompt, settings_a.replace(seed=seed), window)
    b, ub = _run(labels[1], model_b, tok_b, prompt, settings_b.replace(seed=seed), window)
    divergence = next((i for i, (x, y) in enumerate(zip(a.tokens, b.tokens)) if x != y), None)
    if divergence is None and len(a.tokens) != len(b.tokens):
        divergence = min(len(a.tokens), len(b.tokens))
    uniforms = ua if len(ua) >= len(ub) else ub
    text = prompt if isinstance(prompt, str) else tok_a.decode(list(prompt))
    return CompareResult(seed, text, a, b, uniforms, divergence)
