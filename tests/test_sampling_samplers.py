"""The llama.cpp-era samplers on hand-made logits against their published definitions (DRY, XTC,
Mirostat 2, dynamic temperature, top-nσ), the chain as an ordered list saved in presets, and the
sampler lab's stage-by-stage view."""

from __future__ import annotations

import json
import math
import random

import pytest
import torch

from engine.data.tokenizers import build_tokenizer
from engine.errors import ConfigError
from engine.generation.lab import stage_view
from engine.generation.processors import (
    LogitsPipeline,
    SamplingSettings,
    TokenChooser,
    dry_penalties,
    dynamic_temperature,
    mirostat_filter,
    top_n_sigma_filter,
    xtc_filter,
)
from engine.models.registry import build_model, make_config

INF = float("inf")


def kept(logits: torch.Tensor) -> set[int]:
    return {i for i, v in enumerate(logits.flatten().tolist()) if v != -INF}


def logits_of(*probs: float) -> torch.Tensor:
    return torch.tensor(probs, dtype=torch.float32).log()


# ---------------------------------------------------------------------------------------------- DRY


def dry_reference(ids: list[int], multiplier: float, base: float, allowed: int, breakers: set[int]) -> dict[int, float]:
    """DRY from its definition: token v = ids[i+1] would extend a repeat of the text's suffix; its
    length L is the longest k <= 50 with ids[i-k+1..i] == ids[n-k..n-1] and no breaker in that suffix."""
    n = len(ids)
    best: dict[int, int] = {}
    if n < 2 or ids[-1] in breakers:
        return {}
    for i in range(n - 1):
        nxt = ids[i + 1]
        if nxt in breakers:
            continue
        length = 0
        for k in range(1, min(i + 1, 50) + 1):
            suffix = ids[n - k :]
            if ids[i - k + 1 : i + 1] != suffix or any(t in breakers for t in suffix):
                break
            length = k
        if length:
            best[nxt] = max(best.get(nxt, 0), length)
    return {v: multiplier * base ** (L - allowed) for v, L in best.items() if L >= allowed}


def test_dry_on_a_hand_made_repeat():
    ids = [0, 1, 2, 3, 0, 1, 2]  # "a b c d a b c": continuing with d would repeat "a b c d"
    assert dry_penalties(ids, 0.8, 1.75, 2, set()) == {3: pytest.approx(0.8 * 1.75 ** (3 - 2))}
    assert dry_penalties(ids, 0.8, 1.75, 4, set()) == {}  # a repeat of 3 is allowed at length 4
    assert dry_penalties(ids, 0.8, 1.75, 2, {1}) == {}  # a breaker inside the match cuts it to 1
    assert dry_penalties(ids, 0.8, 1.75, 2, {2}) == {}  # the last token is a breaker
    assert dry_penalties(ids, 0.8, 1.75, 2, {3}) == {}  # the continuation is a breaker


def test_dry_equals_its_definition_on_random_texts():
    rng = random.Random(0)
    for trial in range(200):
        ids = [rng.randrange(4) for _ in range(rng.randrange(2, 60))]
        breakers = {3} if trial % 3 == 0 else set()
        want = dry_reference(ids, 0.8, 1.75, 2, breakers)
        got = dry_penalties(ids, 0.8, 1.75, 2, breakers)
        assert got.keys() == want.keys() and all(got[k] == pytest.approx(want[k]) for k in want)


def test_dry_in_the_chain_uses_the_tokenizers_breakers_and_range():
    tok = build_tokenizer("char", "abcdx\n")
    ids = tok.encode("abcdabc").tolist()
    d = tok.encode("d").tolist()[0]
    s = SamplingSettings(dry_multiplier=1.0)
    pipe = LogitsPipeline(s, tok.vocab_size, tokenizer=tok)
    out = pipe(torch.zeros(tok.vocab_size), pipe.start(ids))
    assert out[d].item() == pytest.approx(-1.75) and (out != 0).sum() == 1
    with_break = tok.encode("x\ncdx\nc").tolist()  # the match "\nc" reaches the default breaker "\n"
    assert torch.equal(pipe(torch.zeros(tok.vocab_size), pipe.start(with_break)), torch.zeros(tok.vocab_size))
    other = LogitsPipeline(s.replace(dry_sequence_breakers=["x"]), tok.vocab_size, tokenizer=tok)
    out = other(torch.zeros(tok.vocab_size), other.start(with_break))
    assert out[d].item() == pytest.approx(-1.0)  # "\nc" + d: L = 2 (stopped at x) -> 1 * 1.75 ** 0
    short = LogitsPipeline(s.replace(dry_range=3), tok.vocab_size, tokenizer=tok)
    assert torch.equal(short(torch.zeros(tok.vocab_size), short.start(ids)), torch.zeros(tok.vocab_size))


# ---------------------------------------------------------------------------------------------- XTC


def test_xtc_removes_every_top_choice_but_the_least_likely():
    logits = logits_of(0.4, 0.3, 0.2, 0.1)
    assert kept(xtc_filter(logits, 0.25)) == {1, 2, 3}  # 0.4 and 0.3 qualify; the least likely (0.3) stays
    assert kept(xtc_filter(logits, 0.15)) == {2, 3}  # 0.4, 0.3, 0.2 qualify; 0.2 stays
    assert kept(xtc_filter(logits, 0.35)) == {0, 1, 2, 3}  # one top choice only: nothing removed


def test_xtc_applies_with_its_probability_from_its_own_coin():
    logits = logits_of(0.4, 0.3, 0.2, 0.1)
    always = LogitsPipeline(SamplingSettings(xtc_probability=1.0, xtc_threshold=0.25, seed=1), 4)
    assert kept(always(logits, always.start([]))) == {1, 2, 3}
    half = LogitsPipeline(SamplingSettings(xtc_probability=0.5, xtc_threshold=0.25, seed=1), 4)
    h = half.start([])
    applied = sum(kept(half(logits, h)) == {1, 2, 3} for _ in range(400))
    assert 150 < applied < 250
    assert SamplingSettings(xtc_probability=1.0, xtc_threshold=0.6).active_stages() == []  # > 0.5: no effect


# ----------------------------------------------------------------------------------------- Mirostat


def test_mirostat_truncates_by_surprise_and_updates_mu():
    logits = logits_of(0.5, 0.25, 0.125, 0.125)  # surprises 1, 2, 3, 3 bits
    assert kept(mirostat_filter(logits, torch.tensor(3.0))) == {0, 1, 2, 3}
    assert kept(mirostat_filter(logits, torch.tensor(2.0))) == {0, 1}
    assert kept(mirostat_filter(logits, torch.tensor(0.1))) == {0}  # the arg-max always stays
    tau, eta = 1.0, 0.5
    chooser = TokenChooser(SamplingSettings(mirostat_tau=tau, mirostat_eta=eta, seed=0), 4)
    mu = 2 * tau  # llama.cpp starts at 2 tau
    for _ in range(30):
        allowed = [p for p in (0.5, 0.25, 0.125, 0.125) if -math.log2(p) <= mu] or [0.5]
        c = chooser.choose(logits)
        p = (0.5, 0.25, 0.125, 0.125)[c.token] / sum(allowed)  # renormalised after truncation
        assert c.prob == pytest.approx(p, rel=1e-5)
        mu -= eta * (-math.log2(p) - tau)
        assert chooser.history.mu.item() == pytest.approx(mu, rel=1e-5)


# ------------------------------------------------------------------------------ dynamic temperature


def test_dynamic_temperature_follows_the_entropy_formula():
    logits = torch.tensor([2.0, 1.0, 0.5, -1.0, -INF])
    p = logits.softmax(-1)
    h = -(p[:4] * p[:4].log()).sum().item()
    t, delta, kappa = 1.0, 0.5, 1.5
    dyn = t - delta + 2 * delta * (h / math.log(4)) ** kappa  # 4 candidates are still in the running
    out = dynamic_temperature(logits, t, delta, kappa)
    assert (out.softmax(-1)).tolist() == pytest.approx((logits / dyn).softmax(-1).tolist(), rel=1e-5)
    uniform = dynamic_temperature(torch.zeros(4), 1.0, 0.5, 1.0)  # max entropy: the highest temperature
    assert uniform.softmax(-1).tolist() == pytest.approx([0.25] * 4)
    peaked = torch.tensor([10.0, 0.0, 0.0])
    assert dynamic_temperature(peaked, 1.0, 0.9, 1.0).softmax(-1)[0] > peaked.softmax(-1)[0]  # low H: cooler


# ------------------------------------------------------------------------------------------- top-nσ


def test_top_n_sigma_keeps_logits_within_n_sigma_of_the_max():
    logits = torch.tensor([4.0, 3.0, 1.0, 0.0, -2.0, -INF])
    finite = logits[:5]
    sigma = finite.std(unbiased=False).item()  # 2.0591...
    for n in (0.5, 1.0, 2.0):
        want = {i for i, v in enumerate(finite.tolist()) if v >= 4.0 - n * sigma}
        assert kept(top_n_sigma_filter(logits, n)) == want
    assert kept(top_n_sigma_filter(logits / 0.3, 1.0)) == kept(top_n_sigma_filter(logits, 1.0))  # temperature-invariant


# ---------------------------------------------------------------------------------- chain and presets


def test_the_chain_is_an_ordered_list_saved_in_presets(tmp_path):
    s = SamplingSettings(top_k=40, temperature=0.8, dry_multiplier=0.8, order=["dry", "temperature", "top_k"], seed=3)
    chain = s.chain()
    assert [c["stage"] for c in chain] == ["dry", "temperature", "top_k"]
    assert chain[2] == {"stage": "top_k", "top_k": 40}
    path = tmp_path / "preset.json"
    s.save_preset(path)
    back = SamplingSettings.load_preset(path)
    assert back.chain() == chain and back.seed == 3
    reordered = SamplingSettings.from_chain([{"stage": "top_k", "top_k": 5}, {"stage": "temperature", "temperature": 0.5}])
    assert reordered.active_stages() == ["top_k", "temperature"] and reordered.dry_multiplier == 0.0
    assert LogitsPipeline(reordered, 50).names == ["top_k", "temperature"]
    removed = SamplingSettings.from_chain([c for c in chain if c["stage"] != "dry"])
    assert removed.active_stages() == ["temperature", "top_k"]
    for bad in ([{"stage": "nope"}], [{"stage": "top_k", "top_p": 0.5}], [{"stage": "top_k"}, {"stage": "top_k"}]):
        with pytest.raises(ConfigError):
            SamplingSettings.from_chain(bad)
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        SamplingSettings.load_preset(path)
    assert json.loads(json.dumps(s.to_preset())) == s.to_preset()


# ---------------------------------------------------------------------------------------- the lab


def test_stage_view_shows_each_stage_before_and_after():
    text = "the cat sat on the mat. " * 20
    tok = build_tokenizer("char", text)
    torch.manual_seed(0)
    model = build_model("lstm", make_config("lstm", tok.vocab_size, width=32, embed=16, layers=1)).eval()
    s = SamplingSettings(temperature=1.5, top_k=3, seed=0, max_tokens=10)
    view = stage_view(model, tok, "the ", s, step=4)
    assert view["order"] == ["temperature", "top_k"] and view["position"] == 4
    temp, topk = view["stages"]
    assert temp["removed"] == [] and temp["boosted"]  # a higher temperature lifts unlikely tokens
    assert topk["kept"] == 3 and len(topk["removed"]) == tok.vocab_size - 3
    assert {t["id"] for t in topk["after"]} == {t["id"] for t in topk["before"][:3]}
    assert sum(t["p"] for t in topk["after"]) == pytest.approx(1.0, abs=1e-5)
    # tracing does not change what is generated
    from engine.generation.streaming import generate_text

    assert view["text"] == generate_text(model, tok, "the ", s.replace(max_tokens=4))


@pytest.mark.parametrize("bad", [
    {"chain": "top_k"}, {"chain": ["top_k"]}, {"chain": [{"stage": "top_k", "top_k": "x"}]},
    {"banned": "3"}, {"banned": ["x"]}, {"logit_bias": {"a": 1}}, {"stop": "ab"}, {"seed": "a"}, {"temperature": "hot"},
])
def test_bad_presets_are_one_line_errors(bad):
    with pytest.raises(ConfigError):
        SamplingSettings.from_preset(bad).validate()
