"""Issue 14, classes 1 and 2: loading trusts nothing, and a run folder is a jail.

A careful attacker hands over a run folder whose checkpoint verifies (hashes and sizes recomputed)
but whose tensors or links are hostile. Every case must end in one ``CheckpointError`` line (CLI:
exit code 2, one ``error:`` line), never a crash, a hang, or a byte written or read outside the run.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from engine.errors import CheckpointError
from engine.runs.checkpoint import load_model, read_checkpoint, verify_checkpoint
from engine.runs.folders import MetricsWriter, list_runs
from engine.training.trainer import Trainer
from tests.train_helpers import Recorder, bounded, tiny_config

REPO = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 4-step tiny transformer run (checkpoints at steps 0, 2, 4) and the home that trained it."""
    root = tmp_path_factory.mktemp("jail")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SEQPLAY_HOME", str(root / "home"))
        Trainer(tiny_config(root, steps=4, eval_every=2, run_name="good"), Recorder()).run()
    return root


@pytest.fixture
def run(trained, tmp_path, monkeypatch):
    """A fresh copy of the trained run, in the home that trained it (so its corpus counts as read)."""
    home = tmp_path / "home"
    shutil.copytree(trained / "home", home)
    monkeypatch.setenv("SEQPLAY_HOME", str(home))
    return Path(shutil.copytree(trained / "runs" / "good", tmp_path / "runs" / "good"))


def rewrite(json_path: Path, change) -> None:
    """Apply ``change(tensors, meta)`` to a checkpoint and make its hash and size agree again."""
    meta = json.loads(json_path.read_text())
    tensors_path = json_path.parent / meta["tensors_file"]
    tensors = dict(st_load(tensors_path.read_bytes()))
    change(tensors, meta)
    data = st_save(tensors)
    tensors_path.write_bytes(data)
    meta.update(tensors_sha256=hashlib.sha256(data).hexdigest(), tensors_bytes=len(data))
    json_path.write_text(json.dumps(meta))


def newest(run: Path) -> Path:
    return sorted((run / "checkpoints").glob("step-*.json"))[-1]


def resume(run: Path) -> tuple[Recorder, object]:
    rec = Recorder()
    fin = Trainer({}, rec, resume_from=str(run), overrides={"steps": 6}, pause_on_error=False).run()
    return rec, fin


def one_error(rec: Recorder) -> str:
    errors = [e.message for e in rec.of("error")]
    assert len(errors) == 1, errors
    assert "\n" not in errors[0]
    return errors[0]


def seqplay(*args, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "seqplay", *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def assert_one_line(res: subprocess.CompletedProcess, *words: str) -> str:
    assert res.returncode == 2, (res.returncode, res.stdout[-2000:], res.stderr[-2000:])
    assert "Traceback" not in res.stdout + res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


# ------------------------------------------------------------------------- class 1: loading trusts nothing
def test_the_untouched_run_resumes(run):
    rec, fin = resume(run)
    assert fin.reason == "done" and fin.step == 6, [e.message for e in rec.of("error")]


@pytest.mark.parametrize("key, shape", [("optim.0.exp_avg", None), ("optim.1.exp_avg_sq", (3,)), ("optim.0.step", (2,))])
def test_a_wrong_shaped_optimizer_tensor_is_one_line_naming_it(run, key, shape):
    def change(t, meta):
        t[key] = torch.zeros(shape if shape is not None else (t[key].numel() + 7,), dtype=t[key].dtype)

    ckpt = newest(run)
    rewrite(ckpt, change)
    assert verify_checkpoint(ckpt) is None  # it verifies: only the shape check stands in the way
    before = sorted(p.name for p in (run / "checkpoints").iterdir())
    rec, fin = resume(run)
    assert fin.reason == "error"
    msg = one_error(rec)
    assert key in msg and "expected shape" in msg, msg
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == before  # nothing corrupt was saved


def test_optimizer_flags_from_a_checkpoint_cannot_switch_kernels(run):
    def change(t, meta):
        meta["optimizer"]["param_groups"][0]["fused"] = True
        meta["optimizer"]["param_groups"][0]["foreach"] = False

    rewrite(newest(run), change)
    rec, fin = resume(run)
    assert fin.reason == "error" and "does not fit this optimizer" in one_error(rec)


def test_optimizer_state_for_a_parameter_the_model_lacks_is_refused(run):
    def change(t, meta):
        meta["optimizer"]["tensor_keys"]["999"] = ["exp_avg"]
        t["optim.999.exp_avg"] = torch.zeros(4)

    rewrite(newest(run), change)
    rec, fin = resume(run)
    assert fin.reason == "error" and "parameter '999'" in one_error(rec)


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool, torch.float16])
def test_model_tensors_of_the_right_shape_and_wrong_dtype_are_refused(run, dtype):
    name = {}

    def change(t, meta):
        key = next(k for k in t if k.startswith("model.") and t[k].is_floating_point())
        name["key"] = key
        t[key] = t[key].to(dtype)

    best = run / "checkpoints" / "best.json"
    rewrite(best, change)
    with pytest.raises(CheckpointError) as err:
        load_model(best)
    assert name["key"] in str(err.value) and str(dtype).replace("torch.", "") in str(err.value)


def test_an_rng_state_of_the_wrong_size_is_refused(run):
    rewrite(newest(run), lambda t, meta: t.__setitem__("rng.torch", t["rng.torch"][:100].clone()))
    rec, fin = resume(run)
    assert fin.reason == "error" and "rng.torch" in one_error(rec)


@pytest.mark.parametrize("field, value", [("batcher", {"kind": "random", "rng": {"x": 1}}), ("step", -5),
                                          ("elapsed", float("nan")), ("schedule", {"base_lr": 0}),
                                          ("best_val_loss", "")])
def test_saved_state_outside_its_bounds_is_refused(run, field, value):
    rewrite(newest(run), lambda t, meta: meta.__setitem__(field, value))
    rec, fin = resume(run)
    assert fin.reason == "error", fin
    assert field.split("_")[0] in one_error(rec)


def test_saved_settings_pass_the_cli_bounds(run):
    rewrite(newest(run), lambda t, meta: meta["train_config"].__setitem__("batch_size", 0))
    rec, fin = resume(run)
    msg = one_error(rec)
    assert fin.reason == "error" and "saved setting" in msg and "batch-size" in msg, msg


def test_the_cli_shows_a_hostile_optimizer_tensor_as_one_line(run):
    rewrite(newest(run), lambda t, meta: t.__setitem__("optim.0.exp_avg", torch.zeros(3)))
    assert_one_line(seqplay("resume", run, "--steps", "6"), "optim.0.exp_avg")


# ---------------------------------------------------------------------------- class 2: a run folder is a jail
def test_a_symlinked_metrics_file_is_never_written(run, tmp_path):
    outside = tmp_path / "precious.txt"
    outside.write_text("keep me\n")
    (run / "metrics.jsonl").unlink()
    (run / "metrics.jsonl").symlink_to(outside)
    rec, fin = resume(run)
    assert fin.reason == "error" and "symbolic link" in one_error(rec)
    assert outside.read_text() == "keep me\n"
    with pytest.raises(CheckpointError, match="symbolic link"):
        MetricsWriter(run)
    assert outside.read_text() == "keep me\n"


def test_a_symlinked_checkpoints_folder_is_never_written_or_pruned(run, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    shutil.move(run / "checkpoints", elsewhere)
    (run / "checkpoints").symlink_to(elsewhere)
    before = sorted(p.name for p in elsewhere.iterdir())
    res = seqplay("resume", run, "--steps", "12")
    assert_one_line(res, "symbolic link")
    assert sorted(p.name for p in elsewhere.iterdir()) == before
    row = {r.name: r for r in list_runs(run.parent)}["good"]
    assert "symbolic link" in row.problem


def _fifo_run(run: Path) -> Path:
    meta = json.loads((run / "checkpoints" / "best.json").read_text())
    tensors = run / "checkpoints" / meta["tensors_file"]
    tensors.unlink()
    os.mkfifo(tensors)
    for json_path in (run / "checkpoints").glob("*.json"):
        m = json.loads(json_path.read_text())
        (run / "checkpoints" / m["tensors_file"]).unlink(missing_ok=True)
        m["tensors_file"] = meta["tensors_file"]
        json_path.write_text(json.dumps(m))
    return tensors


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_tensors_file_that_is_a_fifo_cannot_hang_loading_or_listing(run):
    _fifo_run(run)
    out = bounded(lambda: load_model(run))
    assert isinstance(out.get("error"), CheckpointError), out
    assert "pipe" in str(out["error"]) or "no complete checkpoint" in str(out["error"])
    out = bounded(lambda: list_runs(run.parent))
    assert "value" in out and out["value"][0].problem, out
    assert_one_line(seqplay("generate", run, "-n", "5", timeout=60))


def test_a_linked_tensors_file_is_not_followed(run, tmp_path):
    best = run / "checkpoints" / "best.json"
    meta = json.loads(best.read_text())
    tensors = run / "checkpoints" / meta["tensors_file"]
    target = tmp_path / "real.safetensors"
    shutil.move(tensors, target)
    tensors.symlink_to(target)  # same bytes, hash agrees: only the link is wrong
    with pytest.raises(CheckpointError, match="symbolic link"):
        read_checkpoint(best)


def test_a_saved_source_path_is_not_read_unless_the_user_names_it(run, tmp_path, monkeypatch):
    secret = tmp_path / "secret.txt"
    secret.write_text("the password is hunter2 " * 400)
    for json_path in (run / "checkpoints").glob("*.json"):
        rewrite(json_path, lambda t, meta: meta["train_config"].__setitem__("source", str(secret)))
    reads = []
    real_open = os.open

    def spy(path, *a, **k):
        if str(path) == str(secret):
            reads.append(path)
        return real_open(path, *a, **k)

    monkeypatch.setattr(os, "open", spy)
    import builtins

    real_builtin_open = builtins.open
    monkeypatch.setattr(builtins, "open", lambda f, *a, **k: (reads.append(f) if str(f) == str(secret) else None)
                        or real_builtin_open(f, *a, **k))
    rec, fin = resume(run)
    msg = one_error(rec)
    assert fin.reason == "error" and "has not read" in msg and "--source" in msg, msg
    assert reads == []
    cache = Path(os.environ["SEQPLAY_HOME"]) / "cache" / "data"
    assert not any("hunter2" in p.read_text(errors="ignore") for p in cache.rglob("*.json"))


def test_a_named_source_is_read(run):
    source = json.loads(newest(run).read_text())["train_config"]["source"]
    rec = Recorder()
    fin = Trainer({}, rec, resume_from=str(run), overrides={"steps": 6, "source": source}, pause_on_error=False).run()
    assert fin.reason == "done", [e.message for e in rec.of("error")]


def test_a_run_handed_over_from_another_home_asks_for_its_source(run, tmp_path, monkeypatch):
    monkeypatch.setenv("SEQPLAY_HOME", str(tmp_path / "other-home"))
    rec, fin = resume(run)
    assert fin.reason == "error" and "--source" in one_error(rec)


def test_a_partial_optimizer_state_is_refused(run):
    def change(t, meta):
        meta["optimizer"]["tensor_keys"]["0"].remove("exp_avg")
        del t["optim.0.exp_avg"]

    rewrite(newest(run), change)
    rec, fin = resume(run)
    msg = one_error(rec)
    assert fin.reason == "error" and "parameter 0 lacks exp_avg" in msg, msg


@pytest.mark.parametrize("optimizer", ["adamw", "sgd", "rmsprop", "adagrad"])
@pytest.mark.parametrize("arch", ["transformer", "lstm"])
def test_every_optimizer_and_carried_state_resume_through_the_checks(tmp_path, optimizer, arch):
    fin = Trainer(tiny_config(tmp_path, arch=arch, optimizer=optimizer, steps=2, eval_every=2), Recorder()).run()
    rec = Recorder()
    again = Trainer({}, rec, resume_from=fin.run_dir, overrides={"steps": 3}, pause_on_error=False).run()
    assert again.reason == "done" and again.step == 3, [e.message for e in rec.of("error")]


@pytest.mark.parametrize("change", ["model_config deleted", "width huge", "arch swapped"])
def test_saved_model_settings_are_checked_before_building(run, change):
    def mutate(t, meta):
        if change == "model_config deleted":
            del meta["model_config"]
        elif change == "width huge":
            meta["model_config"]["width"] = 10**9
        else:
            meta["train_config"]["arch"] = "gru"

    rewrite(newest(run), mutate)
    rec, fin = resume(run)
    assert fin.reason == "error" and one_error(rec)


def test_a_model_value_torch_cannot_take_is_one_line(tmp_path):
    fin = Trainer(tiny_config(tmp_path, arch="lstm", steps=2, eval_every=2), Recorder()).run()
    best = Path(fin.run_dir) / "checkpoints" / "best.json"
    meta = json.loads(best.read_text())
    meta["model_config"]["forget_bias"] = 1e308  # found by the fuzzer: a RuntimeError from torch
    best.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError):
        load_model(best)


def test_a_carried_state_of_the_wrong_shape_is_refused(tmp_path):
    fin = Trainer(tiny_config(tmp_path, arch="lstm", steps=2, eval_every=2), Recorder()).run()
    ckpt = newest(Path(fin.run_dir))
    rewrite(ckpt, lambda t, meta: t.__setitem__("state.0", torch.zeros(1, 4, 999)))
    rec = Recorder()
    again = Trainer({}, rec, resume_from=fin.run_dir, overrides={"steps": 3}, pause_on_error=False).run()
    assert again.reason == "error" and "state.0" in one_error(rec)


def test_cli_resume_of_a_handed_over_run_needs_source_and_runs_with_it(run, tmp_path, monkeypatch):
    monkeypatch.setenv("SEQPLAY_HOME", str(tmp_path / "other-home"))
    source = json.loads(newest(run).read_text())["train_config"]["source"]
    assert_one_line(seqplay("resume", run, "--steps", "5"), "--source")
    res = seqplay("resume", run, "--steps", "5", "--source", source)
    assert res.returncode == 0 and "finished at step 5" in res.stdout, res.stderr[-2000:]


def test_adagrad_state_cannot_be_emptied(tmp_path):
    """Adagrad makes its state at construction and never again: an emptied state would crash its step."""
    fin = Trainer(tiny_config(tmp_path, optimizer="adagrad", steps=2, eval_every=2), Recorder()).run()

    def empty(t, meta):
        meta["optimizer"]["tensor_keys"], meta["optimizer"]["scalars"] = {}, {}
        for key in [k for k in t if k.startswith("optim.")]:
            del t[key]

    rewrite(newest(Path(fin.run_dir)), empty)
    rec = Recorder()
    again = Trainer({}, rec, resume_from=fin.run_dir, overrides={"steps": 3}, pause_on_error=False).run()
    assert again.reason == "error" and "parameter 0 is missing" in one_error(rec)


@pytest.mark.parametrize("value", [True, "x", [1]])
def test_a_checkpoint_whose_settings_are_not_an_object_is_one_line(run, value):
    for json_path in (run / "checkpoints").glob("*.json"):  # found by the CLI fuzz (a TypeError traceback)
        rewrite(json_path, lambda t, meta: meta.__setitem__("train_config", value))
    assert_one_line(seqplay("resume", run, "--steps", "5"), "no complete checkpoint")
    with pytest.raises(CheckpointError, match="train_config is not a JSON object"):
        read_checkpoint(newest(run))


def test_an_ngram_run_with_data_sized_tables_loads_and_a_wrong_dtype_table_does_not(tmp_path):
    fin = Trainer(tiny_config(tmp_path, arch="ngram", model={"order": 2}), Recorder()).run()
    best = Path(fin.run_dir) / "checkpoints" / "best.json"
    assert load_model(best).model.o1_keys.numel() > 0  # the count tables take their saved lengths
    rewrite(best, lambda t, meta: t.__setitem__("model.o1_keys", t["model.o1_keys"].float()))
    with pytest.raises(CheckpointError, match="model.o1_keys"):
        load_model(best)
