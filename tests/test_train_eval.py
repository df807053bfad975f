"""Validation covers the whole split by default (every model), equals a hand computation, and says
how much it scored; ``eval_batches`` asks for a sample and says so."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from engine.training.trainer import Trainer
from tests.train_helpers import Recorder, tiny_config


def _nll_sum(logits: torch.Tensor, targets: torch.Tensor) -> float:
    return float(F.cross_entropy(logits.double().reshape(-1, logits.size(-1)), targets.reshape(-1), reduction="sum"))


def _setup(tmp_path, **kw) -> Trainer:
    cfg = tiny_config(tmp_path, eval_batches=None, **kw)  # the helper's default is a 2-batch sample
    cfg.model = {**cfg.model, "dropout": 0.0}
    t = Trainer(cfg, Recorder())
    t.setup()
    t.model.eval()
    return t


def test_full_split_validation_of_a_transformer_equals_a_hand_computation(tmp_path):
    t = _setup(tmp_path, arch="transformer")
    val = torch.from_numpy(np.asarray(t.data.val_ids, dtype=np.int64))
    n, T = len(val) - 1, t.context
    assert n % T, "the split should end in a partial window"
    total = 0.0
    with torch.no_grad():  # consecutive windows, every target 1..n scored exactly once
        for s in range(0, n, T):
            x, y = val[s : min(s + T, n)], val[s + 1 : min(s + T, n) + 1]
            total += _nll_sum(t.model(x[None])[0], y[None])
    ev = t.evaluate()
    assert ev.val_tokens == ev.val_split_tokens == n and not ev.val_sampled
    assert ev.val_loss == pytest.approx(total / n, rel=1e-6)
    # char tokenizer: the scored targets are n characters, bits/char from the whole-split total
    assert ev.val_bpc == pytest.approx(total / math.log(2) / n, rel=1e-6)


def test_full_split_validation_of_an_lstm_equals_one_pass_over_the_split(tmp_path):
    t = _setup(tmp_path, arch="lstm", batch_size=1)  # one stream: the state runs through the whole split
    val = torch.from_numpy(np.asarray(t.data.val_ids, dtype=np.int64))
    with torch.no_grad():
        logits = t.model(val[:-1][None])[0]
    ev = t.evaluate()
    assert ev.val_tokens == len(val) - 1 and not ev.val_sampled
    assert ev.val_loss == pytest.approx(_nll_sum(logits, val[1:][None]) / (len(val) - 1), rel=1e-5)


def test_recurrent_streams_cover_every_target_position(tmp_path):
    t = _setup(tmp_path, arch="gru", batch_size=3)
    assert (len(t.data.val_ids) - 1) % 3, "a remainder that continues the last stream"
    ev = t.evaluate()
    assert ev.val_tokens == ev.val_split_tokens == len(t.data.val_ids) - 1


def test_a_sample_is_explicit_and_said_everywhere(tmp_path):
    rec = Recorder()
    trainer = Trainer(tiny_config(tmp_path, steps=4, eval_every=4, eval_batches=2, run_name="s"), rec)
    trainer.run()
    ev = rec.of("eval")[-1]
    assert ev.val_sampled and ev.val_tokens == 2 * 4 * 16 < ev.val_split_tokens
    summary = json.loads((trainer.run_dir / "run.json").read_text())
    assert summary["val_scored"] == {"tokens": ev.val_tokens, "of": ev.val_split_tokens, "sampled": True,
                                     "accuracy_pairs": None}
    logged = [json.loads(line) for line in (trainer.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert any(d["event"] == "eval" and d["val_sampled"] and d["val_tokens"] == 128 for d in logged)


def test_cli_prints_how_much_of_the_split_was_scored(tmp_path, capsys):
    from seqplay.cli import main

    for extra, said in (([], "whole split"), (["--eval-batches", "1"], "sample of")):
        try:
            main(["train", "grammar:size=20000", "--arch", "mlp", "--steps", "2", "--eval-every", "2",
                  "--sample-every", "0", "--threads", "1", "--runs-dir", str(tmp_path / "runs"), *extra])
        except SystemExit as exit_info:
            assert exit_info.code in (0, None)
        out = capsys.readouterr().out
        assert said in out, out


def test_ngram_is_evaluated_on_the_whole_split_past_20000_tokens(tmp_path):
    from engine.training.config import TrainConfig

    rec = Recorder()
    cfg = TrainConfig(source="grammar:size=300000", arch="ngram", runs_dir=str(tmp_path / "runs"), threads=1)
    trainer = Trainer(cfg, rec)
    trainer.run()
    ev = rec.of("eval")[-1]
    n = len(trainer.data.val_ids) - 1
    assert n > 20_000 and ev.val_tokens == ev.val_split_tokens == n and not ev.val_sampled
