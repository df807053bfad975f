"""The schedule's horizon is fixed at the start of a run: resume continues it exactly; extending a
run past it follows the documented rule (the final learning rate holds)."""

from __future__ import annotations

import json

import pytest

from engine.training.config import TrainConfig
from engine.training.trainer import Trainer
from engine.worker import protocol as P
from tests.train_helpers import Recorder, tiny_config


def _points(rec: Recorder) -> dict[int, tuple[float, float]]:
    return {p.step: (p.loss, p.lr) for e in rec.of("steps") for p in e.points}


def _stop_at(step: int, holder: list):
    def control(timeout):
        return [P.Stop()] if holder and holder[0].step == step else []
    return control


@pytest.mark.parametrize("override", [None, 40])
def test_a_stopped_cosine_run_resumed_equals_the_uninterrupted_run_step_for_step(tmp_path, override):
    """40 steps, default cosine (warmup clamped to 4), stopped at step 20 by a stop request (what
    Ctrl-C sends) and resumed: steps 21..40 have the same loss and learning rate as a straight run."""
    cfg = tiny_config(tmp_path, steps=40, eval_every=1000, warmup=TrainConfig().warmup, run_name="straight")
    assert cfg.schedule == "cosine"
    straight = Recorder()
    Trainer(cfg, straight).run()
    expected = _points(straight)
    assert sorted(expected) == list(range(1, 41))

    holder: list = []
    first = Recorder()
    trainer = Trainer(TrainConfig.from_dict({**cfg.to_dict(), "run_name": "stopped"}), first,
                      control=_stop_at(20, holder))
    holder.append(trainer)
    assert trainer.run().reason == "stopped"
    resumed = Recorder()
    overrides = {"steps": override} if override else None
    fin = Trainer({}, resumed, resume_from=str(tmp_path / "runs" / "stopped"), overrides=overrides).run()
    assert fin.step == 40
    got = {**_points(first), **_points(resumed)}
    assert sorted(_points(resumed)) == list(range(21, 41))
    for step in range(1, 41):
        assert got[step] == pytest.approx(expected[step], rel=0, abs=1e-6), step
    meta = json.loads((tmp_path / "runs" / "stopped" / "checkpoints" / "step-000040.json").read_text())
    assert meta["schedule"]["total_steps"] == 40 and meta["schedule"]["warmup"] == 4


def test_extending_a_finished_run_holds_the_final_learning_rate_and_says_so(tmp_path):
    cfg = tiny_config(tmp_path, steps=20, eval_every=1000, warmup=2, lr=1e-2, min_lr_ratio=0.1, run_name="short")
    first = Recorder()
    assert Trainer(cfg, first).run().reason == "done"
    last_lr = _points(first)[20][1]
    extended = Recorder()
    fin = Trainer({}, extended, resume_from=str(tmp_path / "runs" / "short"), overrides={"steps": 30}).run()
    assert fin.step == 30
    lrs = [lr for _, lr in _points(extended).values()]
    assert len(lrs) == 10 and lrs == pytest.approx([1e-3] * 10)  # base * min_lr_ratio: the horizon's end
    assert last_lr == pytest.approx(1e-3, rel=0.1)  # the last planned step was already near the end
    notes = [e.text for e in extended.of("log") if "horizon" in e.text]
    assert notes and "not re-planned" in notes[0] and "20 steps" in notes[0]


def test_time_budget_is_wall_time_and_drives_the_cosine(tmp_path):
    rec = Recorder()
    cfg = tiny_config(tmp_path, steps=None, time_budget=1.5, eval_every=5, warmup=0, lr=1e-2)
    fin = Trainer(cfg, rec).run()
    assert fin.reason == "time"
    points = [p for e in rec.of("steps") for p in e.points]
    lrs = [p.lr for p in points]
    assert lrs[0] > 0.9e-2 and lrs[-1] < 0.3e-2  # decays with the elapsed fraction, not constant
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))
    assert points[-1].elapsed == pytest.approx(1.5, abs=0.5)
