"""The worker process: commands act between steps, events arrive batched, the caller survives."""

from __future__ import annotations

import time

from engine.worker import protocol as P
from engine.worker.client import WorkerClient
from tests.train_helpers import tiny_config, wait_for_event


def _steps(events):
    return [p.step for e in events if isinstance(e, P.StepMetrics) for p in e.points]


def test_worker_pause_step_set_lr_resume_stop(tmp_path):
    cfg = tiny_config(tmp_path, steps=100000, eval_every=100000, schedule="constant", lr=1e-3)
    with WorkerClient() as client:
        client.send(P.StartTraining(config=cfg.to_dict()))
        first = wait_for_event(client, lambda e: isinstance(e, P.StepMetrics))
        client.send(P.Pause())
        seen = first + wait_for_event(client, lambda e: isinstance(e, P.StateChanged) and e.state == "paused")
        time.sleep(0.3)
        seen += client.poll(0.1)
        paused_at = max(_steps(seen))
        client.send(P.SingleStep())
        seen = wait_for_event(client, lambda e: isinstance(e, P.StepMetrics))
        assert _steps(seen) == [paused_at + 1]  # exactly one step, then still paused
        client.send(P.SetLearningRate(lr=0.02))
        wait_for_event(client, lambda e: isinstance(e, P.LogLine) and "learning rate set" in e.text)
        client.send(P.Resume())
        seen = wait_for_event(client, lambda e: isinstance(e, P.StepMetrics))
        assert all(p.lr == 0.02 for e in seen if isinstance(e, P.StepMetrics) for p in e.points)
        client.send(P.Stop())
        seen = wait_for_event(client, lambda e: isinstance(e, P.Finished))
        assert seen[-1].reason == "stopped"
        assert any(isinstance(e, P.CheckpointWritten) for e in seen)
        # StepMetrics are batched (about ten a second), and no step is lost
    assert not client.alive


def test_worker_reports_bad_settings_and_keeps_running(tmp_path):
    cfg = tiny_config(tmp_path, model=dict(layers=1, width=30, heads=4))
    with WorkerClient() as client:
        client.send(P.StartTraining(config=cfg.to_dict()))
        seen = wait_for_event(client, lambda e: isinstance(e, P.Finished))
        errors = [e for e in seen if isinstance(e, P.ErrorEvent)]
        assert errors and "do not divide width" in errors[0].message and not errors[0].fatal
        assert seen[-1].reason == "error"
        client.send(P.Pause())  # no job: a warning, the worker stays up
        wait_for_event(client, lambda e: isinstance(e, P.LogLine) and "no training job" in e.text)
        assert client.alive
