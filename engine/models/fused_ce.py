"""Cross-entropy for big vocabularies without the memory traffic of (N, V) logits (the CPU fast path).

``bf16_cross_entropy``: over given bf16 logits, without a float32 copy of them.
``linear_cross_entropy``: the output layer and the loss in one (the recurrent word LMs' training path,
vocabularies >= ``FUSED_HEAD_MIN_VOCAB``): in float32 one (N, V) buffer turned in place from logits
into log-probabilities and then into the gradient; in bf16 one (N, V) bf16 buffer of logits, float32
row statistics, turned in place into the gradient.

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


# ------------------------------------------------------------------ output layer + loss, fused
FORWARD_COLUMNS = 512  # float32 logits per matmul: 1.3x one (N, V) matmul (700 x 200 x 33k, 1-2 threads)
FUSED_HEAD_MIN_VOCAB = 8192  # below this the (N, V) logits are small and one matmul is faster


_spare: list[Tensor] = []  # the last (N, V) buffer _LinearSoftmaxCrossEntropy gave back


def _buffer(n: int, v: int, like: Tensor) -> Tensor:
    """An (n, v) buffer of ``like``'s dtype: the one the previous backward gave back when it fits (a fresh
    90 MB allocation is mapped anew each step, and its page faults cost as much as the softmax)."""
    try:
        spare = _spare.pop()  # atomic: two threads (training, an analysis) never get the same buffer
    except IndexError:
        spare = None
    if spare is not None and spare.shape == (n, v) and spare.device == like.device and spare.dtype == like.dtype:
        return spare
    return torch.empty(n, v, dtype=like.dtype, device=like.device)


class _LinearSoftmaxCrossEntropy(torch.autograd.Function):
    """float32: the logits x W^T + b in one (N, V) buffer (filled in column blocks), turned in place into
    log-softmax (the loss is -logp[i, y_i], as in ``F.cross_entropy``); backward turns it in place
    into softmax - onehot and takes dX = scale * (P W), dW = P^T (scale * x), db = P^T scale from
    it: two large matmuls and two fused row passes, no (N, V) temporaries."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None, targets: Tensor) -> Tensor:  # type: ignore[override]
        valid = targets != -100
        safe = torch.where(valid, targets, torch.zeros_like(targets))
        z = _buffer(x.size(0), weight.size(0), x)
        for v0 in range(0, weight.size(0), FORWARD_COLUMNS):  # written in place (row stride V)
            w, out = weight[v0 : v0 + FORWARD_COLUMNS].t(), z[:, v0 : v0 + FORWARD_COLUMNS]
            if bias is not None:
                torch.addmm(bias[v0 : v0 + FORWARD_COLUMNS], x, w, out=out)
            else:
                torch.mm(x, w, out=out)
        torch._log_softmax(z, 1, False, out=z)  # row-wise and elementwise: safe in place
        rows = torch.arange(x.size(0), device=x.device)
        count = valid.sum()
        loss = -(z[rows, safe] * valid).sum() / count
        ctx.save_for_backward(x, weight, z, safe, valid, count)
        ctx.has_bias = bias is not None
        return loss

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        x, weight, z, safe, valid, count = ctx.saved_tensors
        scale = valid.float() * (grad / count)
        torch._softmax(z, 1, False, out=z)  # softmax(log-softmax) = softmax
        z[torch.arange(x.size(0), device=x.device), safe] -= 1.0
        dx = (z @ weight).mul_(scale[:, None])
        dw = z.t() @ (x * scale[:, None])
        db = torch.mv(z.t(), scale) if ctx.has_bias else None
        _spare[:] = [z]
        return dx, dw, db, None


LSE_ROWS = 16  # rows per float32 logsumexp: a 16 x 33k float32 slice stays in a core's L2 cache


class _LowpLinearSoftmaxCrossEntropy(torch.autograd.Function):
    """Under autocast (bf16 products): the bf16 logits z = x W^T + b in one (N, V) buffer; the loss
    mean_{i in M} (logsumexp_j z_ij - z_{i,y_i}) with each logsumexp taken in float32, ``LSE_ROWS`` rows
    at a time; backward turns the buffer in place into softmax(z) - onehot (bf16 out, float32 inside
    the kernel, as autocast's own gradient is bf16), scales it by c = upstream / |M| and takes
    dX = G W, dW = G^T x, db = 1^T G from it: three products and two passes, no (N, V) temporary."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None, targets: Tensor) -> Tensor:  # type: ignore[override]
        valid = targets != -100
        safe = torch.where(valid, targets, torch.zeros_like(targets))
        N = x.size(0)
        z = _buffer(N, weight.size(0), x)
        if bias is not None:
            torch.addmm(bias, x, weight.t(), out=z)
        else:
            torch.mm(x, weight.t(), out=z)
        lse = torch.empty(N, dtype=torch.float32, device=x.device)
        for s in range(0, N, LSE_ROWS):
            lse[s : s + LSE_ROWS] = torch.logsumexp(z[s : s + LSE_ROWS].float(), dim=1)
        count = valid.sum()
        picked = z[torch.arange(N, device=x.device), safe].float()
        ctx.save_for_backward(x, weight, z, safe, valid, count)
        ctx.has_bias = bias is not None
        return ((lse - picked) * valid).sum() / count

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        x, weight, z, safe, valid, count = ctx.saved_tensors
        c = grad / count
        torch._softmax(z, 1, False, out=z)
        z[torch.arange(x.size(0), device=x.device), safe] -= 1.0
        if z.device.type != "cpu":  # ignored rows get no gradient (no host sync on an accelerator)
            z.mul_(valid[:, None].to(z.dtype))
        elif not bool(valid.all()):
            z[~valid] = 0.0
        z.mul_(c)  # scaled before the products: each result is rounded to bf16 once, as autocast's are
        dx = z @ weight
        dw = z.t() @ x
        db = (torch.ones(1, z.size(0), dtype=z.dtype, device=z.device) @ z)[0] if ctx.has_bias else None
        _spare[:] = [z]
        return dx, dw, db, None


def linear_cross_entropy(x: Tensor, weight: Tensor, bias: Tensor | None, targets: Tensor) -> Tensor:
    """Mean cross-entropy (float32) of the logits ``x @ weight.T + bias`` ((N, H), (V, H), (V,))
    against (N,) targets, -100 ignored, without (N, V) temporaries: float32 keeps one (N, V) buffer
    (``_LinearSoftmaxCrossEntropy``); under autocast the products run in its dtype (bf16 on CPU) into one
    (N, V) buffer of that dtype (``_LowpLinearSoftmaxCrossEntropy``), with logsumexp and the loss in float32."""
    device = x.device.type
    if torch.is_autocast_enabled(device):
        dtype = torch.get_autocast_dtype(device)
        x, weight = x.to(dtype), weight.to(dtype)
        bias = bias.to(dtype) if bias is not None else None
    fn = _LinearSoftmaxCrossEntropy if x.dtype == weight.dtype == torch.float32 else _LowpLinearSoftmaxCrossEntropy
    with torch.autocast(device_type=device, enabled=False):
        return fn.apply(x, weight, bias, targets)
