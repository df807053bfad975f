"""The adaptive-softmax output option of the recurrent LMs (Grave et al. 2017)."""

from __future__ import annotations

import pytest
import torch

from engine.errors import ConfigError
from engine.models.registry import adaptive_cutoffs, build_model, make_config


def _model(vocab: int = 400, **kw):
    torch.manual_seed(0)
    return build_model("lstm", make_config("lstm", vocab, layers=1, width=32, embed=16, dropout=0.0, output="adaptive", **kw))


def test_cutoffs_and_parameter_count():
    assert adaptive_cutoffs(33_278) == [1_997, 9_983, 33_278]
    for vocab in (64, 400, 33_278):
        cfg = make_config("lstm", vocab, layers=2, width=200, embed=200, output="adaptive")
        assert sum(p.numel() for p in build_model("lstm", cfg).parameters()) == cfg.num_params()
    full = make_config("lstm", 33_278, layers=2, width=200, embed=200)
    assert make_config("lstm", 33_278, layers=2, width=200, embed=200, output="adaptive").num_params() < full.num_params() * 0.75


def test_distribution_sums_to_one_and_loss_is_its_nll():
    model = _model().eval()
    x = torch.randint(0, 400, (3, 9))
    y = torch.randint(0, 400, (3, 9))
    y[0, :4] = -100
    logits, loss, _ = model(x, y)
    assert torch.allclose(logits.exp().sum(-1), torch.ones(3, 9), atol=1e-5)
    keep = y != -100
    nll = -logits[keep].gather(1, y[keep][:, None]).mean()
    assert loss.item() == pytest.approx(nll.item(), rel=1e-5)
    assert torch.allclose(model.forward_steps(x).logits, logits, atol=1e-5)


def test_training_step_skips_the_full_distribution_and_learns():
    model = _model().train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x = torch.randint(0, 20, (4, 12))  # a few frequent ids: the shortlist
    first = None
    for _ in range(100):
        logits, loss, _ = model(x, (x + 1) % 20)
        assert logits is None
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = first if first is not None else loss.item()
    assert loss.item() < 0.5 < 2.0 < first  # the next id is a function of this one: learnable to ~0


def test_bad_combinations_are_refused():
    with pytest.raises(ConfigError, match="no single output matrix to tie"):
        make_config("lstm", 400, embed=32, width=32, tie_weights=True, output="adaptive").validate()
    with pytest.raises(ConfigError, match="at least 64"):
        make_config("lstm", 30, output="adaptive").validate()
    with pytest.raises(ConfigError, match="output must be"):
        make_config("lstm", 400, output="hierarchical").validate()
