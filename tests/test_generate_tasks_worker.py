"""The worker's GenerationJobs on seq2seq and masked-LM models: greedy line mapping and blank filling,
streamed as GeneratedToken events (step mode too), without a worker process."""

from __future__ import annotations

import pytest
import torch

from engine.data.tokenizers import build_tokenizer
from engine.generation.generate import GenerationJobs, seq2seq_decode
from engine.generation.processors import SamplingSettings
from engine.models.registry import build_model, make_config
from engine.worker.protocol import ErrorEvent, Generate, GeneratedToken, GenerateStep, GenerationDone

TEXT = "the cat sat on the mat. the dog sat on the log.\n" * 10
LM_SETTINGS = {"temperature": 1.0, "top_k": 5, "seed": 3}  # what the TUI sends: ignored for greedy decoding


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer("char", TEXT)


def model(arch: str, vocab: int, **over):
    torch.manual_seed(1)
    return build_model(arch, make_config(arch, vocab, **over)).eval()


def run_jobs(live, **cmd) -> tuple[list[GeneratedToken], GenerationDone]:
    events: list = []
    jobs = GenerationJobs(events.append)
    jobs.handle(Generate(gen_id="g", **cmd), live=live)
    while jobs.busy:
        jobs.pump()
    assert not [e for e in events if isinstance(e, ErrorEvent)], events
    tokens = [e for e in events if isinstance(e, GeneratedToken)]
    done = [e for e in events if isinstance(e, GenerationDone)]
    assert len(done) == 1 and events[-1] is done[0]
    return tokens, done[0]


def test_seq2seq_maps_each_line_greedily_token_by_token(tok):
    s2s = model("seq2seq", tok.vocab_size + 3, width=32, embed=16, context=16)
    eos = s2s.special_ids(s2s.config.vocab_size)[2]
    lines = ["the cat", "a dog sat", "mat"]
    tokens, done = run_jobs((s2s, tok), prompt="\n".join(lines), settings=LM_SETTINGS, max_tokens=6)
    expected = [tok.decode(seq2seq_decode(s2s, tok, line, SamplingSettings(temperature=0.0, max_tokens=6))) for line in lines]
    assert done.text == "\n".join(expected) and done.text == "".join(t.text for t in tokens)
    outputs = [t for t in tokens if t.token != eos]
    assert len(outputs) == sum(len(e) for e in expected)  # char tokenizer: one token per output character
    assert len(tokens) == len(outputs) + sum(len(e) < 6 for e in expected)  # plus the eos of lines that ended
    assert [t.index for t in tokens] == list(range(len(tokens)))
    for t in tokens:  # greedy: each token is the most probable alternative; top_k=5 renormalises its mass
        assert t.top[0].token == t.token and len(t.top) <= 5 and 0.0 < t.raw_prob <= t.prob <= 1.0


def test_seq2seq_step_mode_forcing_eos_ends_the_line(tok):
    s2s = model("seq2seq", tok.vocab_size + 3, width=32, embed=16, context=16)
    eos = s2s.special_ids(s2s.config.vocab_size)[2]
    events: list = []
    jobs = GenerationJobs(events.append)
    jobs.handle(Generate(gen_id="s", prompt="cat\ndog", step_mode=True, max_tokens=4), live=(s2s, tok))
    jobs.handle(GenerateStep(gen_id="s", choose=tok.encode("g")[0]))
    jobs.handle(GenerateStep(gen_id="s", choose=eos))  # first line ends here: "g" then a line break
    assert [e.text for e in events] == ["g", "\n"] and events[1].token == eos
    for _ in range(4):
        jobs.handle(GenerateStep(gen_id="s"))
    done = events[-1]
    second = tok.decode(seq2seq_decode(s2s, tok, "dog", SamplingSettings(temperature=0.0, max_tokens=4)))
    assert isinstance(done, GenerationDone) and done.text == "g\n" + second


def test_mlm_fills_each_blank_as_one_event(tok):
    mlm = model("mlm", tok.vocab_size + 1, width=32, heads=2, layers=1, context=32)
    prompt = "the _at sat on the m_t"
    tokens, done = run_jobs((mlm, tok), prompt=prompt, settings=LM_SETTINGS)
    # Independent greedy reference: each blank in turn, argmax over the vocabulary without [MASK].
    ids = [int(i) for i in tok.encode(prompt.replace("_", "?"))]
    blanks = [i for i, ch in enumerate(prompt) if ch == "_"]
    for pos in blanks:
        ids[pos] = mlm.mask_token_id
    for pos in blanks:
        with torch.no_grad():
            logits = mlm(torch.tensor([ids]))[0][0, pos]
        logits[mlm.mask_token_id] = float("-inf")
        ids[pos] = int(logits.argmax())
    assert [t.token for t in tokens] == [ids[p] for p in blanks]
    assert done.reason == "eot" and done.text == tok.decode(ids) == "".join(t.text for t in tokens)
    assert len(done.text) == len(prompt) and done.text[:4] == "the " and done.text[5:20] == "at sat on the m"


def test_mlm_step_mode_choice_is_kept_and_bad_prompts_are_errors(tok):
    mlm = model("mlm", tok.vocab_size + 1, width=32, heads=2, layers=1, context=32)
    events: list = []
    jobs = GenerationJobs(events.append)
    jobs.handle(Generate(gen_id="m", prompt="_og and _at", step_mode=True), live=(mlm, tok))
    jobs.handle(GenerateStep(gen_id="m", choose=tok.encode("d")[0]))
    jobs.handle(GenerateStep(gen_id="m"))
    done = events[-1]
    assert events[0].text == "d" and isinstance(done, GenerationDone) and done.text.startswith("dog and ")
    events.clear()
    jobs.handle(Generate(gen_id="n", prompt="no blanks here"), live=(mlm, tok))
    assert isinstance(events[0], ErrorEvent) and "blank" in events[0].message
    assert isinstance(events[-1], GenerationDone) and events[-1].reason == "error"
