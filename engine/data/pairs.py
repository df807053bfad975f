"""Source -> target pairs for seq2seq training: encoding, the deterministic split, padded batches.

The convention of ``engine/models/seq2seq.py`` (pad, bos, eos are the model's last three ids). For one
pair (x, y) the model is fed, teacher-forced::

    src     = x                  padded with pad     (an empty x: one all-pad row, attended to as nothing)
    tgt_in  = [bos] + y          padded with pad     (the decoder sees y_<t when it predicts y_t)
    targets = y + [eos]          padded with -100    (ignored by the loss)

Torch-free (numpy only): the trainer, the insight code and the tests share these helpers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine.errors import DataError

IGNORE = -100  # target id the loss skips


def teacher_forcing(y: Sequence[int] | np.ndarray, bos: int, eos: int) -> tuple[np.ndarray, np.ndarray]:
    """(tgt_in, targets) of one target sequence: ``[bos] + y`` and ``y + [eos]`` (int64)."""
    y = np.asarray(y, dtype=np.int64)
    return np.concatenate([[bos], y]).astype(np.int64), np.concatenate([y, [eos]]).astype(np.int64)


@dataclass
class PairReport:
    """What encoding found in the pairs (0-based pair indices): empty sources, empty targets and
    pairs cut to the context. All are encoded safely (an empty source is one all-padding row the
    decoder attends to nothing of; an empty target is just eos), and said once when training starts."""

    max_len: int
    empty_sources: list[int] = field(default_factory=list)
    empty_targets: list[int] = field(default_factory=list)
    cut: list[int] = field(default_factory=list)
    total: int = 0

    def lines(self) -> list[str]:
        def first(ix: list[int]) -> str:
            return f"pair {ix[0] + 1}" + (f" and {len(ix) - 1} more" if len(ix) > 1 else "")

        out = []
        if self.empty_sources:
            out.append(f"{len(self.empty_sources)} of {self.total} pairs have an empty source ({first(self.empty_sources)}); "
                       "they train on an all-padding source")
        if self.empty_targets:
            out.append(f"{len(self.empty_targets)} of {self.total} pairs have an empty target ({first(self.empty_targets)}); "
                       "the model learns to answer them with end-of-sequence")
        if self.cut:
            out.append(f"{len(self.cut)} of {self.total} pairs are longer than the context of {self.max_len} tokens and "
                       f"were cut ({first(self.cut)}); use --context {self.max_len * 2}")
        return out

    def describe(self, index: int, pair: tuple[str, str]) -> str | None:
        """Why pair ``index`` is unusual, or None."""
        where = f"pair {index + 1} ({pair[0][:30]!r} -> {pair[1][:30]!r})"
        if index in self.empty_sources:
            return f"{where} has an empty source"
        if index in self.empty_targets:
            return f"{where} has an empty target"
        if index in self.cut:
            return f"{where} was cut to {self.max_len} tokens"
        return None


def encode_pairs(pairs: Sequence[tuple[str, str]], tokenizer: Any, max_len: int
                 ) -> tuple[list[np.ndarray], list[np.ndarray], PairReport]:
    """Token ids of every (source, target); sources cut to ``max_len`` tokens and targets to
    ``max_len - 1`` (room for eos). Returns (sources, targets, a PairReport of empty and cut pairs)."""
    if not pairs:
        raise DataError("there are no source->target pairs; give a file of 'source<TAB>target' lines")
    srcs, tgts = [], []
    report = PairReport(max_len, total=len(pairs))
    for i, (a, b) in enumerate(pairs):
        x = np.asarray(tokenizer.encode(a), dtype=np.int64)
        y = np.asarray(tokenizer.encode(b), dtype=np.int64)
        if len(x) > max_len or len(y) > max_len - 1:
            report.cut.append(i)
        if len(x) == 0:
            report.empty_sources.append(i)
        if len(y) == 0:
            report.empty_targets.append(i)
        srcs.append(x[:max_len])
        tgts.append(y[: max_len - 1])
    return srcs, tgts, report


def split_pairs(n: int, val_fraction: float) -> tuple[range, range]:
    """Deterministic split of ``n`` pairs: the last ``val_fraction`` (at least one) is validation."""
    if n < 2:
        raise DataError(f"{n} source->target pair(s) cannot be split into training and validation; give more pairs")
    n_val = min(n - 1, max(1, int(round(n * val_fraction))))
    return range(0, n - n_val), range(n - n_val, n)


def collate(srcs: Sequence[np.ndarray], tgts: Sequence[np.ndarray], pad: int, bos: int, eos: int
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pad a batch to its own longest source/target -> (src (B, S), tgt_in (B, T), targets (B, T))."""
    B = len(srcs)
    S = max(1, max(len(x) for x in srcs))
    T = max(len(y) for y in tgts) + 1
    src = np.full((B, S), pad, dtype=np.int64)
    tgt_in = np.full((B, T), pad, dtype=np.int64)
    targets = np.full((B, T), IGNORE, dtype=np.int64)
    for i, (x, y) in enumerate(zip(srcs, tgts)):
        src[i, : len(x)] = x
        t_in, t_out = teacher_forcing(y, bos, eos)
        tgt_in[i, : len(t_in)] = t_in
        targets[i, : len(t_out)] = t_out
    return src, tgt_in, targets


class PairBatches:
    """Shuffled batches of pairs, a new permutation every epoch; ``state_dict`` for exact resume."""

    def __init__(self, srcs: Sequence[np.ndarray], tgts: Sequence[np.ndarray], batch_size: int,
                 specials: tuple[int, int, int], seed: int = 0):
        if not srcs:
            raise DataError("no training pairs; give more source->target lines")
        self.srcs, self.tgts, self.batch_size, self.specials = srcs, tgts, batch_size, specials
        self.rng = np.random.Generator(np.random.PCG64(seed))
        self.last_picked: tuple[int, ...] = ()
        self._new_epoch()

    def _new_epoch(self) -> None:
        self._epoch_rng = self.rng.bit_generator.state  # enough to rebuild this epoch's order
        self.order = self.rng.permutation(len(self.srcs))
        self.pos = 0

    def next(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(src, tgt_in, targets) of the next ``batch_size`` pairs (wrapping into a new epoch)."""
        picked: list[int] = []
        while len(picked) < self.batch_size:
            if self.pos >= len(self.order):
                self._new_epoch()
            take = self.order[self.pos : self.pos + self.batch_size - len(picked)]
            picked.extend(int(i) for i in take)
            self.pos += len(take)
        self.last_picked = tuple(picked)  # which pairs (indices into srcs) the batch holds
        return collate([self.srcs[i] for i in picked], [self.tgts[i] for i in picked], *self.specials)

    __next__ = next

    def __iter__(self) -> PairBatches:
        return self

    def state_dict(self) -> dict[str, Any]:
        return {"kind": "pairs", "epoch_rng": self._epoch_rng, "pos": self.pos}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["epoch_rng"]
        self._new_epoch()
        self.pos = int(state["pos"])
