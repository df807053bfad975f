"""The model family: one interface, exact parameter counts, causality, incremental = full pass,
fused = explicit recurrent paths, save/load through safetensors, and the notes' equations."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from engine.errors import ConfigError
from engine.models.base import load_weights, save_weights
from engine.models.registry import ARCHS, build_model, make_config

V = 17
TINY = dict(embed=8, width=8, layers=2, heads=2, context=12, dropout=0.0)
LMS = ["ngram", "mlp", "rnn", "ugrnn", "gru", "lstm", "transformer"]
RECURRENT = ["rnn", "ugrnn", "gru", "lstm"]


def tiny(arch: str, vocab: int = V, **over):
    torch.manual_seed(0)
    model = build_model(arch, make_config(arch, vocab, **{**TINY, **over}))
    if arch == "ngram":
        model.fit(np.random.default_rng(0).integers(0, vocab, 400))
    return model.eval()


VARIANTS = [
    ("mlp", {}), ("mlp", {"context": 1, "layers": 1}),
    ("rnn", {"residual": True}), ("rnn", {"embed": 8, "tie_weights": True, "nonlinearity": "relu"}),
    ("ugrnn", {}), ("gru", {"layers": 1}), ("lstm", {"tie_weights": True, "residual": True}),
    ("transformer", {}), ("transformer", {"tie_weights": False, "bias": False, "positions": "sinusoidal"}),
    ("seq2seq", {"attention": "none", "bidirectional": False, "cell": "gru"}),
    ("seq2seq", {"attention": "additive"}), ("seq2seq", {"attention": "dot", "layers": 1}),
    ("seq2seq", {"attention": "bilinear", "cell": "gru"}),
    ("mlm", {}), ("mlm", {"encoder": "lstm"}),
]


@pytest.mark.parametrize("arch,over", VARIANTS)
def test_num_params_is_exact(arch, over):
    cfg = make_config(arch, V, **{**TINY, **over})
    model = build_model(arch, cfg)
    assert cfg.num_params() == sum(p.numel() for p in model.parameters()) == model.num_params()


@pytest.mark.parametrize("arch", LMS + ["transformer-sin"])
def test_causal(arch):
    """Changing tokens after position t never changes the logits at positions <= t."""
    model = tiny("transformer", positions="sinusoidal") if arch == "transformer-sin" else tiny(arch)
    gen = torch.Generator().manual_seed(1)
    x = torch.randint(0, V, (2, 12), generator=gen)
    base, _, _ = model(x)
    for t in (0, 5, 10):
        y = x.clone()
        y[:, t + 1 :] = (y[:, t + 1 :] + 1 + torch.randint(0, V - 1, y[:, t + 1 :].shape, generator=gen)) % V
        out, _, _ = model(y)
        assert torch.allclose(out[:, : t + 1], base[:, : t + 1], atol=1e-6)
        assert not torch.allclose(out[:, t + 1 :], base[:, t + 1 :], atol=1e-6)  # the test can fail


@pytest.mark.parametrize("arch", LMS)
def test_incremental_equals_full(arch):
    model = tiny(arch)
    x = torch.randint(0, V, (3, 12), generator=torch.Generator().manual_seed(2))
    full, _, _ = model(x)
    state, steps = None, []
    for t in range(x.size(1)):
        logits, _, state = model(x[:, t : t + 1], state=state, use_cache=True)
        steps.append(logits)
    assert torch.allclose(torch.cat(steps, 1), full, atol=1e-5)
    # a prompt in two pieces continues the same way
    a, _, s = model(x[:, :5], use_cache=True)
    b, _, _ = model(x[:, 5:], state=s)
    assert torch.allclose(torch.cat([a, b], 1), full, atol=1e-5)


@pytest.mark.parametrize("over", [{}, {"tie_weights": False, "bias": False, "positions": "sinusoidal"}])
def test_transformer_decode_step_equals_the_full_pass(over, monkeypatch):
    """The one-token decode step in torch operations (``Transformer._one_step`` without the compiled
    kernel; tests/test_native.py checks that one) gives the general path's logits at every position up
    to a full window, for a batch of sequences, and fills the same cache."""
    import engine.models.native as native

    monkeypatch.setattr(native, "decode_step", lambda model: None)
    model = tiny("transformer", **over)
    ctx = model.max_context
    x = torch.randint(0, V, (3, ctx), generator=torch.Generator().manual_seed(4))
    full, _, _ = model(x)
    state, steps = model.init_state(3), []
    with torch.inference_mode():
        for t in range(ctx):
            logits, _, state = model(x[:, t : t + 1], state=state, use_cache=True)
            steps.append(logits)
    assert state.plan is not None and state.plan[-1] is None  # the torch decode step ran
    assert torch.allclose(torch.cat(steps, 1), full, atol=1e-5)
    _, _, general = model(x, use_cache=True)
    for a, b in zip(state.k + state.v, general.k + general.v):
        assert torch.allclose(a, b, atol=1e-5)
    assert torch.equal(state.tokens, general.tokens) and state.pos == general.pos == ctx


def test_transformer_cache_slides_past_its_context():
    """Past the window the cache re-encodes its last half: the newest logits then equal a fresh pass
    over exactly the tokens the cache holds."""
    model = tiny("transformer")
    x = torch.randint(0, V, (2, 40))
    logits, _, cache = model(x, use_cache=True)
    assert logits.shape == (2, 40, V) and 0 < cache.pos <= model.max_context
    window, _, _ = model(x[:, -cache.pos :])
    assert torch.allclose(logits[:, -1], window[:, -1], atol=1e-5)
    with pytest.raises(ConfigError):
        model(x)  # too long without a cache: a clear error, not an index error


@pytest.mark.parametrize("arch", RECURRENT)
@pytest.mark.parametrize("over", [{}, {"residual": True, "embed": 8, "tie_weights": True}])
def test_fused_and_explicit_paths_agree(arch, over):
    model = tiny(arch, layers=3, **over)
    x = torch.randint(0, V, (4, 9))
    s0 = tuple(torch.randn_like(s) for s in model.init_state(4))
    logits, _, state = model(x, state=s0)
    trace = model.forward_steps(x, state=s0)
    assert torch.allclose(trace.logits, logits, atol=1e-5)
    for a, b in zip(trace.state, state):
        assert torch.allclose(a, b, atol=1e-5)
    assert len(trace.hidden) == 3 and trace.hidden[0].shape == (4, 9, 8)
    assert set(trace.gates[0]) == set(model.gate_names)


def test_ugrnn_trace_follows_the_notes_equation():
    """h_t = G_t * h_{t-1} + (1 - G_t) * R_t, with G in (0, 1) and R in (-1, 1)."""
    model = tiny("ugrnn", layers=1)
    x = torch.randint(0, V, (2, 7))
    tr = model.forward_steps(x)
    h, R, G = tr.hidden[0], tr.gates[0]["R"], tr.gates[0]["G"]
    prev = torch.cat([torch.zeros_like(h[:, :1]), h[:, :-1]], 1)
    assert torch.allclose(h, G * prev + (1 - G) * R, atol=1e-6)
    assert (G > 0).all() and (G < 1).all() and (R.abs() < 1).all()


def test_lstm_trace_follows_the_cell_equations():
    model = tiny("lstm", layers=1)
    tr = model.forward_steps(torch.randint(0, V, (2, 6)))
    g, c, h = tr.gates[0], tr.cells[0], tr.hidden[0]
    prev_c = torch.cat([torch.zeros_like(c[:, :1]), c[:, :-1]], 1)
    assert torch.allclose(c, g["f"] * prev_c + g["i"] * g["g"], atol=1e-6)
    assert torch.allclose(h, g["o"] * torch.tanh(c), atol=1e-6)


def test_identity_init_and_relu():
    model = tiny("rnn", layers=1, identity_init=True, nonlinearity="relu")
    assert torch.equal(model.layers[0].weight_hh_l0, torch.eye(8))


def test_reset_state_zeros_only_marked_rows():
    model = tiny("lstm")
    _, _, state = model(torch.randint(0, V, (3, 5)))
    out = model.reset_state(state, torch.tensor([False, True, False]))
    assert (out[0][:, 1] == 0).all() and torch.equal(out[0][:, 0], state[0][:, 0])


# -- n-gram ------------------------------------------------------------------------------------------


def test_ngram_perplexity_matches_a_hand_computation():
    """Text "abab", order 2, d = 3/4. By hand: continuation counts N1+(.a) = 2 (start, b), N1+(.b) = 1,
    so P1(a) = (2 - 3/4)/3 + (3/4)(2/3)(1/2) = 2/3 and P1(b) = 1/3. c(ab) = 2, c(ba) = 1, hence
    P(b|a) = (2 - 3/4)/2 + (3/4)(1/2) P1(b) = 3/4, P(b|b) = (3/4) P1(b) = 1/4, P(a|b) = 1/4 + (3/4) P1(a) = 3/4.
    Scoring "abba" (predicting b, b, a): ppl = (3/4 * 1/4 * 3/4) ** (-1/3)."""
    model = build_model("ngram", make_config("ngram", 2, order=2, discount=0.75)).fit(np.array([0, 1, 0, 1]))
    logp, loss, _ = model(torch.tensor([[0, 1, 1]]), torch.tensor([[1, 1, 0]]))
    assert logp[0].exp().flatten().tolist() == pytest.approx([0.25, 0.75, 0.75, 0.25, 0.75, 0.25], abs=1e-6)
    assert math.exp(loss.item()) == pytest.approx((0.75 * 0.25 * 0.75) ** (-1 / 3), rel=1e-6)


def _kn_reference(ids: list[int], vocab: int, order: int, d: float):
    """A direct, slow transcription of the docstring's formulas with Python dicts."""
    raw: dict[tuple, int] = {}
    left: dict[tuple, set] = {}
    for k in range(1, order + 1):
        for i in range(len(ids) - k + 1):
            g = tuple(ids[i : i + k])
            if k == order:
                raw[g] = raw.get(g, 0) + 1
            else:
                left.setdefault(g, set()).add(ids[i - 1] if i else -1)
    count = {**{g: len(s) for g, s in left.items()}, **raw}

    def prob(w: int, h: tuple) -> float:
        k = len(h) + 1
        grams = [g for g in count if len(g) == k and g[:-1] == h]
        total = sum(count[g] for g in grams)
        lower = 1.0 / vocab if k == 1 else prob(w, h[1:])
        if total == 0:
            return lower
        return max(count.get(h + (w,), 0) - d, 0) / total + d * len(grams) / total * lower

    return prob


@pytest.mark.parametrize("order", [1, 3, 4])
def test_ngram_matches_reference_formulas(order):
    rng = np.random.default_rng(order)
    ids = rng.integers(0, 5, 80)
    model = build_model("ngram", make_config("ngram", 5, order=order, discount=0.6)).fit(ids)
    prob = _kn_reference(ids.tolist(), 5, order, 0.6)
    x = rng.integers(0, 5, (2, 9))
    logp, _, _ = model(torch.from_numpy(x))
    for b in range(2):
        for t in range(9):
            h = tuple(x[b, max(0, t - order + 2) : t + 1].tolist()) if order > 1 else ()
            expected = [prob(w, h) for w in range(5)]
            assert np.allclose(logp[b, t].exp().numpy(), expected, atol=1e-6)


def test_ngram_refuses_orders_beyond_int64_codes():
    with pytest.raises(ConfigError, match="order"):
        build_model("ngram", make_config("ngram", 50_000, order=6))


# -- save / load -------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch,over", [(a, o) for a, o in VARIANTS if a != "seq2seq"] + [("ngram", {})])
def test_save_load_roundtrip(arch, over, tmp_path):
    from safetensors.torch import load_model, save_model

    model = tiny(arch, **over)
    x = torch.randint(0, V, (2, 8))
    expected, _, _ = model(x)
    save_weights(model, tmp_path / "w.safetensors")
    fresh = build_model(arch, make_config(arch, V, **{**TINY, **over})).eval()
    load_weights(fresh, tmp_path / "w.safetensors")
    assert torch.equal(fresh(x)[0], expected)
    save_model(model, str(tmp_path / "m.safetensors"))  # safetensors' own helpers work too
    again = build_model(arch, make_config(arch, V, **{**TINY, **over})).eval()
    load_model(again, str(tmp_path / "m.safetensors"))
    assert torch.equal(again(x)[0], expected)


def test_tied_weights_stay_tied_after_load(tmp_path):
    model = tiny("transformer")
    save_weights(model, tmp_path / "w.safetensors")
    fresh = build_model("transformer", make_config("transformer", V, **TINY))
    load_weights(fresh, tmp_path / "w.safetensors")
    assert fresh.head.weight is fresh.tok.weight


# -- configs, errors, CLI ----------------------------------------------------------------------------


@pytest.mark.parametrize("arch,over,match", [
    ("lstm", {"embed": 16, "width": 32, "tie_weights": True}, "tie_weights"),
    ("transformer", {"width": 30, "heads": 4}, "heads"),
    ("seq2seq", {"attention": "cosine"}, "attention"),
    ("mlm", {"encoder": "gru"}, "encoder"),
    ("rnn", {"nonlinearity": "sigmoid"}, "nonlinearity"),
    ("lstm", {"layers": 0}, "layers"),
])
def test_bad_settings_raise_one_line_config_errors(arch, over, match):
    with pytest.raises(ConfigError, match=match) as err:
        build_model(arch, make_config(arch, V, **over))
    assert "\n" not in str(err.value)


def test_shared_cell_flag_does_not_change_the_architecture():
    cfg = make_config("lstm", V, cell="gru", **TINY)
    assert build_model("lstm", cfg).config.cell == "lstm"


def test_archs_json_lists_every_architecture_with_exact_params():
    from click.testing import CliRunner

    from seqplay.commands.models import archs

    result = CliRunner().invoke(archs, ["--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["name"] for r in rows] == list(ARCHS)
    for r in rows:
        assert {"name", "family", "description", "params"} <= set(r)
        model = build_model(r["name"], make_config(r["name"], r["vocab_size"]))
        assert r["params"] == sum(p.numel() for p in model.parameters())
    assert next(r for r in rows if r["name"] == "mlm")["vocab_size"] == 66


def test_archs_table_prints():
    from click.testing import CliRunner

    from seqplay.commands.models import archs

    result = CliRunner().invoke(archs, [])
    assert result.exit_code == 0 and "transformer" in result.output and "ugrnn" in result.output


@pytest.mark.parametrize("arch", ["mlp", "rnn", "ugrnn", "gru", "lstm", "transformer", "mlm", "seq2seq"])
def test_bf16_autocast_step_and_fp32_continuation(arch):
    """A training step under bf16 autocast works; its carried state continues in fp32."""
    model = tiny(arch).train()
    x = torch.randint(0, V - 3, (2, 8))
    args = (x, x, x) if arch == "seq2seq" else (x, x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, loss, state = model(*args)
    loss.backward()
    assert torch.isfinite(loss)
    if model.recurrent:
        assert all(s.dtype == torch.float32 for s in state)
        model(x, state=state)


@pytest.mark.parametrize("bf16", [False, True])
def test_explicit_cpu_attention_equals_sdpa(bf16, monkeypatch):
    """The written-out causal attention the CPU training path takes gives SDPA's loss and gradients."""
    from engine.device import autocast
    from engine.models import transformer as tmod

    torch.manual_seed(0)
    model = build_model("transformer", make_config("transformer", 50, layers=2, heads=2, width=32, context=16, dropout=0.0)).train()
    x, y = torch.randint(0, 50, (3, 16)), torch.randint(0, 50, (3, 16))
    out = {}
    for explicit in (False, True):
        monkeypatch.setattr(tmod, "EXPLICIT_CPU_ATTENTION", explicit)
        with autocast("cpu", "bf16" if bf16 else "fp32"):
            logits, loss, _ = model(x, y)
        out[explicit] = (logits.float(), loss, torch.autograd.grad(loss, list(model.parameters())))
    (l0, s0, g0), (l1, s1, g1) = out[False], out[True]
    tol = 2e-2 if bf16 else 1e-5
    assert torch.allclose(l0, l1, atol=tol, rtol=tol) and abs(s0.item() - s1.item()) < tol
    assert all(torch.allclose(a, b, atol=tol, rtol=tol) for a, b in zip(g0, g1))
