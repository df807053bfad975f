"""The sampling chain: the stages that turn a model's next-token logits into the distribution we draw from,
and the inverse-CDF draw itself.

Every stage is a function of a logits tensor ``(..., V)`` (the history stages also of the tokens seen so
far); a removed token gets ``-inf``; at least one token always stays. Each stage follows the tool it is
named after -- the formulas and references are in docs/sampling.md -- and the tests compare them with
Hugging Face ``transformers``' own processors where it has one.

* ``History``: the tokens each row has seen (prompt + generated) and the on-device counts the penalties
  read, updated in O(1) per token (no per-step ``bincount`` or ``unique``).
* ``LogitsPipeline``: the active stages of a ``SamplingSettings`` in their order, on ``(B, V)`` logits;
  ``trace()`` returns the distribution before and after every stage (the sampler lab's data).
* ``RandomStream`` / ``inverse_cdf``: one uniform number per generated token, turned into a token by
  the inverse CDF of the processed distribution. Two generations with the same seed draw the same
  uniforms, so a same-randomness A/B only differs where the two inverse CDFs differ.
* ``TokenChooser``: pipeline + draw for one sequence, reporting the token's probability before and after
  processing, the entropy and the top alternatives with one host transfer per token. The alternatives
  merge the processed top with the raw top (``merge_alternatives``), so what the chain removed shows.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from engine.errors import ConfigError, SeqplayError
from engine.generation.settings import DEFAULT_ORDER, STAGES, SamplingSettings

__all__ = [
    "DEFAULT_ORDER",
    "SamplingSettings",
    "History",
    "LogitsPipeline",
    "RandomStream",
    "TokenChooser",
    "Choice",
    "StageTrace",
    "inverse_cdf",
    "apply_repetition_penalty",
    "apply_presence_frequency",
    "token_counts",
    "no_repeat_ngram_banned",
    "dry_penalties",
    "apply_logit_bias",
    "apply_banned",
    "apply_temperature",
    "dynamic_temperature",
    "top_k_filter",
    "top_p_filter",
    "min_p_filter",
    "typical_filter",
    "epsilon_filter",
    "eta_filter",
    "top_n_sigma_filter",
    "xtc_filter",
    "mirostat_filter",
    "entropy",
]

NEG_INF = float("-inf")

# --------------------------------------------------------------------------------------------------
# Stages: functions of logits (..., V)
# --------------------------------------------------------------------------------------------------


def apply_repetition_penalty(logits: torch.Tensor, ids: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL / Hugging Face: every distinct id in ``ids`` gets ``l / r`` if ``l > 0`` else ``l * r``."""
    if penalty == 1.0 or ids.numel() == 0:
        return logits
    seen = torch.zeros(logits.shape[-1], dtype=torch.bool, device=logits.device)
    seen[ids.to(logits.device)] = True
    return _penalise_seen(logits, seen, penalty)


def _penalise_seen(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    return torch.where(seen, torch.where(logits < 0, logits * penalty, logits / penalty), logits)


def apply_presence_frequency(logits: torch.Tensor, counts: torch.Tensor, presence: float, frequency: float) -> torch.Tensor:
    """OpenAI: ``l - c * frequency - [c > 0] * presence``, ``counts`` (..., V) the number of times each token
    occurs in the text generated so far (``token_counts``)."""
    if presence == 0.0 and frequency == 0.0:
        return logits
    counts = counts.to(logits.dtype)
    return logits - counts * frequency - (counts > 0).to(logits.dtype) * presence


def token_counts(ids: Sequence[int] | torch.Tensor, vocab_size: int) -> torch.Tensor:
    """How often each of ``vocab_size`` tokens occurs in ``ids`` (float, (V,))."""
    ids = torch.as_tensor(ids, dtype=torch.long)
    return torch.bincount(ids, minlength=vocab_size).float()


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


DRY_MAX_MATCH = 50  # text-generation-webui caps the backward match (keeps base**length finite)


def dry_penalties(history: Sequence[int], multiplier: float, base: float, allowed_length: int,
                  breakers: set[int] | frozenset[int], range_: int = 0) -> dict[int, float]:
    """DRY (text-generation-webui's ``DRYLogitsProcessor``): for each earlier occurrence of the last token,
    extend the match backwards (stopping at a sequence breaker, the start, or 50 tokens); the token that
    followed it would continue a repeat of length ``L``; if ``L >= allowed_length`` it is penalised by
    ``multiplier * base ** (L - allowed_length)`` (the longest match per token counts)."""
    ids = list(history[-range_:]) if range_ > 0 else list(history)
    if multiplier <= 0 or len(ids) < 2:
        return {}
    last = ids[-1]
    if last in breakers:
        return {}
    n = len(ids)
    lengths: dict[int, int] = {}
    for i in range(n - 1):
        if ids[i] != last:
            continue
        nxt = ids[i + 1]
        if nxt in breakers:
            continue
        length = 1
        while length < DRY_MAX_MATCH:
            j = i - length
            if j < 0:
                break
            prev = ids[n - 1 - length]
            if ids[j] != prev or prev in breakers:
                break
            length += 1
        lengths[nxt] = max(length, lengths.get(nxt, 0))
    return {t: multiplier * base ** (L - allowed_length) for t, L in lengths.items() if L >= allowed_length}


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
    if temperature < 1e-3:  # l / T could overflow: divide the shifted logits (no data-dependent branch)
        return (logits - logits.amax(dim=-1, keepdim=True)) / temperature
    return logits / temperature


def dynamic_temperature(logits: torch.Tensor, temperature: float, range_: float, exponent: float) -> torch.Tensor:
    """Entropy-based temperature (llama.cpp ``temp_ext``): ``T = T_min + (T_max - T_min) * (H / log n) ** exponent``
    with ``T_min = max(0, T - range)``, ``T_max = T + range``, ``H`` the entropy of ``softmax(l)`` and ``n``
    the number of tokens still in the running (finite logits); then ``l / T``."""
    finite = torch.isfinite(logits)
    n = finite.sum(dim=-1, keepdim=True)
    h = entropy(logits).unsqueeze(-1)
    max_h = torch.log(n.clamp(min=2).to(logits.dtype))
    t_min, t_max = max(0.0, temperature - range_), temperature + range_
    t = t_min + (t_max - t_min) * (h / max_h).clamp(0.0, 1.0) ** exponent
    t = torch.where(n > 1, t, torch.ones_like(t))  # a single candidate: nothing to scale
    t = t.clamp(min=1e-6)
    return torch.where(finite, (logits - logits.amax(dim=-1, keepdim=True)) / t, logits)


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the ``k`` largest logits and every logit tied with the k-th."""
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, NEG_INF)


def top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Nucleus, exactly as Hugging Face's ``TopPLogitsWarper``: sort ascending (``torch.sort``, whose order
    among equal logits decides ties the same way), remove the tokens whose cumulative probability is
    ``<= 1 - top_p``; the most probable (last sorted) token always stays."""
    if top_p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, descending=False)
    cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    remove_sorted = cumulative <= (1.0 - top_p)
    remove_sorted[..., -1:] = False
    remove = remove_sorted.scatter(-1, order, remove_sorted)
    return logits.masked_fill(remove, NEG_INF)


def min_p_filter(logits: torch.Tensor, min_p: float) -> torch.Tensor:
    """Drop ``p < min_p * max p`` (the arg-max itself always satisfies the rule)."""
    if min_p <= 0.0:
        return logits
    probs = logits.softmax(dim=-1)
    remove = probs < min_p * probs.amax(dim=-1, keepdim=True)
    return logits.masked_fill(remove, NEG_INF)


def typical_filter(logits: torch.Tensor, mass: float) -> torch.Tensor:
    """Locally typical sampling (Meister et al. 2022), as Hugging Face's ``TypicalLogitsWarper``: rank by
    ``|-log p - H|``, keep the smallest prefix whose mass reaches ``mass`` (ties with its last one too)."""
    if mass >= 1.0:
        return logits
    logp = logits.log_softmax(dim=-1)
    ent = torch.special.entr(logp.exp()).sum(dim=-1, keepdim=True)
    shifted = (-logp - ent).abs()
    sorted_shifted, order = torch.sort(shifted, dim=-1, descending=False)
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


def top_n_sigma_filter(logits: torch.Tensor, n: float) -> torch.Tensor:
    """Top-nσ (Tang et al. 2024): keep ``l >= max l - n * σ``, σ the (population) standard deviation of the
    finite logits. Invariant to temperature."""
    if n <= 0.0:
        return logits
    finite = torch.isfinite(logits)
    count = finite.sum(dim=-1, keepdim=True).clamp(min=1)
    zeroed = torch.where(finite, logits, torch.zeros_like(logits))
    mean = zeroed.sum(dim=-1, keepdim=True) / count
    var = (torch.where(finite, logits - mean, torch.zeros_like(logits)) ** 2).sum(dim=-1, keepdim=True) / count
    threshold = logits.amax(dim=-1, keepdim=True) - n * var.sqrt()
    return logits.masked_fill(logits < threshold, NEG_INF)


def xtc_filter(logits: torch.Tensor, threshold: float) -> torch.Tensor:
    """XTC, exclude top choices (text-generation-webui / llama.cpp): if two or more tokens have
    ``p >= threshold``, remove all of them but the least probable (applied with probability
    ``xtc_probability``: the coin is drawn by the pipeline)."""
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = sorted_logits.softmax(dim=-1)
    remove_sorted = torch.zeros_like(probs, dtype=torch.bool)
    remove_sorted[..., :-1] = probs[..., 1:] >= threshold
    remove = remove_sorted.scatter(-1, order, remove_sorted)
    return logits.masked_fill(remove, NEG_INF)


def mirostat_filter(logits: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
    """Mirostat 2 truncation: keep the tokens whose surprise ``-log2 p`` is at most ``mu`` (and the arg-max)."""
    surprise = -logits.log_softmax(dim=-1) / math.log(2.0)
    remove = (surprise > mu.unsqueeze(-1)) & (logits < logits.amax(dim=-1, keepdim=True))
    return logits.masked_fill(remove, NEG_INF)


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of ``softmax(logits)``; removed (-inf) tokens contribute 0."""
    return torch.special.entr(logits.softmax(dim=-1)).sum(dim=-1)


# --------------------------------------------------------------------------------------------------
# History: what the rows have seen
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


class History:
    """The token ids each of ``rows`` sequences has seen: ``ids[r]`` (prompt then generated),
    ``prompt_len``, and -- when the pipeline needs them -- counts (rows, V) on the logits' device:
    ``seen`` over the whole input (repetition penalty, Hugging Face) and ``generated`` over the generated
    tokens only (presence/frequency, OpenAI), both limited to the last ``window`` tokens when it is > 0."""

    def __init__(self, prompt: Sequence[int], vocab_size: int, rows: int = 1, *, device: Any = "cpu",
                 counts: bool = False, window: int = 0, ngram: int = 0, mu: float = 0.0):
        self.ids = [[int(t) for t in prompt] for _ in range(rows)]
        self.prompt_len = len(self.ids[0]) if rows else 0
        self.vocab_size, self.window, self.device = vocab_size, window, device
        self.seen: torch.Tensor | None = None
        self.generated: torch.Tensor | None = None
        if counts:
            self.seen = torch.zeros(rows, vocab_size, device=device)
            self.generated = torch.zeros(rows, vocab_size, device=device)
            for r in range(rows):
                kept = self.ids[r][-window:] if window > 0 else self.ids[r]
                if kept:
                    self.seen[r].index_put_((torch.tensor(kept, device=device),), torch.ones(len(kept), device=device),
                                            accumulate=True)
        self.ngrams = [_NGramIndex(ngram) for _ in range(rows)] if ngram > 0 else None
        self.mu = torch.full((rows,), float(mu), device=device)  # Mirostat's running threshold (bits)
        self.mirostat_logp: torch.Tensor | None = None  # the distribution the Mirostat stage left

    @property
    def rows(self) -> int:
        return len(self.ids)

    def push(self, tokens: Sequence[int]) -> None:
        """Append one token to every row."""
        w = self.window
        for r, t in enumerate(tokens):
            ids = self.ids[r]
            ids.append(int(t))
            if self.seen is not None:
                self.seen[r, t] += 1
                if len(ids) > self.prompt_len:
                    self.generated[r, t] += 1  # type: ignore[index]
                if w > 0 and len(ids) > w:  # the token leaving the window
                    old = len(ids) - 1 - w
                    self.seen[r, ids[old]] -= 1
                    if old >= self.prompt_len:
                        self.generated[r, ids[old]] -= 1  # type: ignore[index]

    def select(self, rows: Sequence[int]) -> None:
        """Keep/reorder rows (beam search: row i becomes a copy of old row ``rows[i]``)."""
        self.ids = [list(self.ids[r]) for r in rows]
        index = torch.tensor(list(rows), dtype=torch.long, device=self.device)
        if self.seen is not None:
            self.seen = self.seen.index_select(0, index)
            self.generated = self.generated.index_select(0, index)  # type: ignore[union-attr]
        if self.ngrams is not None:
            self.ngrams = [_NGramIndex(self.ngrams[0].n) for _ in rows]
        self.mu = self.mu.index_select(0, index)

    def generated_ids(self, row: int = 0) -> list[int]:
        return self.ids[row][self.prompt_len :]


# --------------------------------------------------------------------------------------------------
# The pipeline
# --------------------------------------------------------------------------------------------------

Step = Callable[[torch.Tensor, History], torch.Tensor]


@dataclass(frozen=True)
class StageTrace:
    """One stage at one position: the probabilities before and after it (1-D tensors over the vocabulary)."""

    stage: str
    before: torch.Tensor
    after: torch.Tensor

    def summary(self, top: int = 10, token_text: Callable[[int], str] | None = None) -> dict[str, Any]:
        """As data for a view: the top tokens before/after, the ids it removed and those it made more likely."""
        name = token_text or str
        removed = ((self.before > 0) & (self.after == 0)).nonzero().flatten().tolist()
        boosted = ((self.after > self.before) & (self.before > 0)).nonzero().flatten().tolist()
        k = min(top, self.before.numel())

        def tops(p: torch.Tensor) -> list[dict[str, Any]]:
            values, ids = torch.topk(p, k)
            return [{"id": i, "text": name(i), "p": v} for i, v in zip(ids.tolist(), values.tolist()) if v > 0]

        return {"stage": self.stage, "before": tops(self.before), "after": tops(self.after),
                "removed": removed, "boosted": boosted,
                "kept": int((self.after > 0).sum()), "entropy_after": float(torch.special.entr(self.after).sum())}


class LogitsPipeline:
    """The active stages of ``settings`` in order, applied to logits ``(B, V)`` (or ``(V,)``) of the rows
    of a ``History``. ``kinds`` limits the stages (beam search runs only the "history" ones: penalties,
    DRY, no-repeat n-gram, bias and bans). ``tokenizer`` turns DRY's sequence-breaker texts into ids."""

    def __init__(self, settings: SamplingSettings, vocab_size: int, *, tokenizer: Any = None,
                 kinds: tuple[str, ...] = ("history", "warp"), device: Any = "cpu"):
        settings.validate(vocab_size)
        self.settings, self.vocab_size, self.device = settings, vocab_size, torch.device(device)
        s = settings
        self.steps: list[tuple[str, Step]] = []
        for name in s.active_stages():
            if STAGES[name].kind not in kinds:
                continue
            self.steps.append((name, self._build(name, s, tokenizer)))
        names = self.names
        self.needs_counts = "repetition_penalty" in names or "presence_frequency" in names
        self.xtc_generator: torch.Generator | None = None
        if "xtc" in names:  # its own coin, so the main random stream stays aligned across an A/B
            self.xtc_generator = make_generator(None if s.seed is None else s.seed + 0x5EED)

    def _build(self, name: str, s: SamplingSettings, tokenizer: Any) -> Step:
        V, dev = self.vocab_size, self.device
        if name == "repetition_penalty":
            r = s.repetition_penalty
            return lambda x, h: _penalise_seen(x, _rows(h.seen, x) > 0, r)
        if name == "presence_frequency":
            pres, freq = s.presence_penalty, s.frequency_penalty
            return lambda x, h: apply_presence_frequency(x, _rows(h.generated, x), pres, freq)
        if name == "dry":
            breakers = frozenset(_breaker_ids(tokenizer, s.dry_sequence_breakers))
            args = (s.dry_multiplier, s.dry_base, s.dry_allowed_length, breakers, s.dry_range)

            def dry(x: torch.Tensor, h: History) -> torch.Tensor:
                out = None
                for r, ids in enumerate(h.ids):
                    pen = dry_penalties(ids, *args)
                    if pen:
                        out = x.clone() if out is None else out
                        row = out[r] if out.dim() == 2 else out
                        row[list(pen)] -= torch.tensor(list(pen.values()), dtype=x.dtype, device=x.device)
                return x if out is None else out

            return dry
        if name == "no_repeat_ngram":
            n = s.no_repeat_ngram

            def no_repeat(x: torch.Tensor, h: History) -> torch.Tensor:
                out = None
                for r, ids in enumerate(h.ids):
                    banned = h.ngrams[r].banned(ids) if h.ngrams is not None else no_repeat_ngram_banned(ids, n)
                    if banned:
                        out = x.clone() if out is None else out
                        (out[r] if out.dim() == 2 else out)[banned] = NEG_INF
                return x if out is None else out

            return no_repeat
        if name == "logit_bias":
            bias = torch.zeros(V, device=dev)
            for t, b in s.logit_bias.items():
                bias[int(t)] += float(b)
            return lambda x, h: x + bias.to(x.dtype)
        if name == "banned":
            mask = torch.zeros(V, dtype=torch.bool, device=dev)
            mask[sorted(set(s.banned))] = True
            return lambda x, h: x.masked_fill(mask, NEG_INF)
        if name == "top_n_sigma":
            return lambda x, h: top_n_sigma_filter(x, s.top_n_sigma)
        if name == "temperature":
            if s.dynatemp_range > 0.0:
                return lambda x, h: dynamic_temperature(x, s.temperature, s.dynatemp_range, s.dynatemp_exponent)
            return lambda x, h: apply_temperature(x, s.temperature)
        if name == "top_k":
            return lambda x, h: top_k_filter(x, s.top_k)
        if name == "top_p":
            return lambda x, h: top_p_filter(x, s.top_p)
        if name == "min_p":
            return lambda x, h: min_p_filter(x, s.min_p)
        if name == "typical_p":
            return lambda x, h: typical_filter(x, s.typical_p)
        if name == "epsilon":
            return lambda x, h: epsilon_filter(x, s.epsilon)
        if name == "eta":
            return lambda x, h: eta_filter(x, s.eta)
        if name == "xtc":
            def xtc(x: torch.Tensor, h: History) -> torch.Tensor:
                coin = float(torch.rand((), generator=self.xtc_generator))
                return xtc_filter(x, s.xtc_threshold) if coin < s.xtc_probability else x

            return xtc
        if name == "mirostat":
            def mirostat(x: torch.Tensor, h: History) -> torch.Tensor:
                out = mirostat_filter(x, h.mu if x.dim() == 2 else h.mu[0])
                h.mirostat_logp = out.log_softmax(dim=-1)
                return out

            return mirostat
        raise AssertionError(name)

    @property
    def names(self) -> list[str]:
        """The stages that actually run, in order."""
        return [name for name, _ in self.steps]

    def start(self, prompt: Sequence[int], rows: int = 1) -> History:
        """A fresh history for ``rows`` sequences that all start with ``prompt``."""
        s = self.settings
        return History(prompt, self.vocab_size, rows, device=self.device, counts=self.needs_counts,
                       window=s.repetition_window, ngram=s.no_repeat_ngram if "no_repeat_ngram" in self.names else 0,
                       mu=2.0 * s.mirostat_tau)

    def __call__(self, logits: torch.Tensor, history: History) -> torch.Tensor:
        for _, step in self.steps:
            logits = step(logits, history)
        return logits

    def trace(self, logits: torch.Tensor, history: History) -> list[StageTrace]:
        """Every stage's distribution before and after, for one position (logits (V,), row 0)."""
        out = []
        probs = logits.float().softmax(-1)
        for name, step in self.steps:
            logits = step(logits, history)
            after = logits.float().softmax(-1)
            out.append(StageTrace(name, probs, after))
            probs = after
        return out

    def observe(self, history: History, tokens: Sequence[int]) -> None:
        """After the draw: Mirostat's ``mu <- mu - eta * (-log2 p(x) - tau)`` with ``p`` the distribution
        its stage left (renormalised after truncation, as llama.cpp)."""
        if history.mirostat_logp is None:
            return
        s = self.settings
        logp = history.mirostat_logp if history.mirostat_logp.dim() == 2 else history.mirostat_logp[None]
        index = torch.tensor(list(tokens), device=logp.device)[:, None]
        surprise = -logp.gather(-1, index)[:, 0] / math.log(2.0)
        history.mu = history.mu - s.mirostat_eta * (surprise - s.mirostat_tau)
        history.mirostat_logp = None


def _rows(counts: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
    """A history's (rows, V) counts shaped like the logits ``x`` ((V,) for one sequence)."""
    assert counts is not None
    return counts if x.dim() == 2 else counts[0]


def _breaker_ids(tokenizer: Any, texts: Sequence[str]) -> list[int]:
    """DRY's sequence breakers as token ids: the last id of each text's encoding (text-generation-webui)."""
    if tokenizer is None:
        return []
    out = []
    for text in texts:
        try:
            ids = [int(i) for i in tokenizer.encode(text)]
        except Exception:  # noqa: BLE001 - a text the tokenizer cannot encode breaks nothing
            continue
        if ids:
            out.append(ids[-1])
    return out


# --------------------------------------------------------------------------------------------------
# The draw
# --------------------------------------------------------------------------------------------------


def make_generator(seed: int | None) -> torch.Generator:
    gen = torch.Generator()
    gen.manual_seed(seed if seed is not None else random.SystemRandom().randrange(2**63))
    return gen


class RandomStream:
    """The uniform numbers u_1, u_2, ... in [0, 1) that a generation draws its tokens with: one per token,
    whatever the settings (greedy and forced tokens consume theirs too), so two generations with the same
    seed see the same u_t at every step t. Drawn in float64 blocks (one allocation per 256 tokens)."""

    BLOCK = 256

    def __init__(self, seed: int | None):
        self.generator = make_generator(seed)
        self._block: list[float] = []
        self._i = 0

    def next(self) -> float:
        if self._i >= len(self._block):
            self._block = torch.rand(self.BLOCK, generator=self.generator, dtype=torch.float64).tolist()
            self._i = 0
        u = self._block[self._i]
        self._i += 1
        return u


def inverse_cdf(probs: torch.Tensor, u: float) -> torch.Tensor:
    """The token ``min{i : F(i) > u * F(V-1)}`` (a 1-element tensor), ``F`` the cumulative sum of ``probs``
    (1-D) in float64: a token of probability 0 is never drawn, and ``u`` ~ U[0, 1) draws each token with
    its probability."""
    cdf = probs.cumsum(-1, dtype=torch.float64)
    index = torch.searchsorted(cdf, cdf[-1:] * u, right=True)
    return index.clamp_(max=probs.shape[-1] - 1)


def merge_alternatives(ids: Sequence[float], probs: Sequence[float], raw_logps: Sequence[float], n: int
                       ) -> tuple[tuple[int, float, float], ...]:
    """At most ``n`` rows (id, processed p, raw p) from the processed top-n (the first ``n`` of ``ids``,
    ``probs``, ``raw_logps``) and the raw top-n (the next ``n``): the kept tokens (processed p > 0) in
    processed order, then the removed ones (processed p 0) in raw order. Each row goes to whichever of
    the next kept / next removed token is more probable (processed p against raw p), so both the
    likeliest raw tokens and the likeliest processed ones are there."""
    kept = [(int(i), v, math.exp(r)) for i, v, r in zip(ids[:n], probs[:n], raw_logps[:n]) if v > 0.0]
    removed = [(int(i), 0.0, math.exp(r)) for i, v, r in zip(ids[n:], probs[n:], raw_logps[n:]) if v == 0.0]
    a = b = 0
    while a + b < n and (a < len(kept) or b < len(removed)):
        if b >= len(removed) or (a < len(kept) and kept[a][1] >= removed[b][2]):
            a += 1
        else:
            b += 1
    return tuple(kept[:a] + removed[:b])


@dataclass(frozen=True)
class Choice:
    """One chosen token and what the distributions said about it."""

    token: int
    prob: float  # after processing
    raw_prob: float  # under the raw model
    entropy: float  # of the processed distribution, nats
    top: tuple[tuple[int, float, float], ...]  # (id, processed prob, raw prob): ``merge_alternatives``
    u: float = 0.0  # the uniform number it was drawn with


class TokenChooser:
    """Processes one sequence's raw logits ``(V,)`` and picks a token: ``inverse_cdf`` of the processed
    distribution at the stream's next uniform (arg-max at temperature 0, or a forced id)."""

    def __init__(self, settings: SamplingSettings, vocab_size: int, *, tokenizer: Any = None, device: Any = "cpu"):
        self.settings = settings
        self.pipeline = LogitsPipeline(settings, vocab_size, tokenizer=tokenizer, device=device)
        self.stream = RandomStream(settings.seed)
        self.top_n = min(settings.top_alternatives, vocab_size)
        self.vocab_size = vocab_size
        self.history = self.pipeline.start([])
        self.last_u = 0.0  # the uniform the last token was drawn with

    @property
    def generator(self) -> torch.Generator:
        return self.stream.generator

    def start(self, prompt: Sequence[int]) -> History:
        """Begin a sequence (the pipeline's penalties see ``prompt`` as the input so far)."""
        self.history = self.pipeline.start(prompt)
        return self.history

    def push(self, token: int) -> None:
        self.history.push((token,))

    def processed_logprobs(self, raw_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(raw log-probs, processed log-probs) for 1-D float logits at the current history."""
        raw = raw_logits if raw_logits.dtype == torch.float32 else raw_logits.float()
        raw_logp = raw.log_softmax(dim=-1)
        if not self.pipeline.steps:
            return raw_logp, raw_logp
        return raw_logp, self.pipeline(raw, self.history).log_softmax(dim=-1)

    def _report(self, probs: torch.Tensor, raw_logp: torch.Tensor, head: torch.Tensor
                ) -> tuple[list[float], list[float], list[float], float]:
        """In one host transfer: ids, processed p and log p_raw of ``head`` (token ids) followed by the
        processed top-n and the raw top-n, and the processed distribution's entropy (nats)."""
        both = torch.stack((probs, raw_logp))
        index = torch.cat((head, both.topk(self.top_n, dim=-1).indices.flatten())) if self.top_n > 0 else head
        got = torch.cat((index.to(probs.dtype), both.index_select(1, index).flatten(),
                         torch.special.entr(probs).sum(-1, keepdim=True))).tolist()
        m = head.numel() + 2 * max(self.top_n, 0)
        return got[:m], got[m : 2 * m], got[2 * m : 3 * m], got[3 * m]

    def alternatives(self, raw_logits: torch.Tensor) -> tuple[tuple[int, float, float], ...]:
        """``merge_alternatives`` for 1-D raw logits at the current history (nothing is consumed)."""
        if self.top_n <= 0:
            return ()
        raw_logp, logp = self.processed_logprobs(raw_logits)
        ids, p, lr, _ = self._report(logp.exp(), raw_logp, torch.empty(0, dtype=torch.long, device=logp.device))
        return merge_alternatives(ids, p, lr, self.top_n)

    def choose(self, raw_logits: torch.Tensor, force: int | None = None) -> Choice:
        """Draw (or take ``force``) the next token and append it to the history."""
        u = self.stream.next()
        raw_logp, logp = self.processed_logprobs(raw_logits)
        probs = logp.exp()
        if force is not None:
            if not 0 <= force < self.vocab_size:
                raise ConfigError(f"token id {force} is outside the vocabulary (0..{self.vocab_size - 1})")
            token_t = torch.tensor([int(force)], device=probs.device)
        elif self.settings.temperature == 0.0 and self.settings.dynatemp_range == 0.0:
            token_t = probs.argmax(-1, keepdim=True)
        else:
            token_t = inverse_cdf(probs, u)
        # everything the event reports, in one host transfer: token, p, log p_raw, entropy, alternatives
        ids, p, lr, ent = self._report(probs, raw_logp, token_t.view(1))
        token, prob, raw_prob = int(ids[0]), p[0], math.exp(lr[0])
        if ent != ent:  # NaN: the model's scores, or the settings removed every token
            if bool(torch.isnan(raw_logp).any()):
                raise SeqplayError("the model produced NaN scores; its weights are broken: use an earlier checkpoint or retrain")
            raise ConfigError("the sampling settings removed every token (bans / no-repeat n-gram); relax them")
        top = merge_alternatives(ids[1:], p[1:], lr[1:], self.top_n) if self.top_n > 0 else ()
        if self.pipeline.steps:
            self.pipeline.observe(self.history, (token,))
            self.history.push((token,))
        else:
            self.history.ids[0].append(token)
        self.last_u = u
        return Choice(token, prob, raw_prob, ent, top, u)
