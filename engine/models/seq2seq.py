"""Encoder-decoder (Sutskever, Vinyals & Le 2014) with optional attention (Bahdanau et al. 2015).

    h_bar_1..S = Enc(x_1..S)                 LSTM/GRU, uni- or bidirectional ([fwd; bwd] halves)
    s_0 = final encoder state                the "thought vector" that starts the decoder
    c_t = sum_i a_ti h_bar_i,  a_t = softmax_i(score(s_{t-1}, h_bar_i))      (attention)
          additive: v^T tanh(W_1 s + W_2 h_bar)   dot: s^T h_bar   bilinear: s^T W h_bar = (W h_bar) . s
          positions past a source's length get a_ti = 0; an empty source attends to nothing (c_t = 0)
    s_t = Dec([E y_{t-1}; c_t], s_{t-1})
    P(y_t | y_<t, x) = softmax(W_o [s_t; c_t] + b)     (without attention: softmax(W_o s_t + b))

Token convention: the model's vocabulary is the tokenizer's plus three specials, its last three ids:
``pad, bos, eos = Seq2Seq.special_ids(vocab_size)`` = (V-3, V-2, V-1). Sources are padded with ``pad``;
the trainer passes ``(src, tgt_in, targets)`` with ``tgt_in = [bos] + y`` and ``targets = y + [eos]``,
pad positions of ``targets`` set to -100. Training is teacher-forced; ``engine.generation.decoders.greedy_decode`` generates.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from engine.models.base import SeqModel, lm_loss


@dataclass
class Memory:
    """What the decoder attends to: encoder outputs (B, S, W), their valid mask, precomputed keys."""

    outputs: Tensor
    mask: Tensor
    keys: Tensor | None


class Seq2Seq(SeqModel):
    arch = "seq2seq"
    task = "seq2seq"

    @staticmethod
    def special_ids(vocab_size: int) -> tuple[int, int, int]:
        """(pad, bos, eos): the last three ids of the model's vocabulary."""
        return vocab_size - 3, vocab_size - 2, vocab_size - 1

    def __init__(self, config):
        super().__init__(config)
        c = config
        self.pad_id, self.bos_id, self.eos_id = self.special_ids(c.vocab_size)
        rnn = nn.LSTM if c.cell == "lstm" else nn.GRU
        dirs = 2 if c.bidirectional else 1
        drop_between = c.dropout if c.layers > 1 else 0.0
        self.embed = nn.Embedding(c.vocab_size, c.embed)
        self.encoder = rnn(c.embed, c.width // dirs, c.layers, batch_first=True,
                           bidirectional=c.bidirectional, dropout=drop_between)
        self.attn = c.attention != "none"
        self.decoder = rnn(c.embed + (c.width if self.attn else 0), c.width, c.layers, batch_first=True,
                           dropout=drop_between)
        if c.attention == "additive":
            self.att_s = nn.Linear(c.width, c.width, bias=False)
            self.att_h = nn.Linear(c.width, c.width, bias=False)
            self.att_v = nn.Parameter(torch.randn(c.width) / c.width**0.5)
        elif c.attention == "bilinear":
            self.att_w = nn.Linear(c.width, c.width, bias=False)
        self.drop = nn.Dropout(c.dropout)
        self.out = nn.Linear(2 * c.width if self.attn else c.width, c.vocab_size)

    # -- encoder -------------------------------------------------------------------------------------
    def encode(self, src: Tensor, src_mask: Tensor | None = None):
        """-> (Memory, initial decoder state). ``src_mask`` (B, S) True at real tokens (default: != pad)."""
        c = self.config
        mask = src != self.pad_id if src_mask is None else src_mask.bool()
        lengths = mask.sum(1).clamp(min=1)
        packed = pack_padded_sequence(self.drop(self.embed(src)), lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, state = self.encoder(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=src.size(1))
        if c.bidirectional:  # (layers*2, B, W/2) -> (layers, B, W): [forward; backward] per layer
            def merge(t: Tensor) -> Tensor:
                return t.view(c.layers, 2, t.size(1), t.size(2)).transpose(1, 2).reshape(c.layers, t.size(1), -1)

            state = tuple(merge(s) for s in state) if c.cell == "lstm" else merge(state)
        keys = {"additive": "att_h", "bilinear": "att_w", "dot": None}.get(c.attention)
        memory = Memory(out, mask, getattr(self, keys)(out) if keys else out if self.attn else None)
        return memory, state

    # -- decoder -------------------------------------------------------------------------------------
    def attend(self, s: Tensor, memory: Memory) -> tuple[Tensor, Tensor]:
        """Context vector and weights for decoder states ``s`` (B, W) -> ((B, W), (B, S))."""
        if self.config.attention == "additive":
            scores = torch.tanh(self.att_s(s)[:, None, :] + memory.keys) @ self.att_v
        else:  # dot: s . h_bar;  bilinear: (W h_bar) . s
            scores = (memory.keys @ s[:, :, None]).squeeze(-1)
        # The lowest finite score, not -inf: a source with no real token (all padding) would be a
        # softmax over all -inf (NaN); its weights become 0 instead, the context vector 0.
        scores = scores.masked_fill(~memory.mask, torch.finfo(scores.dtype).min)
        weights = scores.softmax(-1) * memory.mask
        return (weights[:, None, :] @ memory.outputs).squeeze(1), weights

    def _top(self, state) -> Tensor:
        return (state[0] if self.config.cell == "lstm" else state)[-1]

    def decode_step(self, prev_tokens: Tensor, dec_state, memory: Memory):
        """One decoder step: ``prev_tokens`` (B,) -> (logits (B, V), new state, attention (B, S) or None)."""
        logits, dec_state, weights = self._step(self.drop(self.embed(prev_tokens)), dec_state, memory)
        return logits, dec_state, weights

    def _step(self, emb: Tensor, dec_state, memory: Memory):
        weights = None
        if self.attn:
            ctx, weights = self.attend(self._top(dec_state), memory)
            emb = torch.cat([emb, ctx], -1)
        y, dec_state = self.decoder(emb[:, None, :], dec_state)
        feat = torch.cat([y[:, 0], ctx], -1) if self.attn else y[:, 0]
        return self.out(self.drop(feat)), dec_state, weights

    def forward(self, src: Tensor, tgt_in: Tensor, targets: Tensor | None = None, **_: object):
        """Teacher-forced pass -> (logits (B, T, V), loss, attention (B, T, S) or None)."""
        memory, state = self.encode(src)
        emb = self.drop(self.embed(tgt_in))
        if not self.attn:  # no attention: the whole target runs through the fused decoder
            y, _ = self.decoder(emb, state)
            logits = self.out(self.drop(y))
            return logits, lm_loss(logits, targets), None
        outs, maps = [], []
        for t in range(tgt_in.size(1)):
            logits_t, state, w = self._step(emb[:, t], state, memory)
            outs.append(logits_t)
            maps.append(w)
        logits = torch.stack(outs, 1)
        return logits, lm_loss(logits, targets), torch.stack(maps, 1)


def strip_specials(ids: list[int], vocab_size: int) -> list[int]:
    """Tokens up to (not including) eos, without pad/bos: what to decode into text."""
    pad, bos, eos = Seq2Seq.special_ids(vocab_size)
    result = []
    for i in ids:
        if i == eos:
            break
        if i not in (pad, bos):
            result.append(i)
    return result

