"""The one greedy seq2seq decoder: batched ``greedy_decode`` / ``greedy_outputs``, ``seq2seq_decode`` and
the stepped ``Seq2SeqGeneration`` give the same tokens; CLI presets and the approximate-window notice."""

from __future__ import annotations

import json

import pytest
import torch

from engine.data.tokenizers import build_tokenizer
from engine.generation.decoders import Seq2SeqGeneration, greedy_decode, greedy_outputs, seq2seq_decode
from engine.generation.processors import SamplingSettings
from engine.models.registry import build_model, make_config
from engine.models.seq2seq import strip_specials

from .test_generate_cli import TEXT, make_checkpoint, run

LINES = ["the cat", "the dog sat", "mat", ""]


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer("char", TEXT)


@pytest.mark.parametrize("attention", ["additive", "none"])
def test_greedy_decoders_agree(tok, attention):
    vocab = tok.vocab_size + 3
    torch.manual_seed(0)
    model = build_model("seq2seq", make_config("seq2seq", vocab, width=32, embed=16, context=16, attention=attention)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)
    pad = model.special_ids(vocab)[0]
    rows = [tok.encode(line).tolist() or [pad] for line in LINES]
    width = max(map(len, rows))
    src = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
    batched = greedy_decode(model, src, 16)
    for row, ids in zip(batched, src):  # each padded row as decoding its source alone
        alone = greedy_decode(model, ids[ids != pad][None] if (ids != pad).any() else ids[:1][None], 16)[0]
        assert torch.equal(row[: alone.numel()], alone) and (row[alone.numel() :] == pad).all()
    stepped = Seq2SeqGeneration(model, tok, "\n".join(LINES[:3]), SamplingSettings(temperature=0.0, max_tokens=16))
    for _ in stepped:
        pass
    for i, line in enumerate(LINES[:3]):
        one = seq2seq_decode(model, tok, line, SamplingSettings(temperature=0.0, max_tokens=16))
        single = strip_specials(greedy_decode(model, torch.tensor([tok.encode(line).tolist()]), 16)[0].tolist(), vocab)
        assert one == single == stepped.outputs[i]


def test_batched_outputs_equal_one_at_a_time_on_a_trained_model():
    """The trainer's exact-match path (``greedy_outputs``, padded batches) gives each source's tokens
    decoded alone (``seq2seq_decode``), on a model trained to reverse strings of 1-8 letters: sources
    of different lengths, an empty one, outputs stopped early by eos and outputs cut by their limit."""
    from .test_models_train import _fit, encode_pairs, reverse_pairs

    chars = "abcdefghij"
    letters = build_tokenizer("char", chars)
    vocab = letters.vocab_size + 3
    torch.manual_seed(0)
    model = build_model("seq2seq", make_config("seq2seq", vocab, embed=16, width=64, attention="additive", context=16))
    pairs = reverse_pairs(16, seed=0, lo=1, hi=8)
    batch = encode_pairs(pairs, chars, vocab)
    _fit(model, lambda: batch, 60, 1e-2)
    model.eval()
    texts = [a for a, _ in pairs] + [a for a, _ in reverse_pairs(8, seed=5, lo=1, hi=9)] + [""]
    limits = [len(t) + 1 if i % 4 else max(1, len(t) // 2) for i, t in enumerate(texts)]
    sources = [letters.encode(t) for t in texts]
    batched = greedy_outputs(model, sources, limits, batch_size=5)
    alone = [seq2seq_decode(model, letters, t, SamplingSettings(temperature=0.0, max_tokens=n)) for t, n in zip(texts, limits)]
    assert batched == alone
    assert len({len(o) for o in batched}) >= 4  # rows of one batch end at different steps
    assert any(len(o) < n for o, n in zip(batched, limits)) and any(len(o) == n for o, n in zip(batched, limits))
    assert sum(letters.decode(o) == a[::-1] for o, a in zip(batched[:16], texts)) >= 12  # it learned


def test_presets_round_trip_through_the_cli(capsys, tmp_path):
    ckpt = str(make_checkpoint(tmp_path / "gru", "gru", width=32, embed=16, layers=1))
    preset = tmp_path / "p.json"
    code, first, _ = run(capsys, "generate", ckpt, "-p", "the ", "-n", "25", "--seed", "1", "--top-k", "4",
                         "-t", "0.7", "--order", "top_k,temperature", "--save-preset", str(preset))
    assert code == 0
    saved = json.loads(preset.read_text())
    assert [c["stage"] for c in saved["chain"]] == ["top_k", "temperature"] and saved["seed"] == 1
    code, again, _ = run(capsys, "generate", ckpt, "-p", "the ", "-n", "25", "--preset", str(preset))
    assert code == 0 and again == first
    code, _, err = run(capsys, "generate", ckpt, "--preset", str(tmp_path / "missing.json"))
    assert code == 2 and err.startswith("error: cannot read preset")


def test_the_slide_window_says_it_is_approximate(capsys, tmp_path):
    ckpt = str(make_checkpoint(tmp_path / "tr", "transformer", width=32, heads=2, layers=1, context=16))
    code, _, err = run(capsys, "generate", ckpt, "-p", "the ", "-n", "30", "--seed", "0")
    assert code == 0 and "approximate" not in err
    code, out, err = run(capsys, "generate", ckpt, "-p", "the ", "-n", "30", "--seed", "0", "--window", "slide", "--json")
    assert code == 0 and "approximate" in err
    done = json.loads(out.splitlines()[-1])
    assert done["approximate"] is True and {"model_ms_per_token", "processors_ms_per_token", "stream_ms_per_token"} <= set(done)


def test_stages_prints_the_chain_at_one_token(capsys, tmp_path):
    ckpt = str(make_checkpoint(tmp_path / "gru", "gru", width=32, embed=16, layers=1))
    code, out, _ = run(capsys, "generate", ckpt, "-p", "the ", "--stages", "3", "--top-k", "4", "-t", "0.5", "--json")
    view = json.loads(out)
    assert code == 0 and view["position"] == 3 and [s["stage"] for s in view["stages"]] == ["temperature", "top_k"]
    assert view["stages"][1]["kept"] == 4
    code, out, _ = run(capsys, "generate", ckpt, "-p", "the ", "--stages", "3", "--top-k", "4")
    assert code == 0 and "top_k: kept 4" in out
