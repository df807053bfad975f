"""The Trainer: optimizers, schedules, clipping, evaluation (bits/char), exact resume, learning."""

from __future__ import annotations

import math

import pytest

from engine.runs.checkpoint import load_model, step_checkpoints
from engine.runs.folders import read_metrics
from engine.training.config import OPTIMIZERS, TrainConfig
from engine.training.schedule import Schedule
from engine.training.trainer import Trainer
from engine.worker import protocol as P
from tests.train_helpers import SHAKESPEARE, Recorder, tiny_config


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_every_optimizer_lowers_the_loss(tmp_path, optimizer):
    lr = None  # every optimizer at its default learning rate
    rec = Recorder()
    fin = Trainer(tiny_config(tmp_path, optimizer=optimizer, lr=lr, steps=30, eval_every=30, schedule="constant"), rec).run()
    assert fin.reason == "done" and fin.step == 30
    losses = rec.losses()
    first = sum(losses[s] for s in range(1, 6)) / 5
    last = sum(losses[s] for s in range(26, 31)) / 5
    assert last < first - 0.1, (optimizer, first, last)


def test_schedules():
    cfg = TrainConfig(schedule="cosine", warmup=10, steps=110, lr=1.0, min_lr_ratio=0.1)
    s = Schedule.plan(cfg, 1.0)
    assert s.lr(0) == pytest.approx(0.1)  # warmup: (step+1)/warmup
    assert s.lr(9) == pytest.approx(1.0)
    assert s.lr(10) == pytest.approx(1.0)
    assert s.lr(60) == pytest.approx(0.55)  # half-way down the cosine: between 1.0 and 0.1
    assert s.lr(109) == pytest.approx(0.1, abs=1e-3)
    s.kind = "constant"
    assert s.lr(0) == s.lr(100) == 1.0
    s.kind = "plateau"
    for improved in (True, False, False):
        s.plateau(improved)
    assert s.lr(50) == pytest.approx(0.5)  # halved after two evaluations without improvement
    timed = Schedule.plan(TrainConfig(schedule="cosine", warmup=0, steps=None, time_budget=100.0), 1.0)
    assert timed.lr(5, elapsed=50.0) == pytest.approx(0.55)  # --time: the elapsed fraction drives the cosine
    assert timed.lr(5, elapsed=100.0) == pytest.approx(0.1)


def test_grad_norm_is_reported_before_clipping(tmp_path):
    rec = Recorder()
    Trainer(tiny_config(tmp_path, clip=1e-3, steps=3, eval_every=100, lr=1e-3), rec).run()
    norms = [p.grad_norm for e in rec.of("steps") for p in e.points]
    assert all(n > 1e-3 * 10 for n in norms)  # the unclipped norm, far above the clip threshold


def test_eval_reports_perplexity_and_bits_per_char(tmp_path):
    rec = Recorder()
    Trainer(tiny_config(tmp_path, steps=10, eval_every=10), rec).run()
    ev = rec.of("eval")[-1]
    assert ev.val_ppl == pytest.approx(math.exp(ev.val_loss))
    # char tokenizer: one token per character, so bits/char = nats/token / ln 2
    assert ev.val_bpc == pytest.approx(ev.val_loss / math.log(2), rel=1e-3)


def test_run_folder_layout_and_metrics(tmp_path):
    rec = Recorder()
    fin = Trainer(tiny_config(tmp_path, steps=20, eval_every=10, keep_last=1), rec).run()
    run = tmp_path / "runs" / fin.run_dir.rsplit("/", 1)[-1]
    for name in ("config.json", "tokenizer.json", "metrics.jsonl", "run.json", "checkpoints/best.json"):
        assert (run / name).is_file(), name
    assert [s for s, _ in step_checkpoints(run)] == [20]  # keep_last=1 pruned steps 0 and 10
    lines = read_metrics(run)
    assert [d["step"] for d in lines if d["event"] == "step"] == list(range(1, 21))
    assert any(d["event"] == "eval" for d in lines) and lines[-1]["event"] == "finished"
    loaded = load_model(run)
    assert not loaded.model.training and loaded.meta["step"] in (10, 20)


@pytest.mark.parametrize("arch", ["transformer", "lstm"])
def test_resume_gives_the_same_next_losses(tmp_path, arch):
    """Stop at step 8 (a checkpoint is written), resume: steps 9..16 equal an uninterrupted run's."""
    cfg = tiny_config(tmp_path, arch=arch, steps=16, eval_every=8, run_name="full")
    full = Recorder()
    Trainer(cfg, full).run()
    expected = {s: v for s, v in full.losses().items() if s > 8}

    holder = []

    def control(timeout):
        return [P.Stop()] if holder and holder[0].step == 8 else []

    stopped = Recorder()
    trainer = Trainer(TrainConfig.from_dict({**cfg.to_dict(), "run_name": "stopped"}), stopped, control=control)
    holder.append(trainer)
    assert trainer.run().reason == "stopped"
    assert max(stopped.losses()) == 8
    resumed = Recorder()
    fin = Trainer({}, resumed, resume_from=str(tmp_path / "runs" / "stopped")).run()
    assert fin.step == 16
    assert sorted(resumed.losses()) == list(range(9, 17))
    assert resumed.losses() == pytest.approx(expected, rel=0, abs=1e-6)


@pytest.mark.slow
@pytest.mark.skipif(not SHAKESPEARE.exists(), reason="tinyshakespeare corpus not present")
@pytest.mark.parametrize("arch", ["transformer", "lstm"])
def test_validation_loss_falls_on_tinyshakespeare(tmp_path, arch):
    model = dict(layers=2, width=128, heads=4) if arch == "transformer" else dict(layers=1, width=256, embed=64)
    cfg = TrainConfig(source=str(SHAKESPEARE), arch=arch, model=model, context=64, batch_size=32, steps=300,
                      eval_every=50, eval_batches=10, sample_every=0, runs_dir=str(tmp_path / "runs"))
    rec = Recorder()
    fin = Trainer(cfg, rec).run()
    assert fin.reason == "done"
    evals = [e.val_loss for e in rec.of("eval")]
    assert len(evals) == 6 and evals[-1] < evals[0] - 0.2 and evals[-1] < 2.6, evals
