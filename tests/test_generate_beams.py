"""Beam search runs the sampling chain's history stages (bans, no-repeat n-gram, penalties), ends LM
hypotheses at end-of-text and stop strings, and applies the length penalty to finished hypotheses."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from engine.data.tokenizers import build_tokenizer
from engine.generation.beams import beam_loop, beam_search
from engine.generation.processors import SamplingSettings
from engine.models.registry import build_model, make_config

TEXT = "the cat sat on the mat. the dog sat on the log. a cat and a dog met. " * 8


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer("char", TEXT)


@pytest.fixture(scope="module")
def gru(tok):
    torch.manual_seed(0)
    model = build_model("gru", make_config("gru", tok.vocab_size, width=32, embed=16, layers=1))
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)
    return model.eval()


def ngrams(ids: list[int], n: int) -> list[tuple[int, ...]]:
    return [tuple(ids[i : i + n]) for i in range(len(ids) - n + 1)]


def test_beams_honour_a_ban(gru, tok):
    prompt = tok.encode("the ").tolist()
    plain = beam_search(gru, prompt, width=3, max_tokens=20)
    common = max(set(plain[0].ids), key=list(plain[0].ids).count)
    banned = beam_search(gru, prompt, width=3, max_tokens=20, settings=SamplingSettings(banned=[common]))
    assert all(common not in b.ids for b in banned)
    assert banned[0].ids != plain[0].ids


@pytest.mark.parametrize("n", [2, 3])
def test_beams_honour_no_repeat_ngram_over_prompt_and_text(gru, tok, n):
    prompt = tok.encode("the cat ").tolist()
    plain = beam_search(gru, prompt, width=3, max_tokens=30)
    whole = prompt + list(plain[0].ids)
    assert len(set(ngrams(whole, n))) < len(ngrams(whole, n))  # without the rule it repeats
    found = beam_search(gru, prompt, width=3, max_tokens=30, settings=SamplingSettings(no_repeat_ngram=n))
    for b in found:
        grams = ngrams(prompt + list(b.ids), n)
        assert len(set(grams)) == len(grams)


def test_beams_apply_the_repetition_penalty_to_log_probs(gru, tok):
    prompt = tok.encode("the ").tolist()
    plain = beam_search(gru, prompt, width=2, max_tokens=15)
    penalised = beam_search(gru, prompt, width=2, max_tokens=15, settings=SamplingSettings(repetition_penalty=3.0))
    assert penalised[0].ids != plain[0].ids
    distinct = lambda b: len(set(b.ids)) / len(b.ids)  # noqa: E731
    assert distinct(penalised[0]) > distinct(plain[0])


def test_lm_beams_end_at_a_stop_string(gru, tok):
    prompt = tok.encode("the ").tolist()
    plain = tok.decode(list(beam_search(gru, prompt, width=3, max_tokens=40)[0].ids))
    stop = plain[3:5]  # a text the best hypothesis contains
    found = beam_search(gru, prompt, width=3, max_tokens=40, settings=SamplingSettings(stop=[stop]), tokenizer=tok)
    assert any(b.reason == "stop_string" for b in found)
    for b in found:
        if b.reason == "stop_string":
            assert stop not in b.text and tok.decode(list(b.ids)).startswith(b.text)
            assert stop in tok.decode(list(b.ids))


def test_lm_beams_end_at_the_tokenizers_end_of_text(gru, tok):
    eot_tok = copy.copy(tok)
    plain = beam_search(gru, tok.encode("the ").tolist(), width=3, max_tokens=20)
    eot_tok.eot_id = plain[0].ids[2]  # pretend the third token of the best beam is end-of-text
    found = beam_search(gru, tok.encode("the ").tolist(), width=3, max_tokens=20, tokenizer=eot_tok)
    assert any(b.reason == "eot" for b in found)
    assert all(eot_tok.eot_id not in b.ids for b in found if b.reason == "eot")


def test_length_penalty_acts_on_finished_hypotheses():
    """Token 0 ends at once with log p -1; token 1 leads to a 3-token ending worth -1.5 in all.
    score = logprob / len ** length_penalty: 0 prefers the short one, 2 the long one."""
    end = 2
    table = {
        (): [math.log(0.05), -0.5, -1.0],  # 0: unlikely, 1: to the long path, 2: end now (-1.0)
        (1,): [-9.0, -0.5, -9.0],
        (1, 1): [-9.0, -9.0, -0.5],  # ends with total -1.5 after 3 tokens
    }

    def step(beams, parents):
        rows = [table.get(tuple(b), [-9.0, -9.0, -0.1]) for b in beams]
        return torch.tensor(rows)

    short = beam_loop(step, 2, 0.0, 5, end, 3)
    long = beam_loop(step, 2, 2.0, 5, end, 3)
    assert short[0].ids == () and short[0].score == pytest.approx(-1.0)
    assert long[0].ids == (1, 1) and long[0].score == pytest.approx(-1.5 / 9)
    assert all(b.score == pytest.approx(b.logprob / max(len(b.ids) + (b.reason == "eot"), 1) ** 2.0) for b in long)


def test_beams_end_when_the_bans_leave_no_continuation(gru, tok):
    prompt = tok.encode("ab").tolist()
    found = beam_search(gru, prompt, width=3, max_tokens=40, settings=SamplingSettings(no_repeat_ngram=1))
    assert found and all(b.reason == "exhausted" for b in found)
    for b in found:  # every token at most once, prompt included: the vocabulary is used up
        assert len(set(prompt + list(b.ids))) == len(prompt) + len(b.ids) == tok.vocab_size
