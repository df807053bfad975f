"""Gradients through time: the LSTM keeps more gradient at long distance than the tanh RNN."""

import numpy as np
import pytest
import torch

from engine.insight.gradients import curve, fresh_model, gradient_norms, summarize

DISTANCE = 100


def _long_range_ids(seed: int) -> np.ndarray:
    """A copy task: a random segment, then the same segment again DISTANCE tokens later."""
    rng = np.random.default_rng(seed)
    seg = rng.integers(2, 16, size=DISTANCE)
    return np.concatenate([np.concatenate([[1], seg, seg]) for _ in range(6)])


def _far_log10(name: str, seeds: range, **kw) -> float:
    """Mean log10 gradient norm at distances 50..100, over seeds and 8 windows per seed."""
    logs = []
    for seed in seeds:
        _, model = fresh_model(name, 16, seed, layers=1, width=64, embed=32, **kw)
        c = curve(model, _long_range_ids(seed), DISTANCE, 8, seed)
        assert c["distances"] == list(range(1, DISTANCE + 1))
        logs.append(np.log10(np.asarray(c["norm"][49:])).mean())
    return float(np.mean(logs))


def test_lstm_keeps_more_gradient_than_tanh_rnn_at_long_distance():
    seeds = range(6)
    lstm, rnn = _far_log10("lstm", seeds), _far_log10("rnn", seeds)
    assert lstm > rnn + 0.5, f"LSTM log10 norm {lstm:.1f} vs tanh RNN {rnn:.1f}"


def test_tanh_rnn_gradient_vanishes_and_identity_init_holds_it():
    ids = _long_range_ids(0)
    _, rnn = fresh_model("rnn", 16, 0, layers=1, width=64, embed=32)
    norms = np.asarray(curve(rnn, ids, DISTANCE, 4, 0)["norm"])
    assert norms[-1] < 1e-6 * norms[0]  # vanishes: many orders of magnitude over 100 steps
    _, irnn = fresh_model("irnn", 16, 0, layers=1, width=64, embed=32)
    inorms = np.asarray(curve(irnn, ids, DISTANCE, 4, 0)["norm"])
    assert inorms[-1] > 1e-2 * inorms[0]  # W_h = I with ReLU: the gradient survives 100 steps


def test_probe_gradient_matches_finite_difference():
    """||dL_T/dh_t|| from the probe equals the norm of a coordinate-wise finite-difference gradient."""
    torch.manual_seed(0)
    _, model = fresh_model("gru", 11, 3, layers=2, width=8, embed=4)
    model.to(torch.float64).eval()
    windows = torch.randint(0, 11, (1, 7))
    res = gradient_norms(model, windows)
    x, y = windows[:, :-1], windows[:, -1]
    t = 2  # h_t: the state (both layers) after reading x_0..x_t

    def loss_with(delta: torch.Tensor) -> float:
        with torch.no_grad():
            _, _, s = model(x[:, : t + 1])
            logits, _, _ = model(x[:, t + 1 :], state=(s[0] + delta,))
            return float(torch.nn.functional.cross_entropy(logits[:, -1], y))

    grad = torch.zeros(2, 1, 8, dtype=torch.float64)
    for idx in np.ndindex(*grad.shape):
        e = torch.zeros_like(grad)
        e[idx] = 1e-6
        grad[idx] = (loss_with(e) - loss_with(-e)) / 2e-6
    distance = x.shape[1] - 1 - t
    assert res["norms"][0][res["distances"].index(distance)] == pytest.approx(grad.norm().item(), rel=1e-5)


def test_clipping_rescales_every_distance_equally():
    out = summarize([[4.0, 2.0], [16.0, 8.0]], [1, 2], param_grad_norm=10.0, clip=1.0)
    assert out["norm"] == pytest.approx([8.0, 4.0])
    assert out["clip_scale"] == pytest.approx(0.1)
    assert out["norm_clipped"] == pytest.approx([0.8, 0.4])
