"""The compiled decode step (engine/models/native.py, decode_step.c): the same logits and cache as the
model's general path, refused (torch runs instead) for any tensor it does not read, built once per
machine, and a clean fallback when there is no working compiler."""

from __future__ import annotations

import os
import stat

import pytest
import torch

import engine.models.native as native
from engine.models.registry import build_model, make_config

V = 23


@pytest.fixture
def compiled():
    if native.library() is None:
        pytest.skip(f"no compiled decode step here: {native.status()}")
    return native


def model_with(**over):
    torch.manual_seed(0)
    cfg = dict(width=48, layers=2, heads=2, context=10, dropout=0.0)
    model = build_model("transformer", make_config("transformer", V, **{**cfg, **over})).eval()
    with torch.no_grad():  # sharpen the random init, and give every bias and LayerNorm a non-trivial value
        for p in model.parameters():
            p.mul_(3.0).add_(0.2 * torch.randn_like(p))
    return model


def close(a, b):
    """Equal up to float32 rounding in another summation order (the logits here reach about 13)."""
    return (a - b).abs().max() <= 1e-5 * b.abs().max()


def cached_logits(model, x):
    state, steps = model.init_state(x.size(0)), []
    with torch.inference_mode():
        for t in range(x.size(1)):
            logits, _, state = model(x[:, t : t + 1], state=state)
            steps.append(logits)
    return torch.cat(steps, 1), state


VARIANTS = [
    {},
    {"tie_weights": False, "bias": False, "positions": "sinusoidal"},
    {"width": 20, "heads": 4, "mlp_ratio": 2},  # head_dim 5: no full 16-wide block in a dot
    {"gelu": "tanh"},
]


@pytest.mark.parametrize("over", VARIANTS, ids=["default", "untied-nobias-sinusoidal", "narrow", "tanh-gelu"])
def test_compiled_step_equals_the_full_pass(compiled, over):
    over = dict(over)
    gelu = over.pop("gelu", None)
    model = model_with(**over)
    if gelu:
        for b in model.blocks:
            b.mlp[1].approximate = gelu
    ctx = model.max_context
    x = torch.randint(0, V, (3, ctx), generator=torch.Generator().manual_seed(4))
    full, _, _ = model(x)
    steps, state = cached_logits(model, x)
    assert state.plan[-1] is not None and state.bound  # the compiled step ran
    assert close(steps, full)
    _, _, general = model(x, use_cache=True)
    for a, b in zip(state.k + state.v, general.k + general.v):
        assert close(a, b)
    assert torch.equal(state.tokens, general.tokens) and state.pos == general.pos == ctx


def test_compiled_step_follows_a_beam_reorder(compiled):
    """A reordered cache (``KVCache.map``, as beam search does) is bound afresh: the step reads the new
    tensors, not the old ones."""
    model = model_with()
    x = torch.randint(0, V, (2, 6), generator=torch.Generator().manual_seed(1))
    _, state = cached_logits(model, x[:, :5])
    flipped = state.map(lambda t: t.flip(0).contiguous())
    with torch.inference_mode():
        logits, _, _ = model(x[:, 5:].flip(0), state=flipped)
    full, _, _ = model(x.flip(0))
    assert flipped.bound and flipped.bound[3][0] is flipped.k[0]
    assert close(logits[:, 0], full[:, 5])


def test_tensors_the_kernel_does_not_read_fall_back_to_torch(compiled):
    model = model_with()
    x = torch.randint(0, V, (2, 4), generator=torch.Generator().manual_seed(2))
    full, _, _ = model(x)
    # a cache tensor that is a non-contiguous view: refused, and the torch step gives the same logits
    state = model.init_state(2)
    state.k[0] = state.k[0].transpose(0, 1).contiguous().transpose(0, 1)
    with torch.inference_mode():
        steps = [model(x[:, t : t + 1], state=state)[0] for t in range(4)]
    assert state.bound is None and state.plan[-1] is not None
    assert close(torch.cat(steps, 1), full)
    # a bfloat16 model, or one whose weights are not where their shapes say: no compiled step at all
    assert native.decode_step(model_with().to(torch.bfloat16)) is None
    odd = model_with()
    odd.blocks[1].attn.qkv.weight = torch.nn.Parameter(torch.zeros(3 * 48, 40))
    assert native.decode_step(odd) is None
    unweighted = model_with()
    unweighted.blocks[0].ln1.weight = None  # a LayerNorm without its gain: the kernel would read a null pointer
    assert native.decode_step(unweighted) is None
    # with gradients on, the torch step runs (it builds a graph; the kernel would not)
    _, state = cached_logits(model, x[:, :1])
    logits, _, _ = model(x[:, 1:2], state=state)
    assert logits.requires_grad


def test_a_token_outside_the_vocabulary_is_refused_and_writes_nothing(compiled):
    model = model_with()
    _, state = cached_logits(model, torch.tensor([[1, 2]]))
    before = [t.clone() for t in state.k + state.v]
    with torch.inference_mode(), pytest.raises(IndexError, match="outside the vocabulary"):
        model(torch.tensor([[V]]), state=state)
    assert state.pos == 2 and all(torch.equal(a, b) for a, b in zip(before, state.k + state.v))


@pytest.fixture
def fresh(monkeypatch):
    """No library loaded yet in this process (each test here has its own SEQPLAY_HOME)."""
    monkeypatch.setattr(native, "_lib", None)
    monkeypatch.setattr(native, "_why", "")
    return monkeypatch


def test_built_once_then_loaded_from_the_cache(fresh, tmp_path):
    real = native._compiler()
    if real is None:
        pytest.skip("no C compiler here")
    log = tmp_path / "calls"
    wrapper = tmp_path / "cc"
    wrapper.write_text(f'#!/bin/sh\necho x >> "{log}"\nexec "{real}" "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    fresh.setenv("CC", str(wrapper))
    assert native.library() is not None and native.status() == "compiled (decode_step.c)"
    kernels = list((native.cache_folder()).glob("decode_step-*.so"))
    assert len(kernels) == 1 and log.read_text().count("x") == 1
    fresh.setattr(native, "_lib", None)  # a new process: loads the built file, compiles nothing
    assert native.library() is not None and log.read_text().count("x") == 1
    assert not [p for p in os.listdir(native.cache_folder()) if p.endswith(".tmp") or p.startswith("tmp")]


def test_a_damaged_built_file_is_built_again(fresh):
    cc = native._compiler()
    if cc is None:
        pytest.skip("no C compiler here")
    built = native.built_file(cc)
    built.write_bytes(b"\x7fELF truncated")
    assert native.library() is not None and built.read_bytes()[:4] == b"\x7fELF" and built.stat().st_size > 1000


@pytest.mark.parametrize("cc, why", [("/nonexistent/cc", "no C compiler"), ("false", "failed")])
def test_no_working_compiler_is_a_clean_fallback(fresh, cc, why):
    fresh.setenv("CC", cc)
    assert native.library() is None and why in native.status() and native.status().startswith("torch operations")
    model = model_with()
    x = torch.randint(0, V, (1, 5), generator=torch.Generator().manual_seed(3))
    steps, state = cached_logits(model, x)
    assert state.plan[-1] is None  # the torch step ran, with the same logits
    assert close(steps, model(x)[0])


def test_switched_off_by_the_environment(fresh):
    fresh.setenv("SEQPLAY_NATIVE", "0")
    assert native.library() is None and "SEQPLAY_NATIVE" in native.status()
