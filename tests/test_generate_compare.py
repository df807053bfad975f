"""Same-randomness A/B: identical settings give identical text; a temperature change on one side
diverges exactly where the two inverse CDFs at the shared uniform differ; ``seqplay compare``."""

from __future__ import annotations

import json

import pytest
import torch

from engine.data.tokenizers import build_tokenizer
from engine.errors import ConfigError
from engine.generation.compare import compare
from engine.generation.processors import SamplingSettings, inverse_cdf
from engine.models.registry import build_model, make_config

from .test_generate_cli import TEXT, make_checkpoint, run


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer("char", TEXT)


def tiny(tok, seed=0):
    torch.manual_seed(seed)
    model = build_model("lstm", make_config("lstm", tok.vocab_size, width=32, embed=16, layers=1))
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(2.0)
    return model.eval()


def test_identical_settings_give_identical_text(tok):
    model = tiny(tok)
    s = SamplingSettings(max_tokens=60, top_k=8)
    result = compare((model, tok), (model, tok), "the ", s, s, seed=11)
    assert result.divergence is None and result.a.text == result.b.text and len(result.a.tokens) == 60
    assert result.a.mean_logprob == pytest.approx(result.b.mean_logprob)
    other = compare((model, tok), (model, tok), "the ", s, s, seed=12)
    assert other.a.text != result.a.text  # the seed, not the settings, made them equal


def test_a_temperature_change_diverges_only_where_the_inverse_cdfs_differ(tok):
    model = tiny(tok)
    ta, tb = 1.0, 1.2
    result = compare((model, tok), (model, tok), "the ", SamplingSettings(max_tokens=80, temperature=ta),
                     SamplingSettings(max_tokens=80, temperature=tb), seed=3)
    d = result.divergence
    assert d is not None and d > 0  # they agree for a while, then the knob shows
    ids = tok.encode("the ").tolist()
    with torch.inference_mode():
        for t in range(d + 1):
            logits = model(torch.tensor([ids]))[0][0, -1].float()
            u = result.uniforms[t]
            a = int(inverse_cdf((logits / ta).log_softmax(-1).exp(), u))
            b = int(inverse_cdf((logits / tb).log_softmax(-1).exp(), u))
            assert a == result.a.tokens[t] and b == result.b.tokens[t]  # each side is its own inverse CDF at u_t
            assert (a == b) == (t < d)  # same token exactly until the inverse CDFs part
            ids.append(a)


def test_two_models_with_the_same_stream_and_tokenizer_checks(tok):
    a, b = tiny(tok, 0), tiny(tok, 1)
    s = SamplingSettings(max_tokens=30)
    result = compare((a, tok), (b, tok), "the ", s, s, seed=5)
    assert result.uniforms and result.a.tokens != result.b.tokens
    other_tok = build_tokenizer("char", TEXT + "xyz")
    with pytest.raises(ConfigError, match="different tokenizers"):
        compare((a, tok), (b, other_tok), "the ", s, s, seed=5)


def test_compare_command_json_and_text(capsys, tmp_path):
    ckpt = str(make_checkpoint(tmp_path / "lstm", "lstm", width=32, embed=16, layers=1))
    code, out, err = run(capsys, "compare", ckpt, "-p", "the ", "-n", "40", "--seed", "2", "--json")
    assert code == 0, err
    same = json.loads(out)
    assert same["divergence"] is None and same["a"]["text"] == same["b"]["text"]
    code, out, _ = run(capsys, "compare", ckpt, "-p", "the ", "-n", "40", "--seed", "2", "--json",
                       "--set-b", "temperature=3")
    diff = json.loads(out)
    assert diff["divergence"] is not None and diff["b"]["settings"]["temperature"] == 3
    assert diff["a"]["text"] == same["a"]["text"]  # side A is unchanged by B's knob
    code, out, _ = run(capsys, "compare", ckpt, "-p", "the ", "-n", "10", "--json", "--set", "top_k=10")
    both = json.loads(out)
    assert both["a"]["settings"]["top_k"] == 10 == both["b"]["settings"]["top_k"] and both["divergence"] is None
    code, out, _ = run(capsys, "compare", ckpt, "-p", "the ", "-n", "20", "--seed", "2", "--set-b", "temperature=3")
    assert code == 0 and "first divergence at token" in out and "mean log-prob per token" in out
    code, _, err = run(capsys, "compare", ckpt, "--set-a", "temprature=1")
    assert code == 2 and err.count("\n") == 1 and "unknown sampling setting" in err
