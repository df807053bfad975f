"""Each control against the reference it is named after: Hugging Face ``transformers``' own logits
processors (installed with the ``test`` extra) on hand-made and random logits, ties and long contexts
included; OpenAI's presence/frequency formula over the generated tokens only."""

from __future__ import annotations

import pytest
import torch

from engine.generation.processors import (
    LogitsPipeline,
    SamplingSettings,
    epsilon_filter,
    eta_filter,
    min_p_filter,
    top_k_filter,
    top_p_filter,
    typical_filter,
)

lp = pytest.importorskip("transformers.generation.logits_process")

INF = float("inf")


def kept(logits: torch.Tensor) -> set[int]:
    return {i for i, v in enumerate(logits.flatten().tolist()) if v != -INF}


def tied_logits(seed: int, vocab: int = 65) -> torch.Tensor:
    """Logits drawn from a few values, so most tokens tie with others (torch.sort's order among ties
    differs from a stable sort above 32 elements on the CPU, which the old filter got wrong)."""
    g = torch.Generator().manual_seed(seed)
    values = torch.tensor([0.0, 0.5, 1.0, 2.0])
    return values[torch.randint(0, 4, (vocab,), generator=g)]


@pytest.mark.parametrize("top_p", [0.1, 0.3, 0.5, 0.7, 0.9, 0.95])
def test_top_p_on_tied_logits_keeps_hugging_faces_set(top_p):
    warper = lp.TopPLogitsWarper(top_p=top_p)
    cases = [torch.zeros(4), torch.zeros(65), torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 2.0])]
    cases += [tied_logits(seed) for seed in range(30)] + [tied_logits(seed, 300) for seed in range(10)]
    for logits in cases:
        ours = top_p_filter(logits, top_p)
        ref = warper(None, logits[None].clone())
        assert kept(ours) == kept(ref), (logits.tolist(), top_p)
        assert torch.equal(ours[None], ref)


def test_top_p_uniform_matches_the_reference_exactly():
    # the case the old stable sort got wrong: which of the tied tokens survive is torch.sort's order
    ref = lp.TopPLogitsWarper(top_p=0.5)(None, torch.zeros(1, 65))
    assert kept(top_p_filter(torch.zeros(65), 0.5)) == kept(ref)
    stable = torch.sort(torch.zeros(65), stable=True).indices[:32]  # what a stable sort would remove
    assert kept(ref) != set(range(65)) - set(stable.tolist())


@pytest.mark.parametrize("seed", range(8))
def test_truncation_filters_equal_their_hugging_face_warpers(seed):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(50, generator=g) * 3
    if seed % 2:
        logits = torch.round(logits)  # plenty of ties
    pairs = [
        (top_k_filter(logits, 7), lp.TopKLogitsWarper(top_k=7)),
        (min_p_filter(logits, 0.1), lp.MinPLogitsWarper(min_p=0.1)),
        (typical_filter(logits, 0.6), lp.TypicalLogitsWarper(mass=0.6)),
        (epsilon_filter(logits, 0.01), lp.EpsilonLogitsWarper(epsilon=0.01)),
        (eta_filter(logits, 0.02), lp.EtaLogitsWarper(epsilon=0.02)),
    ]
    for ours, warper in pairs:
        ref = warper(None, logits[None].clone())
        assert kept(ours) == kept(ref), type(warper).__name__


def drive(settings: SamplingSettings, prompt: list[int], generated: list[int], logits: torch.Tensor) -> torch.Tensor:
    """Our chain after ``prompt`` and ``generated`` tokens, as a Generation feeds it."""
    pipe = LogitsPipeline(settings, logits.shape[-1])
    history = pipe.start(prompt)
    for t in generated:
        history.push([t])
    return pipe(logits.clone(), history)


def long_context(seed: int, vocab: int, n: int) -> list[int]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (n,), generator=g).tolist()


@pytest.mark.parametrize("penalty", [1.3, 0.7])
def test_repetition_penalty_over_a_long_context_equals_hugging_face(penalty):
    vocab = 300
    prompt, generated = long_context(1, vocab, 40), long_context(2, vocab, 160)  # 200 tokens >> 64
    logits = torch.randn(vocab, generator=torch.Generator().manual_seed(3)) * 4
    ours = drive(SamplingSettings(repetition_penalty=penalty), prompt, generated, logits)
    ref = lp.RepetitionPenaltyLogitsProcessor(penalty)(torch.tensor([prompt + generated]), logits[None].clone())
    assert torch.allclose(ours, ref[0])
    early = prompt[:5]  # a token seen only at the very start is still penalised (no 64-token window)
    only_early = [t for t in early if t not in prompt[5:] + generated]
    assert only_early and all(ours[t] != logits[t] for t in only_early)


def test_presence_and_frequency_count_generated_tokens_only_over_a_long_context():
    vocab = 100
    prompt, generated = long_context(4, vocab, 50), long_context(5, vocab, 120)
    logits = torch.randn(vocab, generator=torch.Generator().manual_seed(6))
    presence, frequency = 0.7, 0.3
    ours = drive(SamplingSettings(presence_penalty=presence, frequency_penalty=frequency), prompt, generated, logits)
    want = logits.clone()
    for t in range(vocab):
        c = generated.count(t)  # OpenAI: counts in the text generated so far, not the prompt
        want[t] -= presence * (c > 0) + frequency * c
    assert torch.allclose(ours, want)
    untouched = drive(SamplingSettings(presence_penalty=presence, frequency_penalty=frequency), prompt, [], logits)
    assert torch.equal(untouched, logits)  # nothing generated yet: nothing penalised


def test_the_repetition_window_is_an_option():
    vocab = 50
    prompt, generated = long_context(7, vocab, 30), long_context(8, vocab, 90)
    logits = torch.randn(vocab, generator=torch.Generator().manual_seed(9)) * 2
    ours = drive(SamplingSettings(repetition_penalty=1.5, repetition_window=64), prompt, generated, logits)
    ref = lp.RepetitionPenaltyLogitsProcessor(1.5)(torch.tensor([(prompt + generated)[-64:]]), logits[None].clone())
    assert torch.allclose(ours, ref[0])


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_no_repeat_ngram_equals_hugging_face_over_prompt_and_text(n):
    vocab = 6
    prompt, generated = long_context(10 + n, vocab, 30), long_context(20 + n, vocab, 70)
    logits = torch.zeros(vocab)
    pipe = LogitsPipeline(SamplingSettings(no_repeat_ngram=n), vocab)
    history = pipe.start(prompt)
    proc = lp.NoRepeatNGramLogitsProcessor(n)
    for t in generated:
        ours = pipe(logits.clone(), history)
        ref = proc(torch.tensor([history.ids[0]]), logits[None].clone())
        assert kept(ours) == kept(ref)
        history.push([t])


def test_temperature_equals_hugging_face():
    logits = torch.randn(1, 20)
    ours = drive(SamplingSettings(temperature=0.7), [], [], logits[0])
    assert torch.allclose(ours, lp.TemperatureLogitsWarper(0.7)(None, logits.clone())[0])
