"""Optimizers at their defaults: every one learns; weight decay is AdamW's decoupled decay, L2 is --l2."""

from __future__ import annotations

import pytest
import torch

from engine.errors import ConfigError
from engine.training.config import OPTIMIZERS, TrainConfig
from engine.training.optim import build_optimizer
from engine.training.trainer import Trainer
from tests.train_helpers import Recorder

UNIGRAM_SLACK = 0.25  # "learns": validation at least this far below the unigram entropy of the data


def _lstm_run(tmp_path, optimizer: str, **kw) -> tuple[float, float]:
    """(final validation loss, unigram entropy of the training split) after 150 LSTM steps."""
    cfg = TrainConfig(source="grammar:size=200000", arch="lstm", model=dict(layers=1, width=64, embed=64),
                      context=64, batch_size=32, steps=150, eval_every=150, sample_every=0, optimizer=optimizer,
                      runs_dir=str(tmp_path / "runs"), threads=1, precision="fp32", **kw)
    rec = Recorder()
    trainer = Trainer(cfg, rec)
    fin = trainer.run()
    assert fin.reason == "done"
    counts = torch.bincount(torch.from_numpy(trainer.data.train_ids.copy()), minlength=trainer.tokenizer.vocab_size).double()
    p = counts[counts > 0] / counts.sum()
    return rec.of("eval")[-1].val_loss, float(-(p * p.log()).sum())


def test_adam_and_adamw_at_their_defaults_both_learn_and_agree(tmp_path):
    adamw, unigram = _lstm_run(tmp_path, "adamw")
    adam, _ = _lstm_run(tmp_path, "adam")
    assert adamw < unigram - UNIGRAM_SLACK and adam < unigram - UNIGRAM_SLACK, (adamw, adam, unigram)
    assert abs(adam - adamw) < 0.1, (adam, adamw)


@pytest.mark.parametrize("optimizer", ["sgd", "rmsprop", "adagrad"])
def test_every_other_optimizer_learns_at_its_default_learning_rate(tmp_path, optimizer):
    val, unigram = _lstm_run(tmp_path, optimizer)
    assert val < unigram - UNIGRAM_SLACK, (optimizer, val, unigram)


def test_weight_decay_is_decoupled_and_l2_is_named():
    w = torch.nn.Parameter(torch.ones(2, 2))
    opt = build_optimizer("adamw", [w], 0.1, TrainConfig(optimizer="adamw", weight_decay=0.5))
    w.grad = torch.zeros(2, 2)
    opt.step()  # zero gradient: only the decoupled decay moves w, by lr * lambda * w
    assert torch.allclose(w, torch.full((2, 2), 1 - 0.1 * 0.5))
    assert TrainConfig(optimizer="adamw").validate() and build_optimizer(
        "adamw", [w], 0.1, TrainConfig()).param_groups[0]["weight_decay"] == 0.1  # the default decay
    v = torch.nn.Parameter(torch.ones(2, 2))
    sgd = build_optimizer("sgd", [v], 0.1, TrainConfig(optimizer="sgd", l2=0.5, momentum=0.0))
    v.grad = torch.zeros(2, 2)
    sgd.step()  # L2: g <- g + lambda * w = 0.5, then w <- w - lr * g
    assert torch.allclose(v, torch.full((2, 2), 1 - 0.1 * 0.5))
    for optimizer in OPTIMIZERS:  # no decay unless asked for, except AdamW's default
        groups = build_optimizer(optimizer, [torch.nn.Parameter(torch.ones(2, 2))], 0.1, TrainConfig(optimizer=optimizer)).param_groups
        assert groups[0]["weight_decay"] == (0.1 if optimizer == "adamw" else 0.0)


@pytest.mark.parametrize("optimizer", ["adam", "sgd", "rmsprop", "adagrad"])
def test_weight_decay_for_an_optimizer_without_decoupled_decay_is_refused_with_the_alternative(optimizer):
    with pytest.raises(ConfigError, match="--l2"):
        TrainConfig(optimizer=optimizer, weight_decay=0.1).validate()
    TrainConfig(optimizer=optimizer, weight_decay=0.0, l2=0.01).validate()
    with pytest.raises(ConfigError, match="--weight-decay"):
        TrainConfig(optimizer="adamw", l2=0.01).validate()


def test_a_run_from_before_l2_resumes_with_its_decay_as_l2(tmp_path):
    """Old checkpoints of adam/sgd runs hold weight_decay (then applied as L2) and no l2: resume keeps
    the penalty they trained with, named l2."""
    import json

    from engine.runs.checkpoint import read_checkpoint, save_checkpoint, step_checkpoints
    from tests.train_helpers import tiny_config

    Trainer(tiny_config(tmp_path, optimizer="adam", steps=4, eval_every=4, run_name="old"), Recorder()).run()
    _, path = step_checkpoints(tmp_path / "runs" / "old")[-1]
    meta, tensors = read_checkpoint(path)
    del meta["train_config"]["l2"]
    meta["train_config"]["weight_decay"] = 0.1
    meta["optimizer"]["param_groups"][0]["weight_decay"] = 0.1  # what the old code handed to Adam
    path.unlink()
    save_checkpoint(path, tensors, meta)
    t = Trainer({}, Recorder(), resume_from=str(path), overrides={"steps": 6})
    assert t.run().reason == "done"
    assert t.config.l2 == 0.1 and t.config.weight_decay is None
    assert t.optimizer.param_groups[0]["weight_decay"] == 0.1
    assert json.loads((tmp_path / "runs" / "old" / "config.json").read_text())["optimizer"] == "adam"
