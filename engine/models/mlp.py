"""Fixed-window neural LM (Bengio, Ducharme, Vincent & Jauvin 2003).

    e = [E[w_{t-n+1}]; ...; E[w_t]]               concatenated embeddings of the last n tokens
    h = tanh(H e + d)                             (``layers`` hidden layers of ``width`` units)
    P(w_{t+1} | w_{t-n+1..t}) = softmax(U h + b)

``n`` is ``config.context``. Window slots before the start of a sequence hold a dedicated pad index
(``vocab_size``, an extra embedding row), so every position has a well-defined window.
State: the last n-1 tokens (B, n-1), so generation continues the window at O(1) per token.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from engine.models.base import SeqModel, lm_loss


class MLPLM(SeqModel):
    arch = "mlp"

    def __init__(self, config):
        super().__init__(config)
        c = config
        self.pad_id = c.vocab_size
        self.embed = nn.Embedding(c.vocab_size + 1, c.embed)
        layers: list[nn.Module] = []
        width_in = c.context * c.embed
        for _ in range(c.layers):
            layers += [nn.Linear(width_in, c.width), nn.Tanh(), nn.Dropout(c.dropout)]
            width_in = c.width
        self.hidden = nn.Sequential(*layers)
        self.head = nn.Linear(width_in, c.vocab_size)

    def init_state(self, batch_size: int, device: torch.device | str = "cpu") -> Tensor:
        return torch.full((batch_size, self.config.context - 1), self.pad_id, dtype=torch.long, device=device)

    def reset_state(self, state, mask):
        if state is None:
            return None
        return torch.where(mask.bool().to(state.device)[:, None], torch.full_like(state, self.pad_id), state)

    def forward(self, idx: Tensor, targets: Tensor | None = None, state: Tensor | None = None, use_cache: bool = False):
        n = self.config.context
        if state is None:
            state = self.init_state(idx.size(0), idx.device)
        seq = torch.cat([state, idx], 1)  # (B, n-1+T)
        windows = seq.unfold(1, n, 1)  # (B, T, n): the last n tokens up to each position
        e = self.embed(windows).flatten(2)  # (B, T, n*embed)
        logits = self.head(self.hidden(e))
        return logits, lm_loss(logits, targets), seq[:, seq.size(1) - (n - 1):]
