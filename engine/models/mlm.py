"""Masked language model (BERT-style; Devlin et al. 2019): predict hidden tokens from both sides.

    x~ = mask(x): choose 15% of positions M; of those 80% -> [MASK], 10% -> a random token, 10% unchanged
    H = Enc(x~)                      bidirectional: a Transformer encoder (no causal mask) or a Bi-LSTM
    P(x_t | x~) = softmax(E . LN(GELU(W H_t)) + b)   (Transformer head tied to the embedding)
    L = -(1/|M|) sum_{t in M} log P(x_t | x~)

The model's vocabulary is the tokenizer's plus one: ``mask_token_id = vocab_size - 1`` is [MASK]. The
trainer draws ``(inputs, targets) = model.masking(idx, generator)`` (targets -100 where not masked) and
calls ``forward(inputs, targets)``. Generation is fill-in-the-blanks: ``fill_mask(idx, positions)``.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
from torch import Tensor, nn

from engine.errors import ConfigError
from engine.models.base import SeqModel, lm_loss
from engine.models.transformer import Block, init_gpt_weights


def masking(idx: Tensor, vocab_size: int, mask_prob: float = 0.15,
            generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """BERT's 80/10/10 rule over ``idx`` (B, T) -> (inputs, targets); at least one masked slot per row.

    ``vocab_size`` includes [MASK] (its last id); random replacements never draw [MASK]."""
    mask_id = vocab_size - 1
    gen_device = generator.device if generator is not None else idx.device

    def rand(*shape: int) -> Tensor:
        return torch.rand(*shape, generator=generator, device=gen_device).to(idx.device)

    chosen = rand(*idx.shape) < mask_prob
    empty = ~chosen.any(1)
    if empty.any():  # every row contributes at least one prediction
        forced = (rand(idx.size(0)) * idx.size(1)).long().clamp(max=idx.size(1) - 1)
        chosen[empty, forced[empty]] = True
    targets = torch.where(chosen, idx, torch.full_like(idx, -100))
    roll = rand(*idx.shape)
    random_tokens = (rand(*idx.shape) * (vocab_size - 1)).long().clamp(max=vocab_size - 2)
    inputs = torch.where(chosen & (roll < 0.8), torch.full_like(idx, mask_id), idx)
    inputs = torch.where(chosen & (roll >= 0.8) & (roll < 0.9), random_tokens, inputs)
    return inputs, targets


class MaskedLM(SeqModel):
    arch = "mlm"
    task = "mlm"

    def __init__(self, config):
        super().__init__(config)
        c = config
        self.max_context = c.context
        self.mask_token_id = c.vocab_size - 1
        w = c.width
        self.embed = nn.Embedding(c.vocab_size, w)
        self.drop = nn.Dropout(c.dropout)
        if c.encoder == "transformer":
            self.pos = nn.Embedding(c.context, w)
            bc = SimpleNamespace(width=w, heads=c.heads, dropout=c.dropout, bias=True, mlp_ratio=c.mlp_ratio)
            self.blocks = nn.ModuleList(Block(bc, causal=False) for _ in range(c.layers))
            self.ln_f = nn.LayerNorm(w)
            self.transform = nn.Sequential(nn.Linear(w, w), nn.GELU(), nn.LayerNorm(w))
            self.out_bias = nn.Parameter(torch.zeros(c.vocab_size))
            init_gpt_weights(self, c.layers)
        else:
            self.lstm = nn.LSTM(w, w, c.layers, batch_first=True, bidirectional=True,
                                dropout=c.dropout if c.layers > 1 else 0.0)
            self.head = nn.Linear(2 * w, c.vocab_size)

    def forward(self, idx: Tensor, targets: Tensor | None = None, state=None, use_cache: bool = False):
        c = self.config
        if c.encoder == "transformer":
            if idx.size(1) > c.context:
                raise ConfigError(f"{idx.size(1)} tokens exceed the masked LM's context of {c.context}; use a shorter text")
            x = self.drop(self.embed(idx) + self.pos(torch.arange(idx.size(1), device=idx.device)))
            for block in self.blocks:
                x, _ = block(x)
            logits = self.transform(self.ln_f(x)) @ self.embed.weight.t() + self.out_bias
        else:
            h, _ = self.lstm(self.drop(self.embed(idx)))
            logits = self.head(self.drop(h))
        return logits, lm_loss(logits, targets), None

    def masking(self, idx: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """(inputs, targets) for one training batch, with the config's mask probability."""
        return masking(idx, self.config.vocab_size, self.config.mask_prob, generator)

    @torch.no_grad()
    def fill_mask(self, idx: Tensor, mask_positions: Tensor, temperature: float = 0.0,
                  generator: torch.Generator | None = None) -> Tensor:
        """Fill the slots where ``mask_positions`` (B, T) bool is True; greedy when temperature is 0.

        Slots are filled in one pass (each sees the others as [MASK]); [MASK] itself is never produced."""
        inputs = torch.where(mask_positions, torch.full_like(idx, self.mask_token_id), idx)
        logits, _, _ = self(inputs)
        logits[..., self.mask_token_id] = float("-inf")
        if temperature <= 0:
            choice = logits.argmax(-1)
        else:
            probs = (logits / temperature).softmax(-1).flatten(0, 1)
            choice = torch.multinomial(probs, 1, generator=generator).view(idx.shape)
        return torch.where(mask_positions, choice, idx)
