"""The blockwise bf16 cross-entropy gives F.cross_entropy's float32 loss and gradient on bf16 logits."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from engine.models import fused_ce
from engine.models.base import lm_loss


@pytest.mark.parametrize("vocab,rows", [(65, 300), (5000, 130)])
def test_matches_float32_cross_entropy_with_ignored_targets(vocab: int, rows: int, monkeypatch) -> None:
    monkeypatch.setattr(fused_ce, "BLOCK_VALUES", vocab * 16)  # several blocks, the last one partial
    gen = torch.Generator().manual_seed(0)
    z = (torch.randn(rows, vocab, generator=gen) * 3).bfloat16().requires_grad_()
    y = torch.randint(0, vocab, (rows,), generator=gen)
    y[::5] = -100
    ref = F.cross_entropy(z.float(), y, ignore_index=-100)
    (g_ref,) = torch.autograd.grad(ref, z)
    got = fused_ce.bf16_cross_entropy(z, y)
    (g_got,) = torch.autograd.grad(got * 2.0, z)  # upstream gradient is applied
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(ref.item(), rel=1e-6)
    assert torch.allclose(g_got.float(), 2.0 * g_ref.float(), atol=1e-6, rtol=1e-2)
    assert g_got[::5].abs().max() == 0  # ignored rows get no gradient


def test_lm_loss_takes_the_block_path_for_bf16_only() -> None:
    z = torch.randn(2, 3, 11)
    y = torch.randint(0, 11, (2, 3))
    assert lm_loss(z, y).item() == pytest.approx(F.cross_entropy(z.reshape(-1, 11), y.reshape(-1)).item())
    assert lm_loss(z.bfloat16(), y).item() == pytest.approx(F.cross_entropy(z.bfloat16().float().reshape(-1, 11), y.reshape(-1)).item(), rel=1e-6)
