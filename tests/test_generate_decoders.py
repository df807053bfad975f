"""The one greedy seq2seq decoder: batched ``greedy_decode``, ``seq2seq_decode`` and the stepped
``Seq2SeqGeneration`` give the same tokens; CLI presets and the approximate-window notice."""

from __future__ import annotations

import json

import pytest
import torch

from engine.data.tokenizers import build_tokenizer
from engine.generation.decoders import Seq2SeqGeneration, greedy_decode, seq2seq_decode
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
    assert torch.equal(batched, model.greedy_decode(src, 16))  # the model's own loop, until callers move
    stepped = Seq2SeqGeneration(model, tok, "\n".join(LINES[:3]), SamplingSettings(temperature=0.0, max_tokens=16))
    for _ in stepped:
        pass
    for i, line in enumerate(LINES[:3]):
        one = seq2seq_decode(model, tok, line, SamplingSettings(temperature=0.0, max_tokens=16))
        single = strip_specials(greedy_decode(model, torch.tensor([tok.encode(line).tolist()]), 16)[0].tolist(), vocab)
        assert one == single == stepped.outputs[i]


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
