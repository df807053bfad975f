"""The streaming generator: incremental state equals recomputation, seeding, text streaming, stop
conditions, step mode, beam search and the worker's GenerationJobs."""

from __future__ import annotations

import threading

import pytest
import torch
from torch import nn

from engine.data.tokenizers import build_tokenizer
from engine.errors import ConfigError
from engine.generation.generate import (
    Generation,
    GenerationJobs,
    TextStream,
    beam_search,
    generate_text,
    stream,
)
from engine.generation.processors import SamplingSettings
from engine.models.registry import build_model, make_config
from engine.worker.protocol import (
    CancelGeneration,
    ErrorEvent,
    Generate,
    GeneratedToken,
    GenerateStep,
    GenerationDone,
    event_from_json,
)

TEXT = "the cat sat on the mat. the dog sat on the log. a cat and a dog met. " * 8
SMALL = dict(width=32, embed=16, layers=2, heads=2, context=16, order=3)
LMS = ["ngram", "mlp", "rnn", "ugrnn", "gru", "lstm", "transformer"]


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer("char", TEXT)


def tiny(arch: str, tok, **over):
    torch.manual_seed(0)
    model = build_model(arch, make_config(arch, tok.vocab_size, **{**SMALL, **over}))
    if arch == "ngram":
        model.fit(tok.encode(TEXT).astype("int64"))
    else:  # sharpen the random init so greedy choices are far from ties
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(3.0)
    return model.eval()


def last_logits(model, ids: list[int]) -> torch.Tensor:
    with torch.inference_mode():
        return model(torch.tensor([ids]))[0][0, -1]


def greedy_recompute(model, prompt: list[int], n: int, window) -> list[int]:
    """Greedy decoding that recomputes from scratch at every step over ``window(step, ids)`` tokens."""
    ids, out = list(prompt), []
    for step in range(n):
        keep = window(step, ids)
        token = int(last_logits(model, ids[-keep:] if keep else ids).argmax())
        out.append(token)
        ids.append(token)
    return out


def kv_cache_windows(prompt_len: int, n: int, ctx: int) -> list[int]:
    """How many trailing tokens the Transformer's cache holds before each new token: the prompt goes in
    chunks of ctx - ctx//2, and when a piece would overflow, the last ctx//2 tokens are re-encoded."""
    chunk, keep = ctx - ctx // 2, ctx // 2
    pos, sizes = 0, []
    pieces = [min(chunk, prompt_len - i) for i in range(0, prompt_len, chunk)] + [1] * n
    for i, piece in enumerate(pieces):
        if pos + piece > ctx:
            pos = keep
        pos += piece
        if i >= len(pieces) - n - 1:
            sizes.append(pos)
    return sizes[:n]


@pytest.mark.parametrize("arch", LMS)
def test_greedy_with_state_equals_recomputation(arch, tok):
    """The default decoding is exact: the same tokens as recomputing the model's whole window per step."""
    model = tiny(arch, tok)
    prompt = tok.encode("the cat sat ").tolist()  # 12 tokens; 30 more overflow the 16-token context
    n = 30
    gen = Generation(model, tok, prompt, SamplingSettings(temperature=0.0, max_tokens=n))
    events = list(gen)
    got = [e.token for e in events]
    window = 16 if arch == "transformer" else None
    assert got == greedy_recompute(model, prompt, n, lambda step, ids: window)
    assert gen.reason == "max_tokens" and gen.text == tok.decode(got)
    assert "".join(e.text for e in events) == gen.text
    assert not gen.approximate


def test_window_threads_apply_to_the_recompute_only(tok, monkeypatch):
    """``window_threads`` sets torch's thread count while the window is recomputed past the context,
    and only then: cached tokens run on the caller's count, which is given back afterwards."""
    model = tiny("transformer", tok)
    seen = {"window": set(), "cached": set()}
    next_logits, forward = model.next_logits, model.forward

    def spy_window(x):
        seen["window"].add(torch.get_num_threads())
        return next_logits(x)

    def spy_cached(*a, **kw):
        seen["cached"].add(torch.get_num_threads())
        return forward(*a, **kw)

    monkeypatch.setattr(model, "next_logits", spy_window)
    monkeypatch.setattr(model, "forward", spy_cached)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        gen = Generation(model, tok, "ab", SamplingSettings(seed=0, max_tokens=model.max_context + 5), window_threads=2)
        for _ in gen:
            pass
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert seen == {"window": {2}, "cached": {1}}


@pytest.mark.parametrize("over", [{}, {"bias": False}, {"positions": "sinusoidal"}])
def test_next_logits_is_the_last_row_of_the_full_forward(tok, over):
    """The exact path's window pass (last block and head at the last position only) gives the logits of
    the whole forward's last position, for a full window and a shorter one."""
    model = tiny("transformer", tok, **over)
    ids = torch.randint(0, tok.vocab_size, (2, 16), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        for x in (ids, ids[:, :5]):
            assert torch.allclose(model.next_logits(x), model(x)[0][:, -1], atol=1e-5, rtol=1e-5)
    dropout = tiny("transformer", tok, dropout=0.5).train()  # dropout still acts while training
    with torch.no_grad():
        assert not torch.equal(dropout(ids)[0], dropout(ids)[0])


def test_slide_window_is_the_explicit_approximation(tok):
    """``window="slide"`` re-encodes half the cache when it fills: it equals recomputing the shorter,
    re-positioned windows the cache holds, and says it is approximate."""
    model = tiny("transformer", tok)
    prompt = tok.encode("the cat sat ").tolist()
    n = 30
    gen = Generation(model, tok, prompt, SamplingSettings(temperature=0.0, max_tokens=n), window="slide")
    got = [e.token for e in gen]
    sizes = kv_cache_windows(len(prompt), n, 16)
    assert min(sizes) < 16 and max(sizes) == 16  # the window filled up and slid
    assert got == greedy_recompute(model, prompt, n, lambda step, ids: sizes[step])
    assert gen.approximate


@pytest.mark.parametrize("arch", LMS)
def test_forced_text_probabilities_equal_recomputation(arch, tok):
    """Along a varied forced text (step mode), every step's distribution equals a from-scratch pass."""
    model = tiny(arch, tok)
    prompt = tok.encode("the dog ").tolist()
    forced = tok.encode("sat on the log. a cat met").tolist()  # 8 + 25 tokens overflow the context
    gen = Generation(model, tok, prompt, SamplingSettings(max_tokens=len(forced), top_alternatives=3))
    keep = 16 if arch == "transformer" else None
    ids = list(prompt)
    for token in forced:
        event = gen.next(choose=token)
        probs = last_logits(model, ids[-keep:] if keep else ids).softmax(-1)
        assert event.raw_prob == pytest.approx(float(probs[token]), rel=1e-4, abs=1e-6)
        assert [a.prob for a in event.top] == pytest.approx(probs.topk(3).values.tolist(), rel=1e-4, abs=1e-6)
        ids.append(token)
    assert gen.text == tok.decode(forced)


def sample_recompute(model, prompt: list[int], n: int, window: int | None, seed: int, temperature: float = 1.0):
    """Sampling by recomputing the whole window at every step, drawing each token by the inverse CDF of
    softmax(l / T) at the uniforms of seed's stream (float64: the first token whose CDF exceeds u)."""
    us = torch.rand(256, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).tolist()
    ids, out = list(prompt), []
    for step in range(n):
        probs = (last_logits(model, ids[-window:] if window else ids).double() / temperature).softmax(-1)
        cdf = probs.cumsum(-1)
        token = int((cdf <= us[step] * cdf[-1]).sum())
        out.append(token)
        ids.append(token)
    return out


@pytest.mark.parametrize("arch", ["transformer", "lstm", "mlp"])
def test_default_sampling_equals_recomputing_the_window_past_the_context(arch, tok):
    model = tiny(arch, tok)
    prompt = tok.encode("a cat and a dog met. the").tolist()  # 24 tokens > context 16
    n = 40
    gen = Generation(model, tok, prompt, SamplingSettings(seed=5, max_tokens=n, temperature=1.3))
    got = [e.token for e in gen]
    window = 16 if arch == "transformer" else None
    assert got == sample_recompute(model, prompt, n, window, seed=5, temperature=1.3)
    assert len(set(got)) > 3  # a real sample, not a constant


def test_streamed_probabilities_match_the_model(tok):
    model = tiny("lstm", tok)
    settings = SamplingSettings(seed=3, top_k=4, max_tokens=10, top_alternatives=3)
    prompt = tok.encode("the dog").tolist()
    ids = list(prompt)
    for event in stream(model, tok, prompt, settings):
        raw = last_logits(model, ids).softmax(-1)
        assert event.raw_prob == pytest.approx(float(raw[event.token]), rel=1e-4)
        top4 = raw.topk(4)
        kept = top4.values / top4.values.sum()
        assert event.token in top4.indices.tolist()
        assert [a.token for a in event.top] == top4.indices[:3].tolist()
        assert event.prob == pytest.approx(float(kept[top4.indices.tolist().index(event.token)]), rel=1e-4)
        assert event.entropy == pytest.approx(float(-(kept * kept.log()).sum()), rel=1e-4)
        ids.append(event.token)


def test_alternatives_show_what_top_k_removed_with_their_raw_probability(tok):
    """With top_k=2 the report keeps the 2 survivors (processed order) and adds the next raw-top tokens
    with processed p 0 and raw p = softmax of a direct forward's logits."""
    model = tiny("lstm", tok)
    settings = SamplingSettings(seed=1, top_k=2, max_tokens=6, top_alternatives=5)
    prompt = tok.encode("the dog").tolist()
    ids = list(prompt)
    gen = Generation(model, tok, prompt, settings)
    peeked = gen.peek()
    for event in gen:
        raw = last_logits(model, ids).softmax(-1)
        top5 = raw.topk(5)
        assert [a.token for a in event.top] == top5.indices.tolist()
        assert [a.raw_prob for a in event.top] == pytest.approx(top5.values.tolist(), rel=1e-4)
        assert [a.removed for a in event.top] == [False, False, True, True, True]
        kept = top5.values[:2] / top5.values[:2].sum()
        assert [a.prob for a in event.top] == pytest.approx([*kept.tolist(), 0.0, 0.0, 0.0], rel=1e-4)
        if event.index == 0:
            assert peeked == event.top  # peek reports what next() then reports
        assert event_from_json(event.to_json()) == event  # the worker protocol carries them whole
        ids.append(event.token)


def test_same_seed_same_text_different_seed_differs(tok):
    model = tiny("gru", tok)

    def run(seed):
        return generate_text(model, tok, "the ", SamplingSettings(seed=seed, max_tokens=60))

    assert run(5) == run(5)
    assert run(5) != run(6)


def test_empty_prompt_starts_from_a_newline(tok):
    model = tiny("rnn", tok)
    gen = Generation(model, tok, "", SamplingSettings(seed=0, max_tokens=5))
    assert gen.prompt_ids == tok.encode("\n").tolist()[:1] or gen.prompt_ids == [0]
    assert len(list(gen)) == 5


def test_cancel_between_tokens(tok):
    model = tiny("rnn", tok)
    cancel = threading.Event()
    it = stream(model, tok, "the", SamplingSettings(seed=0, max_tokens=100), cancel)
    seen = []
    with pytest.raises(StopIteration) as stop:
        while True:
            seen.append(next(it))
            if len(seen) == 3:
                cancel.set()
    done = stop.value.value
    assert isinstance(done, GenerationDone) and done.reason == "cancelled" and len(seen) == 3


class _WithEot:
    """A char tokenizer whose '.' is the end-of-text token."""

    def __init__(self, tok):
        self.tok = tok
        self.eot_id = int(tok.encode(".")[0])

    def __getattr__(self, name):
        return getattr(self.tok, name)


def test_end_of_text_stops_and_is_not_in_the_text(tok):
    model = tiny("lstm", tok)
    etok = _WithEot(tok)
    settings = SamplingSettings(seed=0, max_tokens=50, logit_bias={etok.eot_id: 50.0})
    gen = Generation(model, etok, "the", settings)
    events = list(gen)
    assert gen.reason == "eot" and len(events) == 1 and events[0].token == etok.eot_id
    assert gen.text == "" and gen.generated == []


def test_stop_string_ends_generation_before_it(tok):
    model = tiny("lstm", tok)
    full = generate_text(model, tok, "the ", SamplingSettings(temperature=0.0, max_tokens=40))
    stop = full[10:13]
    gen = Generation(model, tok, "the ", SamplingSettings(temperature=0.0, max_tokens=40, stop=[stop]))
    events = list(gen)
    assert gen.reason == "stop_string"
    assert gen.text == full[: full.index(stop)]
    assert "".join(e.text for e in events) == gen.text


def test_text_stream_handles_partial_utf8_and_split_stop_strings():
    btok = build_tokenizer("byte", "")
    text = "héllo wörld 世界 ok"
    ts = TextStream(btok)
    deltas = [ts.push(b) for b in text.encode("utf-8")]
    deltas.append(ts.finish())
    assert "".join(deltas) == text and not any("\ufffd" in d for d in deltas)
    assert "" in deltas  # the bytes of a multi-byte character were held back
    ts = TextStream(btok, stops=["wör"])
    out = "".join(ts.push(b) for b in text.encode("utf-8")) + ts.finish()
    assert out == "héllo " and ts.stopped
    ts = TextStream(btok, stops=["lox"])  # a prefix of the stop string is held back, then released
    pieces = [ts.push(b) for b in b"hello"]
    assert "".join(pieces) == "hel" and ts.finish() == "lo"


def test_bpe_stream_adds_up_to_the_decoded_text():
    btok = build_tokenizer("bpe", "naïve café résumé, 世界 " * 60, vocab_size=300)
    model = tiny("gru", btok)
    gen = Generation(model, btok, "café", SamplingSettings(seed=1, max_tokens=80))
    events = list(gen)
    assert "".join(e.text for e in events) == btok.decode(gen.generated) == gen.text


def test_step_mode_choose_back_and_peek(tok):
    model = tiny("transformer", tok)
    settings = SamplingSettings(temperature=0.0, max_tokens=20)
    gen = Generation(model, tok, "the cat", settings)
    first = [gen.next().token for _ in range(6)]
    alternatives = gen.peek()
    nxt = gen.next()
    assert nxt.token == alternatives[0].token and [a.token for a in nxt.top] == [a.token for a in alternatives]
    gen.back(3)
    assert gen.generated == first[:4]
    assert [gen.next().token for _ in range(2)] == first[4:6]  # same greedy path after rewinding
    forced = next(t for t in range(tok.vocab_size) if t != nxt.token)
    event = gen.next(choose=forced)
    assert event.token == forced and event.prob == 0.0  # greedy gives other tokens probability 0
    assert event.raw_prob > 0.0


class TableLM(nn.Module):
    """P(next | last token) from a fixed table: a model whose best sequence greedy misses."""

    task, arch, max_context, recurrent = "lm", "table", None, False

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.table = table.log()
        self.config = type("Config", (), {"vocab_size": table.shape[1]})()

    def forward(self, idx, targets=None, state=None):
        return self.table[idx], None, state


def test_beam_search_finds_what_greedy_misses():
    # tokens: 0 start, 1 A, 2 B, 3 C, 4 D, 5 E. Greedy: A (0.6) then 0.34 -> 0.204. Beam: B C = 0.36.
    t = torch.full((6, 6), 1e-6)
    t[0, 1], t[0, 2] = 0.6, 0.4
    t[1, 3], t[1, 4], t[1, 5] = 0.34, 0.33, 0.33
    t[2, 3] = 0.9
    t[3, 0] = t[4, 0] = t[5, 0] = 1.0
    t = t / t.sum(1, keepdim=True)
    model = TableLM(t)
    assert beam_search(model, [0], width=1, max_tokens=2)[0].ids == (1, 3)
    best = beam_search(model, [0], width=2, max_tokens=2)[0]
    assert best.ids == (2, 3) and best.logprob == pytest.approx(float(t[0, 2].log() + t[2, 3].log()), rel=1e-5)
    # end-of-text finishes hypotheses; the length penalty trades length against log-probability
    beams = beam_search(model, [0], width=2, max_tokens=5, eot_id=0)
    assert all(0 not in b.ids for b in beams) and beams[0].ids == (2, 3)


def test_beam_search_carries_recurrent_state_like_recomputation(tok):
    model = tiny("lstm", tok)
    prompt = tok.encode("the cat").tolist()
    carried = beam_search(model, prompt, width=3, max_tokens=8)
    model.recurrent = False  # the same search, recomputing the whole sequence every step
    try:
        recomputed = beam_search(model, prompt, width=3, max_tokens=8)
    finally:
        model.recurrent = True
    assert [b.ids for b in carried] == [b.ids for b in recomputed]
    assert [b.score for b in carried] == pytest.approx([b.score for b in recomputed], rel=1e-4)
    greedy = Generation(model, tok, prompt, SamplingSettings(temperature=0.0, max_tokens=8))
    assert beam_search(model, prompt, width=1, max_tokens=8)[0].ids == tuple(e.token for e in greedy)


def test_generation_jobs_stream_step_and_cancel(tok):
    model = tiny("gru", tok)
    events = []
    jobs = GenerationJobs(events.append)
    jobs.handle(Generate(gen_id="g1", prompt="the", settings={"seed": 0}, max_tokens=12), live=(model, tok))
    assert jobs.busy
    while jobs.busy:
        jobs.pump()
    tokens = [e for e in events if isinstance(e, GeneratedToken)]
    done = [e for e in events if isinstance(e, GenerationDone)]
    assert len(tokens) == 12 and len(done) == 1 and done[0].reason == "max_tokens"
    assert done[0].text == "".join(t.text for t in tokens) and all(t.job == "g1" for t in tokens)
    assert model.training is False

    events.clear()
    model.train()  # a model being trained is generated from in eval mode, then handed back
    jobs.handle(Generate(gen_id="g2", prompt="the", settings={"temperature": 0}, step_mode=True), live=(model, tok))
    jobs.pump()
    assert events == [] and not jobs.busy
    jobs.handle(GenerateStep(gen_id="g2"))
    jobs.handle(GenerateStep(gen_id="g2", choose=3))
    assert [e.token for e in events][1] == 3 and model.training
    jobs.handle(CancelGeneration(gen_id="g2"))
    assert isinstance(events[-1], GenerationDone) and events[-1].reason == "cancelled"

    events.clear()
    jobs.handle(Generate(gen_id="g3", prompt="x", source=None))  # nothing to generate from
    assert isinstance(events[0], ErrorEvent) and events[-1].reason == "error"
    events.clear()
    jobs.handle(Generate(gen_id="g4", prompt="x", source="/no/such/run"))
    assert isinstance(events[0], ErrorEvent) and "\n" not in events[0].message


def test_bad_settings_are_config_errors(tok):
    model = tiny("rnn", tok)
    with pytest.raises(ConfigError):
        Generation(model, tok, "the", SamplingSettings(top_p=0.0))
    with pytest.raises(ConfigError):
        Generation(model, tok, "the", window="sideways")


def test_seq2seq_greedy_sampled_and_beam(tok):
    from engine.generation.generate import greedy_decode, seq2seq_decode
    from engine.models.seq2seq import strip_specials

    vocab = tok.vocab_size + 3
    for attention in ("additive", "none"):
        torch.manual_seed(0)
        model = build_model("seq2seq", make_config("seq2seq", vocab, width=32, embed=16, context=20, attention=attention)).eval()
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(3.0)
        greedy = seq2seq_decode(model, tok, "the cat", SamplingSettings(temperature=0.0, max_tokens=20))
        src = torch.tensor([tok.encode("the cat").tolist()])
        assert greedy == strip_specials(greedy_decode(model, src, 20)[0].tolist(), vocab)
        assert seq2seq_decode(model, tok, "the cat", SamplingSettings(max_tokens=20), beams=1) == greedy
        beams = seq2seq_decode(model, tok, "the cat", SamplingSettings(max_tokens=20), beams=3)
        assert all(0 <= t < tok.vocab_size for t in beams)
        a = seq2seq_decode(model, tok, "the dog", SamplingSettings(seed=4, max_tokens=20))
        assert a == seq2seq_decode(model, tok, "the dog", SamplingSettings(seed=4, max_tokens=20))
        assert all(0 <= t < tok.vocab_size for t in a)


def test_mlm_fills_blanks_left_to_right(tok):
    from engine.generation.generate import fill_blanks, split_blanks

    assert split_blanks("a _ c [MASK]") == ["a ", None, " c ", None]
    torch.manual_seed(0)
    model = build_model("mlm", make_config("mlm", tok.vocab_size + 1, width=32, heads=2, layers=1, context=32)).eval()
    text, filled = fill_blanks(model, tok, "the _at sat on [MASK]he mat")
    assert len(filled) == 2 and len(text) == len("the cat sat on the mat")
    ids = tok.encode("the cat sat on the mat").tolist()
    ids[4] = ids[15] = model.mask_token_id
    logits = model(torch.tensor([ids]))[0][0]
    logits[:, model.mask_token_id] = float("-inf")
    assert filled[0].token == int(logits[4].argmax())  # the first blank sees the second as [MASK]
    ids[4] = filled[0].token
    logits = model(torch.tensor([ids]))[0][0]
    logits[:, model.mask_token_id] = float("-inf")
    assert filled[1].token == int(logits[15].argmax())  # the second sees the first filled in
    assert text == tok.decode(ids[:15] + [filled[1].token] + ids[16:])
    with pytest.raises(ConfigError, match="no blank"):
        fill_blanks(model, tok, "no blanks here")


def test_char_stream_shortcut_adds_up_to_the_decoded_text(tok):
    assert tok.unk_id is not None
    ids = tok.encode("the cat sat on the mat. a dog").tolist() + [tok.unk_id]
    ts = TextStream(tok, stops=["zz"])
    assert ts.pieces is not None  # the char tokenizer takes the per-id path
    out = "".join(ts.push(t) for t in ids) + ts.finish()
    assert out == tok.decode(ids)
    ts = TextStream(tok, stops=["at."])
    out = "".join(ts.push(t) for t in ids) + ts.finish()
    assert out == "the cat sat on the m" and ts.stopped


def test_generate_text_runs_in_eval_mode_and_leaves_the_rng_alone(tok):
    model = tiny("lstm", tok, dropout=0.5).train()
    s = SamplingSettings(seed=2, max_tokens=30)
    state = torch.get_rng_state()
    first = generate_text(model, tok, "the ", s)
    assert torch.equal(state, torch.get_rng_state()) and model.training
    assert generate_text(model, tok, "the ", s) == first  # no dropout noise: the same text again
    assert first == generate_text(model.eval(), tok, "the ", s)
