"""Count-based n-gram LM with interpolated Kneser-Ney smoothing (Kneser & Ney 1995; Chen & Goodman 1998).

Highest order n, history h = w_{t-n+2..t}, shorter history h' = h without its oldest token, d = discount:

    P_n(w | h) = max(c(h w) - d, 0) / c(h .)  +  d N1+(h .) / c(h .) * P_{n-1}(w | h')
    P_k(w | h) = max(N1+(. h w) - d, 0) / N1+(. h .)  +  d N1+(h .) / N1+(. h .) * P_{k-1}(w | h')   (k < n)
    P_1(w)     = max(N1+(. w) - d, 0) / N1+(. .)  +  d N1+(.) / N1+(. .) * 1/V

c = raw counts; N1+(. h w) = number of distinct tokens seen just before ``h w`` (continuation count; the
start of the text counts as one distinct left context); N1+(h .) = number of distinct w seen after h;
a history never seen (denominator 0) falls back to P_{k-1} entirely. At the start of a sequence, a
history of k-1 < n-1 tokens uses P_k.

"Training" is ``fit(train_ids)``: np.unique over packed n-gram codes (code = sum w_i V^i, exact in
int64), in seconds for 1M tokens. Counts live in sorted buffers so they save as safetensors; ``forward``
returns log-probabilities as logits (softmax of them is the same distribution) and the loss.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from engine.errors import ConfigError, DataError
from engine.models.base import SeqModel, lm_loss
from engine.models.registry import ngram_max_order as max_order

_TABLES = ("keys", "counts", "ctx_keys", "ctx_total", "ctx_types")



class NGramLM(SeqModel):
    arch = "ngram"
    trainable = False

    def __init__(self, config):
        super().__init__(config)
        c = config
        if c.order > max_order(c.vocab_size):
            raise ConfigError(f"order {c.order} is too high for a vocabulary of {c.vocab_size}; "
                              f"use order <= {max_order(c.vocab_size)}")
        for k in range(1, c.order + 1):
            for t in _TABLES:
                self.register_buffer(f"o{k}_{t}", torch.zeros(0, dtype=torch.int64))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.int64))

    def _t(self, k: int, name: str) -> Tensor:
        return getattr(self, f"o{k}_{name}")

    # -- counting ------------------------------------------------------------------------------------
    def fit(self, train_ids: np.ndarray) -> NGramLM:
        """Count every order's n-grams (raw at the top order, continuation counts below)."""
        ids = np.asarray(train_ids, dtype=np.int64).ravel()
        V, n = self.config.vocab_size, self.config.order
        if ids.size == 0:
            raise DataError("cannot fit an n-gram model on empty text; use a longer training text")
        if ids.min() < 0 or ids.max() >= V:
            raise DataError(f"token ids outside the vocabulary of {V}; rebuild the tokenizer for this text")
        device = self.fitted.device
        code = np.zeros(ids.size, dtype=np.int64)  # code[i] = packed ids[i : i + k]
        for k in range(1, n + 1):
            m = ids.size - k + 1
            code = code[:m] * V + ids[k - 1 : k - 1 + m] if m > 0 else code[:0]
            if k == n:
                keys, counts = np.unique(code, return_counts=True)
            else:  # distinct (left token, k-gram) pairs; V stands for "start of text"
                left = np.concatenate([[V], ids[: m - 1]]).astype(np.int64) if m > 0 else code[:0]
                pairs = np.unique(code * (V + 1) + left)  # fits: V^k (V + 1) < 2^63 for k < order
                keys, counts = np.unique(pairs // (V + 1), return_counts=True)
            ctx = keys // V
            ctx_keys, start, types = np.unique(ctx, return_index=True, return_counts=True)
            totals = np.add.reduceat(counts, start) if counts.size else counts
            for name, arr in zip(_TABLES, (keys, counts, ctx_keys, totals, types)):
                setattr(self, f"o{k}_{name}", torch.from_numpy(np.ascontiguousarray(arr, dtype=np.int64)).to(device))
        self.fitted = torch.ones((), dtype=torch.int64, device=device)
        return self

    def data_sized_buffers(self) -> list[str]:
        """The count tables: their lengths depend on the data (a checkpoint's loader checks dtype and rank)."""
        return [name for name in self._buffers if name != "fitted"]

    def check_tables(self, state: dict[str, Tensor]) -> str | None:
        """Why a loaded set of count tables cannot be used (tables of one order of different lengths)."""
        for k in range(1, self.config.order + 1):
            keys = state.get(f"o{k}_keys")
            if keys is not None and state.get(f"o{k}_counts") is not None and len(state[f"o{k}_counts"]) != len(keys):
                return f"tensor model.o{k}_counts does not match model.o{k}_keys in length"
            ctx = [state.get(f"o{k}_{t}") for t in ("ctx_keys", "ctx_total", "ctx_types")]
            if all(c is not None for c in ctx) and len({len(c) for c in ctx}) > 1:
                return f"the order-{k} context tables have different lengths"
        return None

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Count tables have data-dependent sizes: adopt the saved tensors' shapes before loading."""
        for name, t in state_dict.items():
            if name in self._buffers:
                self._buffers[name] = torch.empty_like(t, device=self.fitted.device)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    # -- probabilities -------------------------------------------------------------------------------
    @staticmethod
    def _lookup(keys: Tensor, values: Tensor, query: Tensor) -> Tensor:
        """values[keys == query], 0 where absent (keys sorted)."""
        if keys.numel() == 0:
            return torch.zeros_like(query)
        i = torch.searchsorted(keys, query).clamp_(max=keys.numel() - 1)
        return torch.where(keys[i] == query, values[i], torch.zeros_like(query))

    def _probs(self, hist: Tensor, hist_len: Tensor) -> Tensor:
        """P(. | history) for N histories: ``hist`` (N, n-1) oldest first, last ``hist_len`` valid -> (N, V)."""
        V, n, d = self.config.vocab_size, self.config.order, float(self.config.discount)
        N = hist.size(0)
        words = torch.arange(V, device=hist.device)
        # P_1: continuation unigram interpolated with the uniform distribution
        tot = self.o1_ctx_total.sum().double()
        types = self.o1_ctx_types.sum().double()
        c1 = self._lookup(self.o1_keys, self.o1_counts, words).double()
        p1 = (c1 - d).clamp(min=0) / tot + d * types / tot / V
        p = p1.expand(N, V).clone()
        for k in range(2, n + 1):
            h = torch.zeros(N, dtype=torch.int64, device=hist.device)
            for j in range(k - 1):  # the last k-1 tokens of the history, oldest first
                h = h * V + hist[:, n - k + j]
            ctx_total = self._lookup(self._t(k, "ctx_keys"), self._t(k, "ctx_total"), h).double()
            ctx_types = self._lookup(self._t(k, "ctx_keys"), self._t(k, "ctx_types"), h).double()
            c = self._lookup(self._t(k, "keys"), self._t(k, "counts"), h[:, None] * V + words[None, :]).double()
            seen = ctx_total > 0
            denom = ctx_total.clamp(min=1)[:, None]
            pk = (c - d).clamp(min=0) / denom + (d * ctx_types)[:, None] / denom * p
            usable = (seen & (hist_len >= k - 1))[:, None]  # a shorter history stops at its own order
            p = torch.where(usable, pk, p)
        return p

    def forward(self, idx: Tensor, targets: Tensor | None = None, state: Tensor | None = None, use_cache: bool = False):
        """Log P(next | up to n-1 previous tokens) at every position: (B, T, V); state = last n-1 tokens."""
        B, T = idx.shape
        n = self.config.order
        if state is None:
            state = self.init_state(B, idx.device)
        seq = torch.cat([state, idx], 1)
        offset = state.size(1)
        pad = torch.zeros(B, n - 1, dtype=torch.int64, device=idx.device)
        padded = torch.cat([pad, seq], 1)  # so every position has n-1 slots (validity from lengths)
        hist = padded.unfold(1, n - 1, 1)[:, offset + 1 : offset + 1 + T] if n > 1 else idx.new_zeros(B, T, 0)
        valid = (torch.arange(T, device=idx.device) + offset + 1).clamp(max=n - 1).expand(B, T)
        logp = torch.log(self._probs(hist.reshape(B * T, n - 1), valid.reshape(-1))).view(B, T, -1).float()
        new_state = seq[:, max(0, seq.size(1) - (n - 1)):]
        return logp, lm_loss(logp, targets), new_state

    def init_state(self, batch_size: int, device: torch.device | str = "cpu") -> Tensor:
        return torch.zeros(batch_size, 0, dtype=torch.int64, device=device)

    def reset_state(self, state, mask):
        return state if state is None or not bool(mask.any()) else state[:, :0]

    def num_params(self) -> int:
        return 0
