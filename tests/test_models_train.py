"""Every model can learn: it overfits a 200-character text to near-zero loss (small widths, a few hundred
Adam steps), MLM masking follows BERT's rule, and (slow) seq2seq learns to reverse strings."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from engine.models.registry import build_model, make_config

TEXT = (
    "First Citizen: Before we proceed any further, hear me speak. All: Speak, speak. First Citizen: "
    "You are all resolved rather to die than to famish? All: Resolved. resolved. First Citizen: First, "
    "you know Caius Marcius is chief enemy"
)[:200]
CHARS = sorted(set(TEXT))
IDS = torch.tensor([CHARS.index(c) for c in TEXT])
V = len(CHARS)
SMALL = dict(embed=32, width=64, layers=1, heads=4, context=200, dropout=0.0)


def _fit(model, batch_fn, steps: int, lr: float) -> None:
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        _, loss, _ = model(*batch_fn())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: on a shared 2-core machine more threads made these tests ~10x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("arch,over,steps,lr", [
    ("mlp", {"context": 8, "width": 128}, 60, 1e-2),
    ("rnn", {}, 150, 1e-2),
    ("ugrnn", {}, 100, 2e-2),
    ("gru", {}, 100, 2e-2),
    ("lstm", {}, 150, 2e-2),
    ("transformer", {}, 75, 1e-2),
])
def test_lm_overfits_200_characters(arch, over, steps, lr):
    torch.manual_seed(0)
    model = build_model(arch, make_config(arch, V, **{**SMALL, **over}))
    x, y = IDS[:-1][None], IDS[1:][None]
    _, before, _ = model(x, y)
    _fit(model, lambda: (x, y), steps, lr)
    with torch.no_grad():
        _, loss, _ = model(x, y)
    assert before.item() > 2.0 and loss.item() < 0.1, (before.item(), loss.item())


def test_ngram_overfits_by_counting():
    """A high order memorises the text: only the first few positions (short histories) cost much."""
    model = build_model("ngram", make_config("ngram", V, order=10, discount=0.1)).fit(IDS.numpy())
    _, loss, _ = model(IDS[:-1][None], IDS[1:][None])
    low = build_model("ngram", make_config("ngram", V, order=1)).fit(IDS.numpy())
    _, unigram, _ = low(IDS[:-1][None], IDS[1:][None])
    assert loss.item() < 0.1 < 2.0 < unigram.item()


@pytest.mark.parametrize("encoder,steps,lr", [("transformer", 120, 3e-3), ("lstm", 250, 1e-2)])
def test_mlm_overfits_masked_positions(encoder, steps, lr):
    torch.manual_seed(0)
    model = build_model("mlm", make_config("mlm", V + 1, encoder=encoder, **SMALL))
    gen = torch.Generator().manual_seed(0)
    batch = IDS[None].repeat(4, 1)
    _fit(model, lambda: model.masking(batch, gen), steps, lr)
    with torch.no_grad():
        _, loss, _ = model(*model.masking(IDS[None].repeat(16, 1), gen))
    assert loss.item() < 0.1, loss.item()
    holes = torch.zeros_like(IDS[None], dtype=torch.bool)
    holes[0, 50:53] = True
    assert torch.equal(model.fill_mask(IDS[None], holes), IDS[None])


def test_masking_follows_the_80_10_10_rule():
    idx = torch.randint(0, 50, (64, 256))
    inputs, targets = __import__("engine.models.mlm", fromlist=["masking"]).masking(
        idx, 51, 0.15, torch.Generator().manual_seed(0))
    chosen = targets != -100
    assert 0.14 < chosen.float().mean().item() < 0.16
    assert torch.equal(targets[chosen], idx[chosen])
    assert torch.equal(inputs[~chosen], idx[~chosen])
    as_mask = (inputs[chosen] == 50).float().mean().item()
    unchanged = (inputs[chosen] == idx[chosen]).float().mean().item()
    assert 0.77 < as_mask < 0.83 and 0.08 < unchanged < 0.13  # 10% kept (+ random draws of the same id)
    assert (inputs < 51).all()


def reverse_pairs(n: int, seed: int, alphabet: str = "abcdefghij", lo: int = 3, hi: int = 8) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        s = "".join(rng.choice(alphabet) for _ in range(rng.randint(lo, hi)))
        pairs.append((s, s[::-1]))
    return pairs


def encode_pairs(pairs, chars: str, vocab: int):
    from engine.models.seq2seq import Seq2Seq

    pad, bos, eos = Seq2Seq.special_ids(vocab)
    S = max(len(a) for a, _ in pairs)
    T = max(len(b) for _, b in pairs) + 1
    src = torch.full((len(pairs), S), pad)
    tgt_in = torch.full((len(pairs), T), pad)
    targets = torch.full((len(pairs), T), -100)
    for i, (a, b) in enumerate(pairs):
        src[i, : len(a)] = torch.tensor([chars.index(c) for c in a])
        ids = [chars.index(c) for c in b]
        tgt_in[i, : len(ids) + 1] = torch.tensor([bos] + ids)
        targets[i, : len(ids) + 1] = torch.tensor(ids + [eos])
    return src, tgt_in, targets


def exact_match(model, pairs, chars: str, vocab: int) -> float:
    from engine.generation.decoders import greedy_decode
    from engine.models.seq2seq import strip_specials

    src, _, _ = encode_pairs(pairs, chars, vocab)
    out = greedy_decode(model, src, max_len=12)
    hits = sum("".join(chars[i] for i in strip_specials(row.tolist(), vocab)) == b for row, (_, b) in zip(out, pairs))
    return hits / len(pairs)


def test_seq2seq_overfits_a_few_pairs():
    chars = "abcdefghij"
    vocab = len(chars) + 3
    pairs = reverse_pairs(16, seed=0)
    torch.manual_seed(0)
    model = build_model("seq2seq", make_config("seq2seq", vocab, embed=16, width=64, attention="additive"))
    batch = encode_pairs(pairs, chars, vocab)
    _fit(model, lambda: batch, 60, 1e-2)
    with torch.no_grad():
        _, loss, attn = model(*batch)
    assert loss.item() < 0.1 and exact_match(model, pairs, chars, vocab) == 1.0
    assert torch.allclose(attn.sum(-1), torch.ones_like(attn.sum(-1)), atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("attention", ["none", "additive", "dot", "bilinear"])
def test_seq2seq_learns_to_reverse(attention):
    """Each attention variant reaches >= 95% exact match on held-out reversals."""
    chars = "abcdefghij"
    vocab = len(chars) + 3
    torch.manual_seed(0)
    np.random.seed(0)
    model = build_model("seq2seq", make_config("seq2seq", vocab, embed=32, width=128, attention=attention))
    train = reverse_pairs(20000, seed=1, lo=3, hi=7)
    test = reverse_pairs(300, seed=2, lo=3, hi=7)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(1500):
        batch = encode_pairs(train[(step * 64) % len(train) :][:64], chars, vocab)
        model.train()
        _, loss, _ = model(*batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 250 == 249:
            model.eval()
            if exact_match(model, test, chars, vocab) >= 0.95:
                break
    model.eval()
    assert exact_match(model, test, chars, vocab) >= 0.95
