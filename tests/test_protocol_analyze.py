"""Insight analyses as worker jobs: ``Analyze`` -> ``AnalysisProgress``* -> one ``AnalysisDone``, with
cancel, errors as one line, the live model copied, typed params that survive JSON."""

from __future__ import annotations

import time

import pytest

from engine.errors import ConfigError
from engine.insight import params as IP
from engine.training.trainer import Trainer
from engine.worker import protocol as P
from engine.worker.analyses import AnalysisJobs
from engine.worker.client import WorkerClient
from tests.train_helpers import Recorder, tiny_config, wait_for_event


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("analyze_runs")
    out = {}
    for arch in ("lstm", "transformer"):
        finished = Trainer(tiny_config(tmp, arch, steps=8, eval_every=4, run_name=f"{arch}-run"), emit=lambda e: None).run()
        out[arch] = finished.run_dir
    return out


def _wait_done(rec: Recorder, timeout: float = 60.0) -> P.AnalysisDone:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        done = [e for e in rec.events if isinstance(e, P.AnalysisDone)]
        if done:
            return done[0]
        time.sleep(0.02)
    raise AssertionError(f"no AnalysisDone; saw {[e.kind for e in rec.events]}")


def test_params_are_typed_and_validated():
    p = IP.params_from_dict("gates", {"pattern": "upper", "top": 3})
    assert isinstance(p, IP.GatesParams) and p.top == 3
    with pytest.raises(ConfigError, match="top must be at least 1"):
        IP.params_from_dict("gates", {"top": 0})
    with pytest.raises(ConfigError, match="unknown gates setting"):
        IP.params_from_dict("gates", {"flags": "--pattern x"})
    with pytest.raises(ConfigError, match="must be a whole number"):
        IP.params_from_dict("memorization", {"samples": 1.5})
    cmd = P.Analyze(job="a1", params=IP.SurprisalParams(chars=50), run="somewhere")
    assert P.command_from_json(cmd.to_json()) == cmd


def test_gates_on_a_run_pick_a_pattern_found_in_the_text(runs):
    rec = Recorder()
    jobs = AnalysisJobs(rec)
    jobs.handle(P.Analyze(job="g", params=IP.GatesParams(), run=runs["lstm"]))
    done = _wait_done(rec)
    assert done.reason == "done", done.message
    assert done.data["analysis"] == "gates" and done.data["pattern_chosen"]
    assert done.data["search"]["pattern"] in ("quotes", "parens", "brackets", "upper", "digits", "line-start", "words")
    assert done.data["units"]  # the best units are shown
    assert any(isinstance(e, P.AnalysisProgress) for e in rec.events)
    assert [e.job for e in rec.events] == ["g"] * len(rec.events)


def test_analysis_errors_are_one_line_and_the_next_job_runs(runs):
    rec = Recorder()
    jobs = AnalysisJobs(rec)
    jobs.handle(P.Analyze(job="a", params=IP.AttentionParams(), run=runs["lstm"]))
    done = _wait_done(rec)
    assert done.reason == "error" and "no self-attention" in done.message and "\n" not in done.message
    rec.events.clear()
    jobs.handle(P.Analyze(job="b", params=IP.AttentionParams(prompt="the cat"), run=runs["transformer"]))
    done = _wait_done(rec)
    assert done.reason == "done" and done.data["tokens"] == list("the cat")
    assert len(done.data["layers"][0]) == 2  # two heads


def test_cancel_ends_a_long_analysis_quickly():
    rec = Recorder()
    jobs = AnalysisJobs(rec)
    params = IP.GradientsParams(archs="rnn,gru,lstm", distance=30, seeds=50, windows=2, width=16)
    jobs.handle(P.Analyze(job="long", params=params))
    end = time.monotonic() + 30
    while not any(isinstance(e, P.AnalysisProgress) and e.done >= 2 for e in rec.events):
        assert time.monotonic() < end, "no progress"
        time.sleep(0.01)
    t0 = time.monotonic()
    jobs.handle(P.CancelAnalysis(job="long"))
    done = _wait_done(rec)
    assert done.reason == "cancelled" and time.monotonic() - t0 < 5.0
    progress = [e for e in rec.events if isinstance(e, P.AnalysisProgress)]
    assert progress[0].total == 3 * 50 + 1 and progress[-1].done < progress[0].total


def test_live_model_is_copied_not_disturbed(tmp_path):
    trainer = Trainer(tiny_config(tmp_path, "lstm", steps=2), emit=lambda e: None)
    trainer.run()
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    rec = Recorder()
    AnalysisJobs(rec).handle(P.Analyze(job="live", params=IP.GradientsParams(fresh=False, distance=10, windows=2),
                                       live=True), live=trainer)
    done = _wait_done(rec)
    assert done.reason == "done", done.message
    assert [c["label"] for c in done.data["curves"]] == ["lstm trained", "lstm at init"]
    after = trainer.model.state_dict()
    assert all(after[k].dtype == before[k].dtype and bool((after[k] == before[k]).all()) for k in before)
    assert all(p.grad is None for p in trainer.model.parameters())


def test_nothing_training_is_refused():
    rec = Recorder()
    AnalysisJobs(rec).handle(P.Analyze(job="x", params=IP.SurprisalParams(), live=True), live=None)
    (done,) = rec.events
    assert done.reason == "error" and "nothing is training" in done.message


def test_real_worker_runs_an_analysis(runs):
    with WorkerClient() as client:
        client.send(P.Analyze(job="s", params=IP.SurprisalParams(chars=80), run=runs["lstm"]))
        seen = wait_for_event(client, lambda e: isinstance(e, P.AnalysisDone))
    done = seen[-1]
    assert done.reason == "done", done.message
    assert done.data["analysis"] == "surprisal" and len(done.data["losses"]) == len(done.data["tokens"])
    assert done.data["losses"][0] is None and all(v >= 0 for v in done.data["losses"][1:])
