"""Lab jobs through the worker protocol: Compare, StageView and Timeline -> LabProgress* -> one LabDone,
with the same results as the engine functions the CLI calls, cancel, and errors as one line."""

from __future__ import annotations

import time

import pytest

from engine.generation.compare import compare
from engine.generation.settings import SamplingSettings
from engine.runs.checkpoint import load_model
from engine.runs.snapshots import list_snapshots
from engine.training.trainer import Trainer
from engine.worker import protocol as P
from engine.worker.client import WorkerClient
from engine.worker.lab_jobs import LabJobs
from tests.train_helpers import Recorder, tiny_config, wait_for_event


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lab_runs")
    fin = Trainer(tiny_config(tmp, steps=8, snapshot_base=4, eval_every=4, run_name="lab-run"), emit=lambda e: None).run()
    return str(fin.run_dir)


def _done(rec: Recorder, timeout: float = 60.0) -> P.LabDone:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        done = [e for e in rec.events if isinstance(e, P.LabDone)]
        if done:
            assert len(done) == 1
            return done[0]
        time.sleep(0.02)
    raise AssertionError(f"no LabDone; saw {[e.kind for e in rec.events]}")


def test_lab_commands_survive_json():
    for cmd in (P.Compare(job="j", run_a="r", settings_a={"temperature": 0.5}, run_b="s", seed=3),
                P.StageView(job="j", run="r", settings={"top_k": 3}, prompt="ab", position=2),
                P.Timeline(job="j", run="r", prompt="x", seed=1), P.WriteCard(job="j", run="r", out="o"),
                P.CancelLab(job="j")):
        assert P.command_from_json(cmd.to_json()) == cmd
    ev = P.TimelineSample(job="j", step=4, tags=("best", "last"), val_loss=1.5, text="ab")
    assert P.event_from_json(ev.to_json()) == ev


def test_compare_job_matches_the_engine_and_marks_the_divergence(run_dir):
    rec = Recorder()
    cmd = P.Compare(job="c1", run_a=run_dir, settings_a={}, settings_b={"temperature": 3.0},
                    prompt="the ", seed=7, max_tokens=30)
    LabJobs(rec).handle(cmd)
    done = _done(rec)
    assert done.reason == "done" and done.lab == "compare", done.message
    assert any(isinstance(e, P.LabProgress) for e in rec.events)
    loaded = load_model(run_dir)
    want = compare((loaded.model, loaded.tokenizer), (loaded.model, loaded.tokenizer), "the ",
                   SamplingSettings(max_tokens=30), SamplingSettings(max_tokens=30, temperature=3.0), seed=7)
    data = done.data
    assert data["a"]["text"] == want.a.text and data["b"]["text"] == want.b.text
    assert data["a"]["mean_logprob"] == pytest.approx(want.a.mean_logprob)
    assert (data["divergence"] or {}).get("index") == want.divergence
    for side in ("a", "b"):
        assert data[side]["head"] + data[side]["rest"] == data[side]["text"]
    if want.divergence is not None:
        assert data["a"]["head"] == data["b"]["head"] and data["a"]["rest"] != data["b"]["rest"]


def test_identical_sides_give_identical_text(run_dir):
    rec = Recorder()
    LabJobs(rec).handle(P.Compare(job="c2", run_a=run_dir, settings_a={"top_k": 5}, settings_b={"top_k": 5},
                                  prompt="a", seed=1, max_tokens=20))
    data = _done(rec).data
    assert data["divergence"] is None and data["a"]["text"] == data["b"]["text"] == data["a"]["head"]


def test_compare_two_snapshots_of_a_run(run_dir):
    rec = Recorder()
    LabJobs(rec).handle(P.Compare(job="c3", run_a=f"{run_dir}@0", run_b=f"{run_dir}@last", prompt="th", seed=4,
                                  max_tokens=20))
    done = _done(rec)
    assert done.reason == "done", done.message
    early, late = load_model(f"{run_dir}@0"), load_model(f"{run_dir}@last")
    want = compare((early.model, early.tokenizer), (late.model, late.tokenizer), "th", SamplingSettings(max_tokens=20),
                   SamplingSettings(max_tokens=20), seed=4)
    assert done.data["a"]["text"] == want.a.text and done.data["b"]["text"] == want.b.text


def test_stage_view_and_timeline_jobs(run_dir):
    rec = Recorder()
    jobs = LabJobs(rec)
    jobs.handle(P.StageView(job="s1", run=run_dir, settings={"top_k": 3, "temperature": 0.7}, prompt="th", position=2))
    view = _done(rec).data
    assert view["position"] == 2 and [s["stage"] for s in view["stages"]] == view["order"]
    top_k = next(s for s in view["stages"] if s["stage"] == "top_k")
    assert top_k["kept"] == 3 and top_k["removed"]

    rec2 = Recorder()
    LabJobs(rec2).handle(P.Timeline(job="t1", run=run_dir, prompt="th", seed=3, max_tokens=10))
    done = _done(rec2)
    samples = [e for e in rec2.events if isinstance(e, P.TimelineSample)]
    assert done.reason == "done", done.message
    assert [s.step for s in samples] == [s.step for s in list_snapshots(run_dir)]
    assert [s["text"] for s in done.data["samples"]] == [s.text for s in samples]
    rec3 = Recorder()
    LabJobs(rec3).handle(P.Timeline(job="t2", run=run_dir, prompt="th", seed=3, max_tokens=10))
    assert [s["text"] for s in _done(rec3).data["samples"]] == [s.text for s in samples]  # same seed, same text


def test_bad_input_is_one_line_and_cancel_ends_the_job(run_dir, tmp_path):
    rec = Recorder()
    LabJobs(rec).handle(P.StageView(job="e1", run=run_dir, settings={"top_p": 7}, prompt="a"))
    done = _done(rec)
    assert done.reason == "error" and "\n" not in done.message and "top-p" in done.message
    rec = Recorder()
    LabJobs(rec).handle(P.Compare(job="e2", run_a="", prompt="a"))
    assert "pick a run" in _done(rec).message
    rec = Recorder()
    jobs = LabJobs(rec)
    jobs.handle(P.Timeline(job="t3", run=run_dir, prompt="a"))
    jobs.handle(P.CancelLab(job="other"))  # not this job: ignored
    jobs.handle(P.CancelLab(job="t3"))  # acted on at the next check, before the snapshots are all sampled
    done = _done(rec)
    assert done.reason == "cancelled"
    assert len([e for e in rec.events if isinstance(e, P.TimelineSample)]) < len(list_snapshots(run_dir))


def test_real_worker_answers_a_compare(run_dir):
    with WorkerClient() as client:
        client.send(P.Compare(job="w1", run_a=run_dir, prompt="a", seed=2, max_tokens=8))
        events = wait_for_event(client, lambda e: isinstance(e, P.LabDone))
    done = next(e for e in events if isinstance(e, P.LabDone))
    assert done.reason == "done" and done.data["divergence"] is None and done.job == "w1"


def test_real_worker_writes_a_card(run_dir, tmp_path):
    """WriteCard goes through the worker process: the card folder with its card.json, or one line."""
    import json

    out = tmp_path / "the-card"
    with WorkerClient() as client:
        client.send(P.WriteCard(job="k1", run=run_dir, out=str(out)))
        events = wait_for_event(client, lambda e: isinstance(e, P.LabDone) and e.job == "k1", timeout=120)
        client.send(P.WriteCard(job="k2", run=str(tmp_path / "no-such-run")))
        bad = wait_for_event(client, lambda e: isinstance(e, P.LabDone) and e.job == "k2")[-1]
    done = next(e for e in events if isinstance(e, P.LabDone))
    assert done.reason == "done" and done.lab == "write_card", done.message
    assert done.data["folder"] == str(out) and (out / "card.json").is_file() and (out / "loss.svg").is_file()
    card = json.loads((out / "card.json").read_text())
    assert card["run"] == "lab-run" and card["arch"] == "transformer"
    assert any(isinstance(e, P.LabProgress) and e.job == "k1" for e in events)
    assert bad.reason == "error" and "\n" not in bad.message and "no-such-run" in bad.message
