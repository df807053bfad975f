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


@pytest.mark.parametrize("bias", [True, False])
def test_linear_cross_entropy_equals_head_then_cross_entropy(bias: bool) -> None:
    """The fused output layer + loss: F.cross_entropy(x W^T + b)'s loss and gradients (x, W, b) in
    fp32 to float rounding (one (N, V) buffer), -100 ignored."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(300, 64, generator=gen, requires_grad=True)
    w = (torch.randn(3500, 64, generator=gen) * 0.1).requires_grad_()
    b = torch.randn(3500, generator=gen).requires_grad_() if bias else None
    y = torch.randint(0, 3500, (300,), generator=gen)
    y[::7] = -100
    inputs = (x, w) + ((b,) if bias else ())
    ref = F.cross_entropy(F.linear(x, w, b), y)
    g_ref = torch.autograd.grad(ref * 2.0, inputs)
    got = fused_ce.linear_cross_entropy(x, w, b, y)
    g_got = torch.autograd.grad(got * 2.0, inputs)
    assert got.item() == pytest.approx(ref.item(), rel=1e-6)
    for a, c in zip(g_ref, g_got):
        assert torch.allclose(a, c, atol=1e-7, rtol=1e-4)


@pytest.mark.parametrize("bias", [True, False])
def test_bf16_linear_cross_entropy_is_as_exact_as_autocast(bias: bool) -> None:
    """Under bf16 autocast: the loss is autocast's own F.cross_entropy(head(x).float()) (float32 over
    the same bf16 logits), and the gradients are no further (within a fifth) from the float64 gradients
    of the bf16-rounded inputs than autocast's (relative norm error); ignored rows give no gradient."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(300, 64, generator=gen, requires_grad=True)
    w = (torch.randn(3500, 64, generator=gen) * 0.1).requires_grad_()
    b = (torch.randn(3500, generator=gen) * 0.1).requires_grad_() if bias else None
    y = torch.randint(0, 3500, (300,), generator=gen)
    y[::7] = -100
    inputs = tuple(t for t in (x, w, b) if t is not None)
    exact = tuple(t.detach().bfloat16().double().requires_grad_() for t in inputs)
    truth_loss = F.cross_entropy(F.linear(exact[0], exact[1], exact[2] if bias else None), y)
    truth = torch.autograd.grad(truth_loss, exact)

    def errors(fn):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = fn(x, w, b, y)
        grads = torch.autograd.grad(loss, inputs)
        return loss, grads, [((g.double() - t).norm() / t.norm()).item() for g, t in zip(grads, truth)]

    got, grads, err = errors(fused_ce.linear_cross_entropy)
    ref, _, err_autocast = errors(lambda x, w, b, y: F.cross_entropy(F.linear(x, w, b).float(), y))
    assert got.dtype == torch.float32 and got.item() == pytest.approx(ref.item(), rel=1e-6)
    assert got.item() == pytest.approx(truth_loss.item(), rel=1e-4)
    for e, e_ref in zip(err, err_autocast):
        assert e < 1.2 * e_ref + 1e-6
    assert grads[0][::7].abs().max() == 0  # the ignored rows


@pytest.mark.parametrize("bf16", [False, True])
def test_linear_cross_entropy_buffer_reuse_keeps_each_graph_its_own(bf16: bool) -> None:
    """Both paths reuse the (N, V) buffer a backward gave back: after a first step, two forwards before
    either backward still give the gradients of the same inputs taken one at a time."""
    gen = torch.Generator().manual_seed(1)
    w = (torch.randn(900, 16, generator=gen) * 0.1).requires_grad_()
    xs = [torch.randn(40, 16, generator=gen, requires_grad=True) for _ in range(3)]
    ys = [torch.randint(0, 900, (40,), generator=gen) for _ in range(3)]
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        if bf16:  # one at a time, each backward right after its forward
            refs = [torch.autograd.grad(fused_ce.linear_cross_entropy(x, w, None, y), (x, w)) for x, y in zip(xs, ys)]
        else:
            refs = [torch.autograd.grad(F.cross_entropy(F.linear(x, w), y), (x, w)) for x, y in zip(xs, ys)]
        got = [torch.autograd.grad(fused_ce.linear_cross_entropy(xs[0], w, None, ys[0]), (xs[0], w))]
        losses = [fused_ce.linear_cross_entropy(x, w, None, y) for x, y in zip(xs[1:], ys[1:])]
    got += [torch.autograd.grad(loss, (x, w)) for loss, x in zip(losses, xs[1:])]
    for r, g in zip(refs, got):
        for a, c in zip(r, g):
            assert torch.allclose(a, c, atol=1e-7, rtol=1e-4)


def test_recurrent_lm_trains_through_the_fused_head_on_big_vocabularies() -> None:
    """Training mode + targets + V >= FUSED_HEAD_MIN_VOCAB: same loss and gradients as the plain
    head, logits not stored (None); evaluation and generation still get logits."""
    from engine.models.registry import build_model, make_config

    torch.manual_seed(0)
    model = build_model("lstm", make_config("lstm", fused_ce.FUSED_HEAD_MIN_VOCAB + 5, layers=1, width=16, embed=16, dropout=0.0))
    x = torch.randint(0, 100, (2, 7))
    y = torch.randint(0, fused_ce.FUSED_HEAD_MIN_VOCAB + 5, (2, 7))
    model.train()
    logits, loss, _ = model(x, y)
    assert logits is None
    grads = torch.autograd.grad(loss, list(model.parameters()))
    model.eval()
    logits, ref, _ = model(x, y)
    assert logits.shape == (2, 7, fused_ce.FUSED_HEAD_MIN_VOCAB + 5)
    assert loss.item() == pytest.approx(ref.item(), rel=1e-6)
    model.train()
    with torch.no_grad():
        assert model(x, y)[0] is not None  # no grad: nothing to fuse for
    ref_loss = F.cross_entropy(model.head(model._run(x, None, False)[0]).flatten(0, 1), y.flatten())
    for g, r in zip(grads, torch.autograd.grad(ref_loss, list(model.parameters()))):
        assert torch.allclose(g, r, atol=1e-7, rtol=1e-4)
