"""Logit processors: the rules that turn a model's next-token logits into the distribution we sample.

Each processor is a pure function of a logits tensor ``(..., V)`` (and, for the penalties, the token
ids seen so far); a removed token gets ``-inf``. Where a name matches a Hugging Face ``transformers``
processor the kept set is the same, ties included, and at least one token is always kept:

* repetition penalty (CTRL, Keskar et al. 2019): for each *distinct* token in the window,
  ``l <- l / r`` if ``l > 0`` else ``l * r``.
* presence / frequency (OpenAI): ``l <- l - c * frequency - [c > 0] * presence``, ``c`` = count in window.
* no-repeat n-gram: ban every token that would complete an n-gram already present in the text.
* logit bias ``l <- l + b``; bans ``l <- -inf``.
* temperature ``l <- l / T``; ``T = 0`` keeps only the arg-max (the first index on ties): greedy.
* top-k: remove ``l < (k-th largest l)`` -- ties at the k-th value are kept.
* top-p (nucleus): sort ascending (stably: among equal logits the lower id comes first), remove the
  tokens whose cumulative probability is ``<= 1 - p``; the most probable token always stays.
* min-p: remove ``p < min_p * max p``.
* typical-p (Meister et al. 2022): rank tokens by ``|-log p - H|``; keep the smallest prefix whose mass
  reaches ``typical_p`` (plus every token tied with the last one kept).
* epsilon: remove ``p < epsilon``; eta: remove ``p < min(eta, sqrt(eta) * exp(-H))`` (Hewitt et al.
  2022); both keep the arg-max tokens if nothing survives.

``LogitsPipeline`` applies the active processors of a ``SamplingSettings`` in its ``order``;
``TokenChooser`` samples from the result with a seeded ``torch.Generator`` and reports the token's
probability before and after processing, the entropy and the top alternatives.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from engine.errors import ConfigError, SeqplayError
from engine.generation.settings import DEFAULT_ORDER, SamplingSettings

__all__ = [
    "DEFAULT_ORDER",
    "SamplingSettings",
    "LogitsPipeline",
    "TokenChooser",
    "Choice",
    "apply_repetition_penalty",
    "apply_presence_frequency",
    "no_repeat_ngram_banned",
    "apply_logit_bias",
    "apply_banned",
    "apply_temperature",
    "top_k_filter",
    "top_p_filter",
    "min_p_filter",
    "typical_filter",
    "epsilon_filter",
    "eta_filter",
    "entropy",
]

NEG_INF = float("-inf")

# --------------------------------------------------------------------------------------------------
# Processors: pure functions of logits (..., V)
# --------------------------------------------------------------------------------------------------


def apply_repetition_penalty(logits: torch.Tensor, window: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL rule, once per distinct token id in ``window`` (1-D ids)."""
    if penalty == 1.0 or window.numel() == 0:
        return logits
    ids = torch.unique(window)
    picked = logits[..., ids]
    picked = torch.where(picked < 0, picked * penalty, picked / penalty)
    out = logits.clone()
    out[..., ids] = picked
    return out


def apply_presence_frequency(logits: torch.Tensor, window: torch.Tensor, presence: float, frequency: float) -> torch.Tensor:
    """OpenAI rule: ``l - count * frequency - (count > 0) * presence`` over the ids in ``window``."""
    if (presence == 0.0 and frequency == 0.0) or window.numel() == 0:
        return logits
    counts = torch.bincount(window, minlength=logits.shape[-1]).to(logits.dtype)
    return logits - counts * frequency - (counts > 0).to(logits.dtype) * presence


def no_repeat_ngram_banned(history: Sequence[int], n: int) -> list[int]:
    """Tokens that would complete an ``n``-gram already present in ``history`` (Hugging Face rule)."""
    if n <= 0 or len(history) < n:
        return []
    prefix = tuple(history[len(history) - n + 1 :]) if n > 1 else ()
    banned = []
    for start in range(len(history) - n + 1):
        if tuple(history[start : start + n - 1]) == prefix:
            banned.append(history[start + n - 1])
    return sorted(set(banned))


def apply_logit_bias(logits: torch.Tensor, ids: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    out = logits.clone()
    out[..., ids] += bias
    return out


def apply_banned(logits: torch.Tensor, ids: torch.Tensor | Sequence[int]) -> torch.Tensor:
    if len(ids) == 0:
        return logits
    out = logits.clone()
    out[..., ids] = NEG_INF
    return out


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``l / T``. ``T = 0`` keeps only the arg-max (first index on ties). A tiny ``T`` that would overflow
    float32 divides ``l - max l`` instead (same distribution, every later filter is shift-invariant)."""
    if temperature == 1.0:
        return logits
    if temperature == 0.0:
        best = logits.argmax(dim=-1, keepdim=True)
        return torch.full_like(logits, NEG_INF).scatter(-1, best, logits.gather(-1, best))
    out = logits / temperature
    if temperature < 1.0 and bool((torch.isinf(out) & torch.isfinite(logits)).any()):
        out = (logits - logits.amax(dim=-1, keepdim=True)) / temperature
    return out


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the ``k`` largest logits and every logit tied with the k-th."""
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, NEG_INF)


def top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Nucleus: drop the least probable tokens while their cumulative mass stays ``<= 1 - top_p``."""
    if top_p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=False, stable=True)
    cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    remove_sorted = cumulative <= (1.0 - top_p)
    remove_sorted[..., -1:] = False  # the most probable token always stays
    remove = remove_sorted.scatter(-1, order, remove_sorted)
    return logits.masked_fill(remove, NEG_INF)


def min_p_filter(logits: torch.Tensor, min_p: float) -> torch.Tensor:
    """Drop ``p < min_p * max p`` (the arg-max itself always satisfies the rule)."""
    if min_p <= 0.0:
        return logits
    probs = logits.softmax(dim=-1)
    remove = probs < min_p * probs.amax(dim=-1, keepdim=True)
    remove.scatter_(-1, probs.argmax(dim=-1, keepdim=True), False)
    return logits.masked_fill(remove, NEG_INF)


def typical_filter(logits: torch.Tensor, mass: float) -> torch.Tensor:
    """Locally typical sampling: keep the tokens whose surprisal is closest to the entropy, up to ``mass``."""
    if mass >= 1.0:
        return logits
    logp = logits.log_softmax(dim=-1)
    ent = torch.special.entr(logp.exp()).sum(dim=-1, keepdim=True)
    shifted = (-logp - ent).abs()
    sorted_shifted, order = torch.sort(shifted, dim=-1, descending=False, stable=True)
    cumulative = logits.gather(-1, order).softmax(dim=-1).cumsum(dim=-1)
    last = (cumulative < mass).sum(dim=-1, keepdim=True).clamp_(max=logits.shape[-1] - 1)
    remove_sorted = sorted_shifted > sorted_shifted.gather(-1, last)
    remove_sorted[..., :1] = False
    remove = remove_sorted.scatter(-1, order, remove_sorted)
    return logits.masked_fill(remove, NEG_INF)


def _cutoff(logits: torch.Tensor, threshold: torch.Tensor | float) -> torch.Tensor:
    """Remove ``p < threshold`` but never the arg-max logit(s)."""
    probs = logits.softmax(dim=-1)
    remove = (probs < threshold) & (logits < logits.amax(dim=-1, keepdim=True))
    return logits.masked_fill(remove, NEG_INF)


def epsilon_filter(logits: torch.Tensor, epsilon: float) -> torch.Tensor:
    if epsilon <= 0.0:
        return logits
    return _cutoff(logits, epsilon)


def eta_filter(logits: torch.Tensor, eta: float) -> torch.Tensor:
    """Eta cut-off: ``eta' = min(eta, sqrt(eta) * exp(-H))`` with H the entropy in nats."""
    if eta <= 0.0:
        return logits
    h = entropy(logits)
    threshold = torch.clamp(math.sqrt(eta) * torch.exp(-h), max=eta).unsqueeze(-1)
    return _cutoff(logits, threshold)


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of ``softmax(logits)``; removed (-inf) tokens contribute 0."""
    return torch.special.entr(logits.softmax(dim=-1)).sum(dim=-1)


# --------------------------------------------------------------------------------------------------
# The pipeline and the chooser
# --------------------------------------------------------------------------------------------------


class _NGramIndex:
    """Incremental map (n-1 tokens) -> tokens that followed them, so no-repeat costs O(1) per token."""

    def __init__(self, n: int):
        self.n = n
        self.seen = 0
        self.follow: dict[tuple[int, ...], set[int]] = {}

    def banned(self, history: Sequence[int]) -> list[int]:
        n = self.n
        if len(history) < self.seen:  # the history was rewound: start over
            self.seen, self.follow = 0, {}
        for end in range(max(self.seen + 1, n), len(history) + 1):  # windows ending at new tokens
            window = tuple(history[end - n : end])
            self.follow.setdefault(window[:-1], set()).add(window[-1])
        self.seen = len(history)
        if len(history) < n:
            return []
        key = tuple(history[len(history) - n + 1 :]) if n > 1 else ()
        return sorted(self.follow.get(key, ()))


class LogitsPipeline:
    """The active processors of ``settings`` in order, applied to one sequence's logits ``(V,)``.

    ``history`` is every token id so far (prompt and generated); penalties look at its last
    ``repetition_window`` ids (all of them when the window is 0), no-repeat n-gram at all of it.
    """

    def __init__(self, settings: SamplingSettings, vocab_size: int):
        settings.validate(vocab_size)
        self.settings = settings
        self.vocab_size = vocab_size
        s = settings
        steps: list[tuple[str, Callable[[torch.Tensor, Sequence[int]], torch.Tensor]]] = []
        for name in s.resolved_order():
            if name == "repetition_penalty" and s.repetition_penalty != 1.0:
                steps.append((name, lambda x, h: apply_repetition_penalty(x, self._window(h), s.repetition_penalty)))
            elif name == "presence_frequency" and (s.presence_penalty or s.frequency_penalty):
                steps.append((name, lambda x, h: apply_presence_frequency(x, self._window(h), s.presence_penalty, s.frequency_penalty)))
            elif name == "no_repeat_ngram" and s.no_repeat_ngram > 0:
                self._ngrams = _NGramIndex(s.no_repeat_ngram)
                steps.append((name, lambda x, h: apply_banned(x, self._ngrams.banned(h))))
            elif name == "logit_bias" and s.logit_bias:
                ids = torch.tensor(list(s.logit_bias), dtype=torch.long)
                bias = torch.tensor(list(s.logit_bias.values()), dtype=torch.float32)
                steps.append((name, lambda x, h, ids=ids, bias=bias: apply_logit_bias(x, ids, bias.to(x.dtype))))
            elif name == "banned" and s.banned:
                ids = torch.tensor(sorted(set(s.banned)), dtype=torch.long)
                steps.append((name, lambda x, h, ids=ids: apply_banned(x, ids)))
            elif name == "temperature" and s.temperature != 1.0:
                steps.append((name, lambda x, h: apply_temperature(x, s.temperature)))
            elif name == "top_k" and 0 < s.top_k < vocab_size:
                steps.append((name, lambda x, h: top_k_filter(x, s.top_k)))
            elif name == "top_p" and s.top_p < 1.0:
                steps.append((name, lambda x, h: top_p_filter(x, s.top_p)))
            elif name == "min_p" and s.min_p > 0.0:
                steps.append((name, lambda x, h: min_p_filter(x, s.min_p)))
            elif name == "typical_p" and s.typical_p < 1.0:
                steps.append((name, lambda x, h: typical_filter(x, s.typical_p)))
            elif name == "epsilon" and s.epsilon > 0.0:
                steps.append((name, lambda x, h: epsilon_filter(x, s.epsilon)))
            elif name == "eta" and s.eta > 0.0:
                steps.append((name, lambda x, h: eta_filter(x, s.eta)))
        self.steps = steps

    @property
    def names(self) -> list[str]:
        """The processors that actually run, in order."""
        return [name for name, _ in self.steps]

    def _window(self, history: Sequence[int]) -> torch.Tensor:
        n = self.settings.repetition_window
        ids = history[-n:] if n > 0 else history
        return torch.as_tensor(list(ids), dtype=torch.long)

    def reset(self) -> None:
        """Forget incremental state (call after rewinding the history)."""
        if hasattr(self, "_ngrams"):
            self._ngrams = _NGramIndex(self.settings.no_repeat_ngram)

    def __call__(self, logits: torch.Tensor, history: Sequence[int]) -> torch.Tensor:
        for _, step in self.steps:
            logits = step(logits, history)
        return logits


@dataclass(frozen=True)
class Choice:
    """One chosen token and what the distributions said about it."""

    token: int
    prob: float  # after processing
    raw_prob: float  # under the raw model
    entropy: float  # of the processed distribution, nats
    top: tuple[tuple[int, float], ...]  # (id, processed prob > 0), most probable first


def make_generator(seed: int | None) -> torch.Generator:
    gen = torch.Generator()
    gen.manual_seed(seed if seed is not None else random.SystemRandom().randrange(2**63))
    return gen


class TokenChooser:
    """Processes one step's raw logits and picks a token (sampled with a seeded generator, or forced)."""

    def __init__(self, settings: SamplingSettings, vocab_size: int):
        self.settings = settings
        self.pipeline = LogitsPipeline(settings, vocab_size)
        self.generator = make_generator(settings.seed)
        self.top_n = min(settings.top_alternatives, vocab_size)

    def processed_logprobs(self, raw_logits: torch.Tensor, history: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """(raw log-probs, processed log-probs) for 1-D float logits."""
        raw_logp = raw_logits.float().log_softmax(dim=-1)
        if not self.pipeline.steps:
            return raw_logp, raw_logp
        processed = self.pipeline(raw_logits, history)
        if bool(processed.max() == NEG_INF):
            raise ConfigError("the sampling settings removed every token (bans / no-repeat n-gram); relax them")
        return raw_logp, processed.log_softmax(dim=-1)

    def choose(self, raw_logits: torch.Tensor, history: Sequence[int], force: int | None = None) -> Choice:
        raw_logp, logp = self.processed_logprobs(raw_logits, history)
        probs = logp.exp()
        if math.isnan(float(probs.sum())):
            raise SeqplayError("the model produced NaN scores; its weights are broken: use an earlier checkpoint or retrain")
        if force is not None:
            if not 0 <= force < probs.shape[-1]:
                raise ConfigError(f"token id {force} is outside the vocabulary (0..{probs.shape[-1] - 1})")
            token = int(force)
        elif self.settings.temperature == 0.0:
            token = int(probs.argmax())
        else:
            token = int(torch.multinomial(probs, 1, generator=self.generator))
        ent = float(torch.special.entr(probs).sum())
        top: tuple[tuple[int, float], ...] = ()
        if self.top_n > 0:
            values, ids = torch.topk(probs, self.top_n)
            top = tuple((i, v) for i, v in zip(ids.tolist(), values.tolist()) if v > 0.0)
        return Choice(token, float(probs[token]), float(raw_logp[token].exp()), ent, top)
