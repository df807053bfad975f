"""Logit processors on hand-made logits: kept sets, ties, extreme values, order, seeding."""

from __future__ import annotations

import json
import math
import random

import pytest
import torch

from engine.errors import ConfigError
from engine.generation.processors import (
    LogitsPipeline,
    SamplingSettings,
    TokenChooser,
    _NGramIndex,
    apply_banned,
    apply_logit_bias,
    apply_presence_frequency,
    apply_repetition_penalty,
    apply_temperature,
    entropy,
    epsilon_filter,
    eta_filter,
    min_p_filter,
    no_repeat_ngram_banned,
    token_counts,
    top_k_filter,
    top_p_filter,
    typical_filter,
)

INF = float("inf")


def logits_of(*probs: float) -> torch.Tensor:
    return torch.tensor(probs, dtype=torch.float32).log()


def kept(logits: torch.Tensor) -> set[int]:
    return {i for i, v in enumerate(logits.tolist()) if v != -INF}


# ---------------------------------------------------------------------------------------- penalties


def test_repetition_penalty_divides_positive_multiplies_negative_once_per_token():
    logits = torch.tensor([2.0, -2.0, 1.0, 0.5])
    out = apply_repetition_penalty(logits, torch.tensor([0, 1, 0, 0]), 2.0)
    assert out.tolist() == [1.0, -4.0, 1.0, 0.5]  # token 0 seen three times, penalised once
    assert logits.tolist() == [2.0, -2.0, 1.0, 0.5]  # input untouched
    # a penalty below 1 rewards repetition
    assert apply_repetition_penalty(logits, torch.tensor([1]), 0.5).tolist()[1] == -1.0


def test_presence_and_frequency_follow_openai_rule():
    logits = torch.zeros(4)
    out = apply_presence_frequency(logits, token_counts([0, 0, 2], 4), presence=0.5, frequency=0.25)
    assert out.tolist() == pytest.approx([-(2 * 0.25) - 0.5, 0.0, -0.25 - 0.5, 0.0])


def test_no_repeat_ngram_bans_completions_of_seen_ngrams():
    history = [1, 2, 3, 1, 2]
    assert no_repeat_ngram_banned(history, 3) == [3]  # (1, 2) was followed by 3
    assert no_repeat_ngram_banned(history, 2) == [3]  # 2 was followed by 3
    assert no_repeat_ngram_banned(history, 1) == [1, 2, 3]  # unigrams: every seen token
    assert no_repeat_ngram_banned([1, 2], 3) == []  # no complete 3-gram yet
    assert no_repeat_ngram_banned([5, 5, 5], 2) == [5]


def test_incremental_ngram_index_agrees_with_the_pure_rule():
    rng = random.Random(0)
    for n in (1, 2, 3, 4):
        index = _NGramIndex(n)
        history: list[int] = []
        for _ in range(60):
            assert index.banned(history) == no_repeat_ngram_banned(history, n)
            history.append(rng.randrange(4))
        # rewinding the history is noticed
        history = history[:10]
        assert index.banned(history) == no_repeat_ngram_banned(history, n)


def test_bias_and_bans():
    logits = torch.zeros(5)
    out = apply_logit_bias(logits, torch.tensor([1, 3]), torch.tensor([2.0, -1.0]))
    assert out.tolist() == [0.0, 2.0, 0.0, -1.0, 0.0]
    assert kept(apply_banned(logits, [0, 4])) == {1, 2, 3}


# ---------------------------------------------------------------------------------------- temperature


def test_temperature_scales_and_zero_is_greedy_first_index_on_ties():
    logits = torch.tensor([1.0, 3.0, 3.0, -2.0])
    assert apply_temperature(logits, 2.0).tolist() == [0.5, 1.5, 1.5, -1.0]
    greedy = apply_temperature(logits, 0.0)
    assert kept(greedy) == {1}


def test_temperature_near_zero_does_not_overflow():
    logits = torch.tensor([1e30, 0.0, -1e30, 5.0])
    out = apply_temperature(logits, 1e-9)
    probs = out.softmax(-1)
    assert torch.isfinite(probs).all()
    assert probs.tolist() == pytest.approx([1.0, 0.0, 0.0, 0.0])
    close = apply_temperature(torch.tensor([1.0, 1.001, 0.0]), 1e-6).softmax(-1)
    assert close.argmax().item() == 1 and close[1].item() == pytest.approx(1.0)


# ---------------------------------------------------------------------------------------- truncation


def test_top_k_keeps_ties_at_the_kth_value():
    logits = torch.tensor([1.0, 3.0, 3.0, 2.0, 0.0])
    assert kept(top_k_filter(logits, 1)) == {1, 2}  # tie for first: both stay
    assert kept(top_k_filter(logits, 2)) == {1, 2}
    assert kept(top_k_filter(logits, 3)) == {1, 2, 3}
    assert kept(top_k_filter(torch.tensor([1.0, 2.0, 2.0, 2.0, 0.0]), 2)) == {1, 2, 3}
    assert kept(top_k_filter(logits, 5)) == set(range(5))


def test_top_p_keeps_smallest_nucleus_and_the_top_token():
    logits = logits_of(0.5, 0.3, 0.15, 0.05)
    assert kept(top_p_filter(logits, 0.75)) == {0, 1}
    assert kept(top_p_filter(logits, 0.85)) == {0, 1, 2}
    assert kept(top_p_filter(logits, 0.01)) == {0}
    assert kept(top_p_filter(logits, 1.0)) == {0, 1, 2, 3}


def test_min_p_scales_with_the_top_probability():
    logits = logits_of(0.6, 0.3, 0.06, 0.04)
    assert kept(min_p_filter(logits, 0.2)) == {0, 1}  # threshold 0.12
    assert kept(min_p_filter(logits, 0.05)) == {0, 1, 2, 3}  # threshold 0.03
    assert kept(min_p_filter(logits, 1.0)) == {0}
    assert kept(min_p_filter(torch.tensor([2.0, 2.0, 0.0]), 1.0)) == {0, 1}  # tied maxima stay


def test_typical_p_can_drop_the_most_likely_token():
    # H = 1.2799 nats; |surprisal - H| ranks tokens 1 (.076), 2 (.329), 0 (.364), 3 (1.023)
    logits = logits_of(0.4, 0.3, 0.2, 0.1)
    assert kept(typical_filter(logits, 0.2)) == {1}
    assert kept(typical_filter(logits, 0.45)) == {1, 2}  # the most likely token 0 is dropped
    assert kept(typical_filter(logits, 0.6)) == {0, 1, 2}
    assert kept(typical_filter(logits, 0.95)) == {0, 1, 2, 3}


def test_epsilon_cutoff_and_its_fallback():
    logits = logits_of(0.5, 0.3, 0.15, 0.05)
    assert kept(epsilon_filter(logits, 0.1)) == {0, 1, 2}
    assert kept(epsilon_filter(logits, 0.9)) == {0}  # nothing reaches 0.9: the arg-max stays
    assert kept(epsilon_filter(torch.zeros(4), 0.5)) == {0, 1, 2, 3}  # all tied at the top


def test_eta_cutoff_uses_entropy():
    probs = [0.5, 0.3, 0.15, 0.05]
    logits = logits_of(*probs)
    h = -sum(p * math.log(p) for p in probs)
    assert float(entropy(logits)) == pytest.approx(h, rel=1e-5)
    # eta = 0.5: min(0.5, sqrt(0.5) e^-H) = 0.2256, so 0.3 survives (epsilon 0.5 would not keep it)
    assert min(0.5, math.sqrt(0.5) * math.exp(-h)) == pytest.approx(0.2256, abs=1e-3)
    assert kept(eta_filter(logits, 0.5)) == {0, 1}
    assert kept(epsilon_filter(logits, 0.5)) == {0}
    assert kept(eta_filter(logits, 0.1)) == {0, 1, 2}


@pytest.mark.parametrize(
    "apply",
    [
        lambda x: top_k_filter(x, 2),
        lambda x: top_p_filter(x, 0.5),
        lambda x: min_p_filter(x, 0.5),
        lambda x: typical_filter(x, 0.5),
        lambda x: epsilon_filter(x, 0.5),
        lambda x: eta_filter(x, 0.5),
        lambda x: apply_temperature(x, 0.0),
        lambda x: apply_temperature(x, 1e-8),
        lambda x: apply_repetition_penalty(x, torch.tensor([2, 3]), 3.0),
    ],
)
def test_all_minus_inf_but_one_keeps_that_one(apply):
    logits = torch.full((6,), -INF)
    logits[3] = -7.0
    out = apply(logits)
    assert kept(out) == {3}
    assert out.softmax(-1)[3].item() == 1.0


def test_filters_work_on_batches():
    batch = torch.stack([logits_of(0.5, 0.3, 0.15, 0.05), logits_of(0.05, 0.15, 0.3, 0.5)])
    out = top_p_filter(batch, 0.75)
    assert kept(out[0]) == {0, 1} and kept(out[1]) == {2, 3}


# ---------------------------------------------------------------------------------------- pipeline


def test_pipeline_skips_neutral_processors_and_follows_order():
    assert LogitsPipeline(SamplingSettings(), 10).names == []
    s = SamplingSettings(temperature=0.5, top_k=3, presence_penalty=1.0, order=["top_k", "temperature"])
    pipe = LogitsPipeline(s, 10)
    assert pipe.names == ["top_k", "temperature", "presence_frequency"]


def test_order_changes_the_result():
    logits = torch.tensor([4.0, 3.0, 2.0, 1.0])
    first = SamplingSettings(top_k=1, presence_penalty=2.0)  # penalty first: token 1 becomes the best
    last = SamplingSettings(top_k=1, presence_penalty=2.0, order=["top_k", "presence_frequency"])
    for settings, want in ((first, {1}), (last, {0})):
        pipe = LogitsPipeline(settings, 4)
        history = pipe.start([])
        history.push([0])  # token 0 was generated
        assert kept(pipe(logits, history)) == want


def test_penalties_look_at_their_reference_spans():
    """Repetition: the whole input (prompt + generated); presence/frequency: the generated tokens only;
    the optional window limits all three to the last N tokens."""
    s = SamplingSettings(presence_penalty=1.0, repetition_penalty=2.0)
    pipe = LogitsPipeline(s, 5)
    history = pipe.start([0, 1])  # the prompt
    assert pipe(torch.ones(5), history).tolist() == [0.5, 0.5, 1.0, 1.0, 1.0]  # prompt: repetition only
    history.push([2])
    history.push([2])
    assert pipe(torch.ones(5), history).tolist() == [0.5, 0.5, -0.5, 1.0, 1.0]
    windowed = LogitsPipeline(s.replace(repetition_window=2), 5)
    history = windowed.start([0, 1])
    history.push([2])  # window now [1, 2]
    assert windowed(torch.ones(5), history).tolist() == [1.0, 0.5, -0.5, 1.0, 1.0]


def test_settings_validate_and_round_trip_through_json():
    s = SamplingSettings(top_k=5, logit_bias={3: -2.0}, banned=[1], stop=["\n\n"], seed=7)
    back = SamplingSettings.from_dict(json.loads(json.dumps(s.to_dict())))
    assert back == s
    for bad in (
        {"temperature": -1},
        {"top_p": 0.0},
        {"top_p": 1.5},
        {"typical_p": 0},
        {"top_k": -1},
        {"repetition_penalty": 0},
        {"epsilon": 1.0},
        {"order": ["top_k", "top_k"]},
        {"order": ["nonsense"]},
        {"stop": [""]},
    ):
        with pytest.raises(ConfigError):
            SamplingSettings(**bad).validate()
    with pytest.raises(ConfigError):
        SamplingSettings(banned=[10]).validate(vocab_size=10)
    with pytest.raises(ConfigError):
        SamplingSettings.from_dict({"temprature": 1.0})


# ---------------------------------------------------------------------------------------- chooser


def test_chooser_is_reproducible_with_a_seed():
    logits = torch.randn(50, generator=torch.Generator().manual_seed(0))

    def draw(seed):
        chooser = TokenChooser(SamplingSettings(seed=seed), 50)
        return [chooser.choose(logits).token for _ in range(40)]

    assert draw(1) == draw(1)
    assert draw(1) != draw(2)


def test_chooser_reports_raw_and_processed_probabilities():
    logits = logits_of(0.5, 0.3, 0.15, 0.05)
    chooser = TokenChooser(SamplingSettings(top_k=2, seed=0, top_alternatives=3), 4)
    seen = set()
    for _ in range(200):
        c = chooser.choose(logits)
        seen.add(c.token)
        assert c.raw_prob == pytest.approx([0.5, 0.3][c.token], rel=1e-5)
        assert c.prob == pytest.approx([0.625, 0.375][c.token], rel=1e-5)
        # the kept tokens in processed order, then the one top-k removed (processed p 0, its raw p)
        assert [(t, round(p, 3), round(r, 3)) for t, p, r in c.top] == [(0, 0.625, 0.5), (1, 0.375, 0.3), (2, 0.0, 0.15)]
        assert c.entropy == pytest.approx(-(0.625 * math.log(0.625) + 0.375 * math.log(0.375)), rel=1e-5)
    assert seen == {0, 1}


def test_greedy_chooser_and_forced_token():
    logits = torch.tensor([0.0, 2.0, 2.0, 1.0])
    chooser = TokenChooser(SamplingSettings(temperature=0.0), 4)
    c = chooser.choose(logits)
    assert c.token == 1 and c.prob == 1.0 and c.entropy == 0.0
    forced = chooser.choose(logits, force=3)
    assert forced.token == 3 and forced.prob == 0.0 and forced.raw_prob == pytest.approx(math.e / (1 + 2 * math.e**2 + math.e))
    with pytest.raises(ConfigError):
        chooser.choose(logits, force=9)


def test_uniform_entropy_is_log_vocab():
    c = TokenChooser(SamplingSettings(seed=0), 16).choose(torch.zeros(16))
    assert c.entropy == pytest.approx(math.log(16), rel=1e-6)


def test_every_token_removed_is_a_one_line_error():
    chooser = TokenChooser(SamplingSettings(no_repeat_ngram=1, seed=0), 3)
    chooser.start([0, 1, 2])
    with pytest.raises(ConfigError, match="removed every token"):
        chooser.choose(torch.zeros(3))
