"""The training time machine: log-spaced snapshots, RUN@STEP loading and ``seqplay timeline``."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from engine.errors import CheckpointError
from engine.generation.settings import SamplingSettings
from engine.runs.checkpoint import load_model, step_checkpoints
from engine.runs.snapshots import disk_use, list_snapshots, resolve_at, schedule, scheduled, timeline
from engine.training.trainer import Trainer
from tests.train_helpers import Recorder, run_cli, tiny_config


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A 20-step run with snapshots every doubling of 4 steps and a checkpoint every 4 steps (all kept)."""
    tmp = tmp_path_factory.mktemp("tm")
    cfg = tiny_config(tmp, steps=20, snapshot_base=4, schedule="constant", checkpoint_every=4, keep_last=10)
    fin = Trainer(cfg, Recorder()).run()
    assert fin.reason == "done"
    return fin.run_dir


def test_schedule_is_log_spaced():
    assert schedule(50, 2000) == [0, 50, 100, 200, 400, 800, 1600]
    assert [s for s in range(0, 2001) if scheduled(s, 50)] == schedule(50, 2000)
    assert schedule(0, 2000) == [] and not scheduled(0, 0)


def test_run_keeps_scheduled_last_and_best_snapshots(run_dir):
    snaps = list_snapshots(run_dir)
    assert [s.step for s in snaps if "scheduled" in s.tags] == [0, 4, 8, 16]
    assert [s.step for s in snaps if "last" in s.tags] == [20]
    best = [s for s in snaps if "best" in s.tags]
    assert len(best) == 1 and best[0].val_loss is not None
    assert disk_use(run_dir) >= sum(s.tensors_bytes for s in snaps) > 0
    # model tensors only: no optimizer state, no RNG
    from safetensors import safe_open

    with safe_open(str(snaps[0].path.with_suffix(".safetensors")), "pt") as f:
        assert all(k.startswith("model.") for k in f.keys())


def _logits(spec, x):
    loaded = load_model(spec)
    with torch.no_grad():
        return loaded.model(x)[0]


def test_snapshot_at_step_k_gives_the_model_at_step_k(run_dir, tmp_path):
    x = torch.tensor([[1, 2, 3, 4, 5, 6, 7, 8]])
    ckpts = dict(step_checkpoints(run_dir))
    for k in (4, 8, 16):
        assert torch.equal(_logits(f"{run_dir}@{k}", x), _logits(ckpts[k], x))
    assert not torch.equal(_logits(f"{run_dir}@4", x), _logits(f"{run_dir}@8", x))
    # an independent run stopped at step 8 (same seed, constant lr) ends with the same weights
    fin = Trainer(tiny_config(tmp_path, steps=8, snapshot_base=4, schedule="constant"), Recorder()).run()
    assert torch.equal(_logits(f"{fin.run_dir}@last", x), _logits(f"{run_dir}@8", x))


def test_timeline_is_reproducible_per_snapshot(run_dir):
    settings = SamplingSettings(seed=5, max_tokens=24)
    first = list(timeline(run_dir, "the ", settings))
    again = list(timeline(run_dir, "the ", settings))
    assert [r["step"] for r in first] == [s.step for s in list_snapshots(run_dir)]
    assert first == again
    assert len({r["text"] for r in first}) > 1  # the model changes along the timeline
    other = list(timeline(run_dir, "the ", SamplingSettings(seed=6, max_tokens=24)))
    assert [r["text"] for r in other] != [r["text"] for r in first]


def test_timeline_and_generate_at_step_on_the_command_line(capsys, run_dir):
    code, out, _ = run_cli(capsys, "timeline", run_dir, "-p", "the ", "-n", "10", "--seed", "1", "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [r["step"] for r in rows] == [0, 4, 8, 16, 20]
    code, out8, _ = run_cli(capsys, "generate", f"{run_dir}@8", "-p", "the ", "-n", "10", "--seed", "1")
    assert code == 0 and out8 == "the " + rows[2]["text"] + "\n"
    code, out, err = run_cli(capsys, "generate", f"{run_dir}@7", "-n", "5")
    assert code == 2 and err.startswith("error: ") and "0, 4, 8, 16, 20" in err and len(err.strip().splitlines()) == 1
    code, out, err = run_cli(capsys, "timeline", run_dir, "--list")
    assert code == 0 and len(out.splitlines()) == 5 and "best" in out


def test_step_without_snapshot_falls_back_to_its_checkpoint(run_dir):
    assert resolve_at(f"{run_dir}@12").parent.name == "checkpoints"
    with pytest.raises(CheckpointError, match="not a step"):
        resolve_at(f"{run_dir}@soon")


def test_altered_snapshot_is_refused_not_loaded(tmp_path):
    fin = Trainer(tiny_config(tmp_path, steps=4, snapshot_base=2), Recorder()).run()
    tensors = list_snapshots(fin.run_dir)[1].path.with_suffix(".safetensors")
    data = bytearray(tensors.read_bytes())
    data[-1] ^= 0xFF
    tensors.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="does not match the hash"):
        load_model(f"{fin.run_dir}@2")


def test_snapshots_off_and_listing_is_torch_free(tmp_path):
    fin = Trainer(tiny_config(tmp_path, steps=4, snapshot_base=0), Recorder()).run()
    assert list_snapshots(fin.run_dir) == []
    with pytest.raises(CheckpointError, match="no snapshots"):
        list(timeline(fin.run_dir, "", SamplingSettings(seed=0, max_tokens=2)))
    code = (f"import sys; from engine.runs.snapshots import list_snapshots; list_snapshots({fin.run_dir!r}); "
            "print('torch' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and res.stdout.strip() == "False", res.stderr


def test_resume_continues_the_schedule_and_moves_last(tmp_path):
    fin = Trainer(tiny_config(tmp_path, steps=6, snapshot_base=4, eval_every=3), Recorder()).run()
    assert [(s.step, "last" in s.tags) for s in list_snapshots(fin.run_dir) if "scheduled" in s.tags or "last" in s.tags] \
        == [(0, False), (4, False), (6, True)]
    Trainer({}, Recorder(), resume_from=fin.run_dir, overrides={"steps": 17}).run()
    snaps = list_snapshots(fin.run_dir)
    assert [s.step for s in snaps if "scheduled" in s.tags] == [0, 4, 8, 16]
    assert [s.step for s in snaps if "last" in s.tags] == [17] and sum("best" in s.tags for s in snaps) == 1
    assert all(s.tags for s in snaps)  # a snapshot that lost its only tag was removed


def test_train_flag_sets_the_spacing(capsys, tmp_path):
    from tests.train_helpers import corpus

    code, out, err = run_cli(capsys, "train", corpus(tmp_path), "--steps", "6", "--snapshot-base", "3", "--layers", "1",
                             "--width", "16", "--heads", "2", "--context", "16", "--batch-size", "4", "--eval-every", "6",
                             "--sample-every", "0", "--threads", "1", "--runs-dir", str(tmp_path / "runs"), "--run-name", "sb")
    assert code == 0, err
    assert [s.step for s in list_snapshots(tmp_path / "runs" / "sb")] == [0, 3, 6]


def test_a_step_reached_again_on_another_trajectory_replaces_its_snapshot(tmp_path):
    from engine.models.registry import build_model, make_config
    from engine.runs.checkpoint import read_checkpoint
    from engine.runs.snapshots import write_snapshot

    cfg = make_config("gru", 10, layers=1, width=8, embed=4)
    a, b = (build_model("gru", cfg) for _ in range(2))
    meta = {"arch": "gru", "model_config": cfg.to_dict(), "train_config": {"arch": "gru"}}
    write_snapshot(tmp_path, 8, a, {**meta, "elapsed": 1.0}, ["scheduled"], moment="p:t:0:8")
    path = write_snapshot(tmp_path, 8, b, {**meta, "elapsed": 2.0}, ["scheduled"], moment="p:t:1:8")  # after a rollback
    got, tensors = read_checkpoint(path)
    assert torch.equal(tensors["model.head.weight"], b.state_dict()["head.weight"])
    write_snapshot(tmp_path, 8, a, {**meta, "elapsed": 2.5}, ["last"], moment="p:t:1:8")  # same moment: only the tag
    got, tensors = read_checkpoint(path)
    assert got["tags"] == ["scheduled", "last"] and torch.equal(tensors["model.head.weight"], b.state_dict()["head.weight"])


def test_the_worker_generates_from_a_snapshot(run_dir):
    from engine.generation.generate import GenerationJobs
    from engine.worker import protocol as P

    events = []
    jobs = GenerationJobs(events.append)
    jobs.handle(P.Generate(gen_id="g", prompt="the ", source=f"{run_dir}@8", settings={"seed": 3}, max_tokens=15))
    while jobs.busy:
        jobs.pump()
    done = [e for e in events if isinstance(e, P.GenerationDone)]
    want = next(r for r in timeline(run_dir, "the ", SamplingSettings(seed=3, max_tokens=15)) if r["step"] == 8)
    assert done and done[-1].reason == "max_tokens" and done[-1].text == want["text"]


def test_a_newer_best_snapshot_is_loaded_not_the_cached_one(tmp_path):
    """The worker's model caches key on the file ``RUN@best`` resolves to and its stamp, so after a new best
    snapshot the next generation (and analysis) uses its weights."""
    from engine.data.tokenizers import build_tokenizer
    from engine.generation.generate import GenerationJobs
    from engine.models.registry import build_model, make_config
    from engine.runs.checkpoint import checkpoint_identity
    from engine.runs.snapshots import _retag, write_snapshot
    from engine.worker import protocol as P
    from engine.worker.analyses import AnalysisJobs

    tok = build_tokenizer("char", "abcdefghi")
    cfg = make_config("gru", tok.vocab_size, layers=1, width=8, embed=4)
    torch.manual_seed(0)
    old, new = (build_model("gru", cfg) for _ in range(2))
    meta = {"arch": "gru", "model_config": cfg.to_dict(), "train_config": {"arch": "gru"}, "tokenizer": tok.to_dict()}
    run = tmp_path / "run"
    write_snapshot(run, 4, old, meta, ["best"], moment="a")
    spec = f"{run}@best"
    events = []
    jobs, analyses = GenerationJobs(events.append), AnalysisJobs(events.append)

    def generating_weights():
        jobs.handle(P.Generate(gen_id="g", prompt="ab", source=spec, settings={"seed": 1}, max_tokens=4, step_mode=True))
        assert jobs.current is not None, [e for e in events if isinstance(e, P.ErrorEvent)]
        return jobs.current.model.state_dict()["head.weight"]

    assert torch.equal(generating_weights(), old.state_dict()["head.weight"])
    assert torch.equal(analyses._load(spec).model.state_dict()["head.weight"], old.state_dict()["head.weight"])
    before = checkpoint_identity(spec)
    write_snapshot(run, 8, new, meta, ["best"], moment="b")
    _retag(list_snapshots(run)[0], "best")
    assert checkpoint_identity(spec) != before and checkpoint_identity(spec).path.name == "snap-000008.json"
    assert torch.equal(generating_weights(), new.state_dict()["head.weight"])
    assert torch.equal(analyses._load(spec).model.state_dict()["head.weight"], new.state_dict()["head.weight"])
    assert not torch.equal(old.state_dict()["head.weight"], new.state_dict()["head.weight"])


def test_the_worker_samples_a_snapshot_of_the_run_it_is_training(tmp_path):
    """What the Train pane's step cursor asks: a fixed-seed Generate from RUN@STEP while that run trains."""
    from engine.generation.generate import Generation
    from engine.worker import protocol as P
    from engine.worker.client import WorkerClient
    from tests.train_helpers import wait_for_event

    cfg = tiny_config(tmp_path, steps=5000, snapshot_base=4, eval_every=50, run_name="live")
    settings = {"seed": 0, "max_tokens": 20}
    with WorkerClient() as client:
        client.send(P.StartTraining(config=cfg.to_dict()))
        seen = wait_for_event(client, lambda e: isinstance(e, P.StepMetrics) and e.points[-1].step >= 9, timeout=120)
        run = next(e for e in seen if isinstance(e, P.Started)).run_dir
        client.send(P.Generate(gen_id="snap-1", prompt="", source=f"{run}@8", settings=settings, max_tokens=20))
        during = wait_for_event(client, lambda e: isinstance(e, P.GenerationDone) and e.job == "snap-1", timeout=120)
        client.send(P.Stop())
        end = wait_for_event(client, lambda e: isinstance(e, P.Finished), timeout=120)[-1]
    done = during[-1]
    assert not any(isinstance(e, P.Finished | P.ErrorEvent) for e in during)  # it was still training
    assert done.reason == "max_tokens" and end.reason == "stopped"
    loaded = load_model(f"{run}@8")
    gen = Generation(loaded.model, loaded.tokenizer, "", SamplingSettings(**settings))
    for _ in gen:
        pass
    assert done.text == gen.text and loaded.meta["step"] == 8
