"""Cross-entropy over bf16 logits without a float32 copy of them (the CPU fast path for big vocabularies).

    loss = (1/|M|) sum_{i in M} (logsumexp_j z_ij - z_{i,y_i}),   M = {i : y_i != -100}
    dloss/dz_ij = (softmax(z_i)_j - [j = y_i]) / |M|   for i in M, else 0

Under bf16 autocast the decoder's logits are bf16; ``F.cross_entropy(logits.float(), y)`` then writes
and re-reads a float32 copy of all N x V logits several times (cast, log-softmax, its gradient, the cast
back), which dominates a word-level step (V = 33k). Here the float32 work happens a block of rows at a
time, so the logits are read once forward and once backward and the gradient is written once, in bf16.
The loss is accumulated in float32: the same value as ``F.cross_entropy(logits.float(), y)`` to float
rounding (tests/test_fused_ce.py), unlike ``F.cross_entropy`` on bf16 logits, which rounds the loss
itself to bf16 (0.8% off at loss 15).
"""

from __future__ import annotations

import torch
from torch import Tensor

BLOCK_VALUES = 1 << 21  # floats per block (8 MB: stays in a server CPU's L3 cache); V = 33k -> 63 rows


def _rows(logits: Tensor) -> int:
    return max(1, BLOCK_VALUES // max(1, logits.size(1)))


class _BlockCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: Tensor, targets: Tensor) -> Tensor:  # type: ignore[override]
        valid = targets != -100
        safe = torch.where(valid, targets, torch.zeros_like(targets))
        lse = torch.empty(logits.size(0), dtype=torch.float32, device=logits.device)
        rows = _rows(logits)
        for s in range(0, logits.size(0), rows):
            lse[s : s + rows] = torch.logsumexp(logits[s : s + rows].float(), dim=-1)
        picked = logits.gather(1, safe[:, None]).squeeze(1).float()
        count = valid.sum()
        ctx.save_for_backward(logits, safe, valid, lse, count)
        return ((lse - picked) * valid).sum() / count

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        logits, safe, valid, lse, count = ctx.saved_tensors
        scale = valid.float() * (grad / count)
        out = torch.empty_like(logits)
        rows = _rows(logits)
        for s in range(0, logits.size(0), rows):
            e = min(s + rows, logits.size(0))
            p = torch.exp(logits[s:e].float() - lse[s:e, None])
            p[torch.arange(e - s, device=p.device), safe[s:e]] -= 1.0
            out[s:e] = p.mul_(scale[s:e, None])
        return out, None


def bf16_cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy (float32) of (N, V) bf16 logits against (N,) targets, -100 ignored."""
    return _BlockCrossEntropy.apply(logits, targets)
