"""A blown-up step names its cause: bad data, bad settings, a broken checkpoint, or the learning rate."""

from __future__ import annotations

import math

import torch

from engine.models.seq2seq import Seq2Seq
from engine.runs.checkpoint import read_checkpoint, save_checkpoint, step_checkpoints
from engine.training import guard
from engine.training.config import TrainConfig
from engine.training.trainer import Trainer
from tests.train_helpers import Recorder, tiny_config


def _errors(rec: Recorder) -> list[str]:
    return [e.message for e in rec.of("error")]


def test_bad_data_is_named_with_its_pair(tmp_path, monkeypatch):
    """With attention that NaNs over an all-padding source (the bug this guards against), the message
    blames the pair with the empty source, not the learning rate."""
    def nan_attend(self, s, memory):
        scores = (memory.keys @ s[:, :, None]).squeeze(-1)
        weights = scores.masked_fill(~memory.mask, float("-inf")).softmax(-1)
        return (weights[:, None, :] @ memory.outputs).squeeze(1), weights

    monkeypatch.setattr(Seq2Seq, "attend", nan_attend)
    lines = [f"{w}\t{w[::-1]}" for w in ("abc", "bca", "cab", "acb", "bac", "cba") * 10]
    lines[3] = "\tempty"
    path = tmp_path / "pairs.tsv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    cfg = TrainConfig(source=str(path), arch="seq2seq", model=dict(width=16, embed=8, attention="dot"),
                      batch_size=54, steps=5, eval_every=100, sample_every=0, threads=1, precision="fp32",
                      runs_dir=str(tmp_path / "runs"))
    rec = Recorder()
    assert Trainer(cfg, rec).run().reason == "error"
    msg = _errors(rec)[0]
    assert "bad data" in msg and "pair 4" in msg and "empty source" in msg and "too high" not in msg, msg


def test_a_non_finite_learning_rate_is_a_bad_setting(tmp_path):
    rec = Recorder()
    fin = Trainer(tiny_config(tmp_path, lr=float("inf"), steps=3), rec).run()
    assert fin.reason == "error"
    msg = _errors(rec)[0]
    assert "learning rate" in msg and "inf" in msg and "too high" not in msg, msg
    # the same diagnosis for a setting that reached the optimizer some other way (e.g. an old config)
    t = Trainer(tiny_config(tmp_path, steps=3, run_name="nan-decay"), Recorder())
    t.setup()
    t.config.weight_decay = float("nan")
    cause, _ = guard.diagnose(t, float("nan"), float("nan"), 1e-3)
    assert cause.startswith("bad settings") and "weight decay is nan" in cause


def test_a_checkpoint_with_nan_weights_is_refused_as_broken_at_resume(tmp_path):
    Trainer(tiny_config(tmp_path, steps=4, eval_every=4, run_name="r"), Recorder()).run()
    run = tmp_path / "runs" / "r"
    _, json_path = step_checkpoints(run)[-1]
    meta, tensors = read_checkpoint(json_path)
    name = "model.blocks.0.attn.qkv.weight"
    tensors[name] = torch.full_like(tensors[name], float("nan"))
    json_path.unlink()
    save_checkpoint(json_path, tensors, meta)  # a checkpoint that verifies, with NaN weights
    rec = Recorder()
    fin = Trainer({}, rec, resume_from=str(json_path), overrides={"steps": 8}).run()
    assert fin.reason == "error"
    msg = _errors(rec)[0]
    assert "non-finite weights" in msg and "broken" in msg and name[len("model."):] in msg and "learning rate" in msg.split("not the")[1]


def test_a_genuinely_too_high_learning_rate_is_called_that(tmp_path):
    rec = Recorder()
    fin = Trainer(tiny_config(tmp_path, lr=1e4, optimizer="sgd", schedule="constant", clip=None, steps=20), rec).run()
    assert fin.reason == "error"
    msg = _errors(rec)[0]
    assert "learning rate 1e+04 is probably too high" in msg and "--lr" in msg and "bad data" not in msg, msg
    assert not math.isnan(sum(rec.losses().values()))


def test_tied_weights_that_differ_in_the_file_are_refused(tmp_path):
    """The embedding and the tied head are one tensor in the model, two in the file: a file where
    they differ is refused (loading would keep whichever comes last, silently)."""
    Trainer(tiny_config(tmp_path, steps=2, eval_every=2, run_name="r"), Recorder()).run()
    _, json_path = step_checkpoints(tmp_path / "runs" / "r")[-1]
    meta, tensors = read_checkpoint(json_path)
    for poisoned in ("model.tok.weight", "model.head.weight"):  # either copy: the order must not matter
        bad = dict(tensors)
        bad[poisoned] = torch.full_like(bad[poisoned], float("nan"))
        json_path.unlink()
        save_checkpoint(json_path, bad, meta)
        rec = Recorder()
        fin = Trainer({}, rec, resume_from=str(json_path), overrides={"steps": 4}).run()
        assert fin.reason == "error", poisoned
        msg = _errors(rec)[0]
        assert "model.tok.weight and model.head.weight" in msg and "differ" in msg, msg
