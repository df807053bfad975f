"""Memorisation meter: how much of a generated sample is copied verbatim from the training text.

For each sample: the longest span that occurs in the training text (a long copied span means the
model recites rather than generalises) and the share of the sample's character n-grams (n = 8 by
default) that occur there.

Both use one index of the training text: polynomial hashes of every window, computed with numpy in
O(N) per window length (hash(i, L) = B^i * (G[i+L] - G[i]) with G the prefix sums of c_j * B^-j, all
modulo 2^64). Membership of the sample's few hundred windows among the training text's million is a
table look-up that filters candidates, then an exact ``str`` check, so a hash collision can never
report a span that is not really there. The longest span is found by binary search on its length
(a copied span of length L contains one of every shorter length). Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

_BASE = 0x9E3779B97F4A7C15  # odd, so it has an inverse modulo 2^64
_BASE_INV = pow(_BASE, -1, 2**64)
_TABLE_BITS = 22


def _codepoints(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64) + np.uint64(1)


def _powers(base: int, n: int) -> np.ndarray:
    p = np.full(n, base, dtype=np.uint64)
    if n:
        p[0] = 1
    with np.errstate(over="ignore"):
        return np.cumprod(p, dtype=np.uint64)


class _Hasher:
    """Prefix sums that give the hash of any window of ``text`` in O(1), vectorised over windows."""

    def __init__(self, text: str):
        self.text = text
        c = _codepoints(text)
        n = len(c)
        self.pow = _powers(_BASE, n + 1)
        with np.errstate(over="ignore"):
            g = np.cumsum(c * _powers(_BASE_INV, n), dtype=np.uint64)
        self.prefix = np.concatenate([np.zeros(1, dtype=np.uint64), g])

    def windows(self, length: int) -> np.ndarray:
        """Hashes of every window of ``length`` characters (empty if the text is shorter)."""
        n = len(self.prefix) - 1
        if length < 1 or length > n:
            return np.zeros(0, dtype=np.uint64)
        with np.errstate(over="ignore"):
            return self.pow[: n - length + 1] * (self.prefix[length:] - self.prefix[: n - length + 1])


class TrainingIndex:
    """The training text, ready to answer "which windows of this sample occur in it?" quickly.

    Build it once per training text (≈0.1 s for 1 MB) and reuse it for every sample."""

    def __init__(self, text: str):
        self.text = text
        self._hasher = _Hasher(text)
        self._cache: dict[int, np.ndarray] = {}

    def _train_windows(self, length: int) -> np.ndarray:
        if length not in self._cache:
            if len(self._cache) > 4:
                self._cache.pop(next(iter(self._cache)))
            self._cache[length] = self._hasher.windows(length)
        return self._cache[length]

    def occurring(self, sample: str, length: int, sample_hasher: _Hasher | None = None,
                  verify_limit: int | None = None) -> np.ndarray:
        """Boolean per start position of ``sample``: does that window of ``length`` occur in the
        training text? Candidates found by hash are confirmed with an exact substring test (at most
        ``verify_limit`` of them when only existence matters)."""
        hasher = sample_hasher or _Hasher(sample)
        wanted = hasher.windows(length)
        found = np.zeros(len(wanted), dtype=bool)
        if len(wanted) == 0:
            return found
        train = self._train_windows(length)
        if len(train) == 0:
            return found
        # Filter: a bit table of the sample's hashes, looked up by every training window.
        mask = np.uint64((1 << _TABLE_BITS) - 1)
        table = np.zeros(1 << _TABLE_BITS, dtype=bool)
        table[(wanted & mask).astype(np.int64)] = True
        candidates = np.unique(train[table[(train & mask).astype(np.int64)]])
        hit = np.isin(wanted, candidates)
        checked = 0
        for i in np.flatnonzero(hit):
            if verify_limit is not None and checked >= verify_limit:
                break
            checked += 1
            found[i] = sample[i : i + length] in self.text
        return found

    def longest_span(self, sample: str) -> tuple[int, int]:
        """(start in the sample, length) of the longest span of ``sample`` found verbatim in the
        training text; (0, 0) when not even one character occurs."""
        hasher = _Hasher(sample)
        lo, hi, best = 0, min(len(sample), len(self.text)), (0, 0)
        while lo < hi:  # invariant: a span of length lo exists (or lo == 0); none longer than hi
            mid = (lo + hi + 1) // 2
            hits = np.flatnonzero(self.occurring(sample, mid, hasher, verify_limit=8))
            if len(hits):
                lo, best = mid, (int(hits[0]), mid)
            else:
                hi = mid - 1
        return best


@dataclass(frozen=True)
class SampleMemorization:
    """The meter's reading for one sample."""

    sample: str
    span_start: int
    span_length: int
    ngram_share: float  # share of the sample's n-gram positions found in the training text
    ngram_total: int
    copied_mask: list[bool]  # per character: covered by an n-gram found in the training text

    @property
    def span(self) -> str:
        return self.sample[self.span_start : self.span_start + self.span_length]

    def to_dict(self) -> dict[str, Any]:
        return {
            "sample": self.sample,
            "span": self.span,
            "span_start": self.span_start,
            "span_length": self.span_length,
            "ngram_share": self.ngram_share,
            "ngram_total": self.ngram_total,
            "copied_mask": "".join("1" if m else "0" for m in self.copied_mask),
        }


def measure(sample: str, index: TrainingIndex, n: int = 8) -> SampleMemorization:
    """Longest copied span and n-gram overlap of one sample against an indexed training text."""
    start, length = index.longest_span(sample)
    found = index.occurring(sample, n) if len(sample) >= n else np.zeros(0, dtype=bool)
    mask = np.zeros(len(sample), dtype=bool)
    for i in np.flatnonzero(found):
        mask[i : i + n] = True
    share = float(found.mean()) if len(found) else 0.0
    return SampleMemorization(sample, start, length, share, int(len(found)), mask.tolist())


def longest_copied_span(sample: str, training_text: str) -> str:
    """The longest span of ``sample`` that occurs verbatim in ``training_text`` (one-off helper; build a
    ``TrainingIndex`` to check many samples against the same text)."""
    start, length = TrainingIndex(training_text).longest_span(sample)
    return sample[start : start + length]


def memorization_report(samples: list[str], training_text: str, n: int = 8,
                        source: str = "") -> dict[str, Any]:
    """The ``seqplay memorization --json`` dict: one reading per sample plus their means."""
    if n < 1:
        from engine.errors import ConfigError

        raise ConfigError(f"n-gram length must be at least 1, got {n}")
    index = TrainingIndex(training_text)
    rows = [measure(s, index, n).to_dict() for s in samples]
    return {
        "analysis": "memorization",
        "source": source,
        "n": n,
        "training_chars": len(training_text),
        "samples": rows,
        "mean_ngram_share": float(np.mean([r["ngram_share"] for r in rows])) if rows else 0.0,
        "max_span_length": max((r["span_length"] for r in rows), default=0),
    }
