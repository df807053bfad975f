"""Attention, gates and surprisal on tiny fresh models: properties that must hold at any weights."""

import math

import numpy as np
import pytest
import torch

from engine.data.tokenizers import build_tokenizer
from engine.errors import ConfigError
from engine.insight.attention import attention_maps
from engine.insight.gates import char_signal, correlations, gate_report, token_signal
from engine.insight.surprisal import CHUNK, surprisal, surprisal_diff, token_losses
from engine.models.registry import build_model, make_config

TEXT = 'He said "hello there" and left.\nShe said "no" (twice) then\n"quiet" again, "loud" too.\n' * 4


def _model(arch: str, tok, **kw):
    torch.manual_seed(0)
    return build_model(arch, make_config(arch, tok.vocab_size, **kw)).eval()


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer("char", TEXT)


def test_attention_rows_sum_to_one_and_are_causal(tok):
    model = _model("transformer", tok, layers=2, heads=2, width=16, context=32)
    report = attention_maps(model, tok, TEXT[:40])
    assert len(report["tokens"]) == 32  # the last `context` tokens of the prompt
    assert "".join(report["tokens"]) == TEXT[8:40]
    assert len(report["layers"]) == 2
    for layer in report["layers"]:
        maps = np.asarray(layer)
        assert maps.shape == (2, 32, 32)
        np.testing.assert_allclose(maps.sum(axis=-1), 1.0, atol=1e-3)
        assert np.all(np.triu(maps, k=1) == 0.0)  # no weight on future positions
        assert np.all(maps >= 0)
    assert model.capture_attention is False  # restored


def test_attention_refuses_recurrent_models(tok):
    with pytest.raises(ConfigError):
        attention_maps(_model("lstm", tok, layers=1, width=8, embed=8), tok, "hello")


def test_surprisal_matches_the_model_loss_across_chunks(tok):
    model = _model("lstm", tok, layers=1, width=16, embed=8)
    text = TEXT * 2
    ids = np.asarray(tok.encode(text), dtype=np.int64)
    assert len(ids) > CHUNK + 10  # the chunked path carries the state across a boundary
    losses = token_losses(model, ids)
    x, y = torch.as_tensor(ids[:-1])[None], torch.as_tensor(ids[1:])[None]
    with torch.no_grad():
        _, loss, _ = model(x, targets=y)
    assert losses.mean() == pytest.approx(float(loss), rel=1e-5)
    report = surprisal(model, tok, text[:100], label="lstm")
    assert report["losses"][0] is None and len(report["losses"]) == 100
    assert report["perplexity"] == pytest.approx(math.exp(report["mean_loss"]))
    # char tokenizer: bits/char = mean nats/token / ln 2
    assert report["bits_per_char"] == pytest.approx(report["mean_loss"] / math.log(2))


def test_surprisal_transformer_beyond_context(tok):
    model = _model("transformer", tok, layers=1, heads=2, width=16, context=32)
    ids = np.asarray(tok.encode(TEXT), dtype=np.int64)[:100]
    losses = token_losses(model, ids)
    assert losses.shape == (99,) and np.all(np.isfinite(losses))
    with torch.no_grad():
        _, loss, _ = model(torch.as_tensor(ids[:31])[None], targets=torch.as_tensor(ids[1:32])[None])
    assert losses[:31].mean() == pytest.approx(float(loss), rel=1e-5)  # first window: full history


def test_surprisal_diff(tok):
    a = surprisal(_model("lstm", tok, layers=1, width=16, embed=8), tok, TEXT[:60], "a")
    b = surprisal(_model("gru", tok, layers=1, width=16, embed=8), tok, TEXT[:60], "b")
    d = surprisal_diff(a, b)
    assert "".join(d["chars"]) == TEXT[:60] and d["diff"][0] is None
    assert d["diff"][5] == pytest.approx(a["losses"][5] - b["losses"][5], abs=2e-4)
    assert surprisal_diff(a, a)["share_a_better"] == 0.0


def test_signals():
    text = 'ab "cd" e\nfg'
    np.testing.assert_array_equal(char_signal(text, "quotes"), [0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(char_signal(text, "line-position"), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1])
    np.testing.assert_array_equal(token_signal(["ab ", '"cd"', " e"], "quotes"), [0, 1, 0])
    with pytest.raises(ConfigError):
        char_signal(text, "([")


def test_correlations_rank_the_tracking_unit():
    rng = np.random.default_rng(0)
    signal = (rng.random(200) > 0.5).astype(float)
    acts = rng.normal(size=(200, 6))
    acts[:, 4] = 0.9 * signal + 0.1 * acts[:, 4]
    acts[:, 2] = 3.0  # constant unit: correlation 0, not NaN
    r = correlations(acts, signal)
    assert int(np.argmax(np.abs(r))) == 4 and r[4] > 0.9 and r[2] == 0.0


def test_gate_report_lstm_search(tok):
    model = _model("lstm", tok, layers=2, width=12, embed=8)
    report = gate_report(model, tok, TEXT[:120], layer=-1, units=["h0"], pattern="quotes", top=3)
    assert report["layer"] == 1 and set(report["gates"]) == {"i", "f", "g", "o"}
    assert all(len(v) == 120 for v in report["gates"].values())
    assert all(0.0 <= v <= 1.0 for v in report["gates"]["f"])  # a sigmoid gate
    best = report["search"]["best"]
    assert len(best) == 3 and abs(best[0]["corr"]) >= abs(best[-1]["corr"])
    assert set(report["units"]) == {"h0", *(b["unit"] for b in best)}
    # The top unit's correlation is the largest over every h and c unit of the layer.
    trace = model.forward_steps(torch.as_tensor(tok.encode(TEXT[:120]), dtype=torch.int64)[None])
    sig = np.asarray(report["search"]["signal"])
    allr = np.concatenate([correlations(t[0].detach().double().numpy(), sig) for t in (trace.hidden[1], trace.cells[1])])
    assert abs(best[0]["corr"]) == pytest.approx(np.abs(allr).max(), abs=1e-4)
    with pytest.raises(ConfigError):
        gate_report(model, tok, TEXT[:50], units=["h99"])


def test_seq2seq_cross_attention_rows(tok):
    from engine.insight.attention import cross_attention

    torch.manual_seed(0)
    model = build_model("seq2seq", make_config("seq2seq", tok.vocab_size + 3, width=16, embed=8)).eval()
    report = cross_attention(model, tok, "hello there", "there hello")
    weights = np.asarray(report["layers"][0][0])
    assert weights.shape == (len("there hello") + 1, len("hello there"))  # one row per output, + <eos>
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-3)
    assert report["query_tokens"][-1] == "<eos>"
    with pytest.raises(ConfigError):
        cross_attention(_model("lstm", tok, layers=1, width=8, embed=8), tok, "a", "b")
