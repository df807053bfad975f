"""Decoder-only Transformer LM (GPT): pre-LayerNorm blocks of causal self-attention and an MLP.

    x_0 = E[w_t] + P[t]                         token + position (learned or sinusoidal) embeddings
    Attn(Q, K, V) = softmax(Q K^T / sqrt(d_k) + M) V,  M_ij = -inf for j > i (causal), per head
    x = x + W_o [Attn_1(LN(x)); ...; Attn_h(LN(x))]    multi-head self-attention, residual
    x = x + W_2 GELU(W_1 LN(x))                  position-wise MLP, residual
    P(w_{t+1} | w_{<=t}) = softmax(E LN(x_L)_t)  (head tied to the embedding when tie_weights)

Attention runs through ``F.scaled_dot_product_attention``; with ``need_weights=True`` (or
``model.capture_attention = True``) it is computed explicitly and kept in ``model.last_attention``
(list per layer of (B, heads, Tq, Tk)). Generation carries a ``KVCache``: each new token costs one
query against the cached keys/values, in one compiled call for a float32 model on the CPU
(``engine.models.native``), else in torch operations (``decode_block``: the same equations as ``Block``
in fewer operations, with the weights looked up once per generation); when the window is full the
cache re-encodes the last half.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from engine.errors import ConfigError
from engine.models.base import SeqModel, lm_loss


class KVCache:
    """Per-layer keys/values (B, heads, max_context, head_dim) preallocated, the next position, and
    the tokens seen (to re-encode the last half of the window when it fills up)."""

    def __init__(self, k: list[Tensor], v: list[Tensor], tokens: Tensor, pos: int = 0):
        self.k, self.v, self.tokens, self.pos = k, v, tokens, pos
        self.plan: tuple | None = None  # the model's tensors for a decode step (Transformer._one_step)
        self.bound: tuple | None = None  # k/v pointers for the compiled decode step (native.DecodeStep)

    @classmethod
    def empty(cls, model: Transformer, batch_size: int, device, dtype) -> KVCache:
        c = model.config
        shape = (batch_size, c.heads, c.context, c.width // c.heads)
        k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(c.layers)]
        v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(c.layers)]
        return cls(k, v, torch.zeros(batch_size, c.context, dtype=torch.long, device=device), 0)

    def map(self, fn) -> KVCache:
        out = KVCache([fn(t) for t in self.k], [fn(t) for t in self.v], self.tokens, self.pos)
        out.plan = self.plan
        return out


def sinusoidal_positions(n: int, width: int) -> Tensor:
    """PE[t, 2i] = sin(t / 10000^(2i/d)), PE[t, 2i+1] = cos(t / 10000^(2i/d)) (Vaswani et al. 2017)."""
    pos = torch.arange(n, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, width, 2, dtype=torch.float32) * (-math.log(10000.0) / width))
    pe = torch.zeros(n, width)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)[:, : width // 2]
    return pe


EXPLICIT_CPU_ATTENTION = True  # see SelfAttention.forward


def dropped(drop: nn.Dropout, x: Tensor) -> Tensor:
    """``drop(x)`` while training with p > 0, else ``x`` itself (what an idle dropout returns, without
    the call: nine calls per generated token cost about a fifth of a small model's decode step)."""
    return drop(x) if drop.training and drop.p > 0 else x


class SelfAttention(nn.Module):
    def __init__(self, c, causal: bool = True):
        super().__init__()
        self.heads, self.causal, self.dropout = c.heads, causal, c.dropout
        self.qkv = nn.Linear(c.width, 3 * c.width, bias=c.bias)
        self.proj = nn.Linear(c.width, c.width, bias=c.bias)
        self.resid_drop = nn.Dropout(c.dropout)

    def forward(self, x: Tensor, cache: KVCache | None, layer: int, need_weights: bool):
        B, T, C = x.shape
        if layer < 0:
            return self._last_query(x), None
        q, k, v = (t.view(B, T, self.heads, C // self.heads).transpose(1, 2) for t in self.qkv(x).split(C, 2))
        mask, is_causal = None, self.causal
        if cache is not None:
            pos = cache.pos
            cache.k[layer][:, :, pos : pos + T] = k
            cache.v[layer][:, :, pos : pos + T] = v
            k, v = cache.k[layer][:, :, : pos + T], cache.v[layer][:, :, : pos + T]
            if pos > 0:  # queries at pos..pos+T-1 see keys 0..their own position
                is_causal = False
                if T > 1:
                    mask = torch.arange(pos + T, device=x.device)[None, :] <= (pos + torch.arange(T, device=x.device))[:, None]
        weights = None
        if (not need_weights and cache is None and is_causal and x.device.type == "cpu" and EXPLICIT_CPU_ATTENTION
                and not (self.training and self.dropout > 0) and not torch.is_inference_mode_enabled()):
            # CPU, causal, full window: softmax(q k^T / sqrt(d) + M) v written out. torch's math SDPA
            # computes the same through a "safe" softmax whose all()/where() over the scores cost ~10%
            # of the small Transformer's training step (torch.profiler, 1 thread); no row of a causal
            # mask is all -inf, so the plain softmax is exact here. Under inference mode (generation)
            # the fused CPU kernel is faster: 39 against 53 us for a 64-token window of 4 heads.
            # M + s q k^T in one op: its backward is one multiply (a masked_fill costs a slow pass each way)
            scores = q @ k.transpose(-2, -1)
            scores = torch.add(self._causal_bias(T, x.device, scores.dtype), scores, alpha=1.0 / math.sqrt(q.size(-1)))
            y = scores.softmax(-1).to(v.dtype) @ v
            y = y.transpose(1, 2).contiguous().view(B, T, C)
            return dropped(self.resid_drop, self.proj(y)), None
        if need_weights:
            scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.size(-1))
            if is_causal:
                mask = torch.ones(T, k.size(2), dtype=torch.bool, device=x.device).tril(k.size(2) - T)
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))
            weights = scores.softmax(-1)
            y = F.dropout(weights, self.dropout, self.training) @ v
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal,
                                               dropout_p=self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return dropped(self.resid_drop, self.proj(y)), weights


    def _last_query(self, x: Tensor) -> Tensor:
        """The attention output of the last position only (B, 1, C): its query against every key and
        value of ``x`` (the last position sees them all; no mask). For ``Transformer.next_logits``."""
        B, T, C = x.shape
        w, b = self.qkv.weight, self.qkv.bias
        q = F.linear(x[:, -1:], w[:C], None if b is None else b[:C]).view(B, 1, self.heads, C // self.heads).transpose(1, 2)
        k, v = (t.view(B, T, self.heads, C // self.heads).transpose(1, 2)
                for t in F.linear(x, w[C:], None if b is None else b[C:]).split(C, 2))
        y = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, 1, C)
        return dropped(self.resid_drop, self.proj(y))

    def _causal_bias(self, T: int, device, dtype) -> Tensor:
        """(T, T) additive mask M: -inf above the diagonal (the future), 0 elsewhere; cached."""
        bias = getattr(self, "_bias", None)
        if bias is None or bias.size(0) != T or bias.device != torch.device(device) or bias.dtype != dtype:
            bias = torch.full((T, T), float("-inf"), device=device, dtype=dtype).triu(1)
            self._bias = bias
        return bias


class Block(nn.Module):
    """Pre-LN residual block: x + Attn(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, c, causal: bool = True):
        super().__init__()
        self.ln1 = nn.LayerNorm(c.width, bias=c.bias)
        self.attn = SelfAttention(c, causal)
        self.ln2 = nn.LayerNorm(c.width, bias=c.bias)
        self.mlp = nn.Sequential(
            nn.Linear(c.width, c.mlp_ratio * c.width, bias=c.bias), nn.GELU(),
            nn.Linear(c.mlp_ratio * c.width, c.width, bias=c.bias), nn.Dropout(c.dropout),
        )

    def forward(self, x: Tensor, cache: KVCache | None = None, layer: int = 0, need_weights: bool = False):
        """``layer`` < 0: the last position's output only, (B, 1, C) (``Transformer.next_logits``)."""
        a, w = self.attn(self.ln1(x), cache, layer, need_weights)
        x = (x[:, -1:] if layer < 0 else x) + a
        up, act, down, drop = self.mlp
        return x + dropped(drop, down(act(up(self.ln2(x))))), w

    def step_weights(self) -> tuple:
        """The tensors ``decode_block`` reads, looked up once per generation (module attribute lookups
        are a tenth of a decode step)."""
        a, (up, act, down, _) = self.attn, self.mlp
        return (self.ln1.weight, self.ln1.bias, self.ln1.eps, a.qkv.weight, a.qkv.bias, a.proj.weight, a.proj.bias,
                self.ln2.weight, self.ln2.bias, self.ln2.eps, up.weight, up.bias, act.approximate, down.weight, down.bias)


def decode_block(x: Tensor, w: tuple, k: Tensor, v: Tensor, pos: int, heads: int) -> Tensor:
    """``Block.forward`` in eval mode for one new position per sequence, x (B, C), whose keys and values
    go to row ``pos`` of the cache (B, heads, context, head_dim) ``k`` and ``v``: the same equations in
    fewer operations (a decode step costs per-operation overhead, not FLOPs)."""
    ln1w, ln1b, eps1, qkvw, qkvb, projw, projb, ln2w, ln2b, eps2, upw, upb, approx, downw, downb = w
    B, C = x.shape
    qkv = F.linear(F.layer_norm(x, (C,), ln1w, ln1b, eps1), qkvw, qkvb).view(B, 3, heads, 1, C // heads)
    k[:, :, pos : pos + 1] = qkv[:, 1]
    v[:, :, pos : pos + 1] = qkv[:, 2]
    y = F.scaled_dot_product_attention(qkv[:, 0], k[:, :, : pos + 1], v[:, :, : pos + 1])
    x = x + F.linear(y.view(B, C), projw, projb)
    h = F.gelu(F.linear(F.layer_norm(x, (C,), ln2w, ln2b, eps2), upw, upb), approximate=approx)
    return x + F.linear(h, downw, downb)


def init_gpt_weights(model: nn.Module, layers: int) -> None:
    """GPT-2 initialisation: N(0, 0.02), residual projections scaled by 1/sqrt(2 * layers)."""
    for name, p in model.named_parameters():
        if p.dim() >= 2:
            std = 0.02 / math.sqrt(2 * layers) if name.endswith(("attn.proj.weight", "mlp.2.weight")) else 0.02
            nn.init.normal_(p, 0.0, std)
        elif name.endswith("bias") and "ln" not in name:
            nn.init.zeros_(p)


class Transformer(SeqModel):
    arch = "transformer"

    def __init__(self, config):
        super().__init__(config)
        c = config
        self.max_context = c.context
        self.tok = nn.Embedding(c.vocab_size, c.width)
        if c.positions == "learned":
            self.pos = nn.Embedding(c.context, c.width)
        else:
            self.register_buffer("pos_table", sinusoidal_positions(c.context, c.width), persistent=False)
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(Block(c) for _ in range(c.layers))
        self.ln_f = nn.LayerNorm(c.width, bias=c.bias)
        self.head = nn.Linear(c.width, c.vocab_size, bias=False)
        init_gpt_weights(self, c.layers)
        if c.tie_weights:
            self.head.weight = self.tok.weight
        self.capture_attention = False
        self.last_attention: list[Tensor] = []

    def init_state(self, batch_size: int, device: torch.device | str = "cpu") -> KVCache:
        return KVCache.empty(self, batch_size, device, self.tok.weight.dtype)

    def reset_state(self, state, mask):
        return state  # a cache is rebuilt per sequence; nothing is carried across batches

    def _positions(self, start: int, T: int, device) -> Tensor:
        if self.config.positions == "learned":  # rows start..start+T-1 of the table, as a view
            return self.pos.weight[start : start + T]
        return self.pos_table[start : start + T]

    def _blocks(self, idx: Tensor, cache: KVCache | None, need_weights: bool) -> Tensor:
        start = cache.pos if cache is not None else 0
        x = dropped(self.drop, self.tok(idx) + self._positions(start, idx.size(1), idx.device))
        maps = []
        for i, block in enumerate(self.blocks):
            x, w = block(x, cache, i, need_weights)
            maps.append(w)
        if need_weights:
            self.last_attention = maps
        if cache is not None:
            cache.tokens[:, start : start + idx.size(1)] = idx
            cache.pos = start + idx.size(1)
        return self.head(self.ln_f(x))

    def _one_step(self, idx: Tensor, cache: KVCache) -> Tensor:
        """Logits (B, V) after one new token per sequence, idx (B,), at ``cache.pos`` (eval mode): the
        cached decode step, compiled (``engine.models.native``) where it can be, else in torch operations
        with no module calls and no (B, 1, ...) reshapes."""
        pos, plan = cache.pos, cache.plan
        if plan is None:
            from engine.models.native import decode_step

            pos_table = self.pos.weight if self.config.positions == "learned" else self.pos_table
            plan = cache.plan = (self.tok.weight, pos_table, [b.step_weights() for b in self.blocks],
                                 self.ln_f.weight, self.ln_f.bias, self.ln_f.eps, self.head.weight, self.config.heads,
                                 decode_step(self))
        tok, pos_table, blocks, lnw, lnb, eps, head, heads, native = plan
        logits = native(idx, cache) if native is not None and not torch.is_grad_enabled() else None
        if logits is None:
            x = F.embedding(idx, tok) + pos_table[pos]
            for w, k, v in zip(blocks, cache.k, cache.v):
                x = decode_block(x, w, k, v, pos, heads)
            logits = F.linear(F.layer_norm(x, (x.size(1),), lnw, lnb, eps), head)
        cache.tokens[:, pos] = idx
        cache.pos = pos + 1
        return logits

    def next_logits(self, idx: Tensor) -> Tensor:
        """Logits (B, V) of the token after ``idx`` (B, T <= context), from scratch and without a cache:
        ``forward(idx)[0][:, -1]`` with the last block and the head computed for the last position only
        (the exact decoding past the context recomputes its window with this)."""
        x = dropped(self.drop, self.tok(idx) + self._positions(0, idx.size(1), idx.device))
        for block in self.blocks[:-1]:
            x, _ = block(x)
        x, _ = self.blocks[-1](x, None, -1)
        return self.head(self.ln_f(x[:, 0]))

    def forward(self, idx: Tensor, targets: Tensor | None = None, state: KVCache | None = None,
                use_cache: bool = False, need_weights: bool = False):
        need_weights = need_weights or self.capture_attention
        ctx = self.config.context
        if state is None and not use_cache:
            if idx.size(1) > ctx:
                raise ConfigError(f"{idx.size(1)} tokens exceed the transformer's context of {ctx}; "
                                  "pass a shorter window or generate with a cache")
            logits = self._blocks(idx, None, need_weights)
            return logits, lm_loss(logits, targets), None
        if (state is not None and idx.size(1) == 1 and state.pos < ctx and not need_weights and not self.training
                and targets is None):  # the decode step
            return self._one_step(idx[:, 0], state)[:, None], None, state
        cache = state if state is not None else self.init_state(idx.size(0), idx.device)
        chunk, keep = ctx - ctx // 2, ctx // 2
        outs = []
        for piece in idx.split(chunk, 1):
            if cache.pos + piece.size(1) > ctx:  # window full: re-encode the last `keep` tokens
                tokens = cache.tokens[:, cache.pos - keep : cache.pos].clone()
                cache.pos = 0
                if keep:
                    self._blocks(tokens, cache, False)
            outs.append(self._blocks(piece, cache, need_weights))
        logits = torch.cat(outs, 1)
        return logits, lm_loss(logits, targets), cache
