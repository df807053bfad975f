"""engine.runs.manage: rename, note, delete to the trash and restore, figures, curves by x, config diff."""

from __future__ import annotations

import json
import os

import pytest

from engine.errors import CheckpointError
from engine.runs import manage
from engine.runs.folders import list_runs


def make_run(root, name, lr=1e-3, width=64, status="finished"):
    run = root / name
    (run / "checkpoints").mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"arch": "lstm", "source": "grammar", "status": status, "wall_time": 12.5,
                                              "pid": os.getpid(), "host": os.uname().nodename}))
    (run / "config.json").write_text(json.dumps({"arch": "lstm", "lr": lr, "model": {"width": width, "layers": 1},
                                                 "run_name": name}))
    lines = [{"event": "step", "step": s, "loss": 2.0, "lr": lr * s, "grad_norm": 1.0, "tokens_per_s": 1.0,
              "elapsed": 0.5 * s, "tokens_seen": 100 * s} for s in range(1, 11)]
    lines += [{"event": "eval", "step": 5, "val_bpc": 3.0}, {"event": "eval", "step": 10, "val_bpc": 2.5}]
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return run


def test_rename_note_delete_restore(tmp_path):
    run = make_run(tmp_path, "a")
    renamed = manage.rename_run(run, "best-lstm")
    assert renamed == tmp_path / "best-lstm" and not run.exists()
    with pytest.raises(CheckpointError, match="not a plain folder name"):
        manage.rename_run(renamed, "../x")
    make_run(tmp_path, "b")
    with pytest.raises(CheckpointError, match="exists already"):
        manage.rename_run(renamed, "b")
    manage.set_note(renamed, "  lr 3e-3 was too high ")
    assert manage.run_figures(renamed).note == "lr 3e-3 was too high"
    trashed = manage.delete_run(renamed)
    assert not renamed.exists() and trashed.parent.name == ".trash"
    assert [r.name for r in list_runs(tmp_path)] == ["b"]  # the trash is not listed
    assert manage.restore_run(trashed) == renamed and renamed.is_dir()
    assert sorted(r.name for r in list_runs(tmp_path)) == ["b", "best-lstm"]


def test_a_training_run_is_not_renamed_or_deleted(tmp_path):
    run = make_run(tmp_path, "live", status="running")  # our own pid: alive
    with pytest.raises(CheckpointError, match="still training"):
        manage.delete_run(run)
    with pytest.raises(CheckpointError, match="still training"):
        manage.rename_run(run, "other")


def test_figures_curves_and_diff(tmp_path):
    a = make_run(tmp_path, "a", lr=1e-3, width=64)
    b = make_run(tmp_path, "b", lr=3e-3, width=64)
    f = manage.run_figures(a)
    assert f.wall_time == 12.5 and f.tokens_seen == 1000 and f.final_lr == pytest.approx(1e-2)
    assert f.size_bytes == sum(p.stat().st_size for p in a.rglob("*") if p.is_file())
    assert manage.val_curve(a, "step") == [(5.0, 3.0), (10.0, 2.5)]
    assert manage.val_curve(a, "tokens") == [(500.0, 3.0), (1000.0, 2.5)]
    assert manage.val_curve(a, "time") == [(2.5, 3.0), (5.0, 2.5)]
    assert manage.config_diff(a, b) == [("lr", 1e-3, 3e-3)]
    c = make_run(tmp_path, "c", width=128)
    assert manage.config_diff(a, c) == [("model.width", 64, 128)]
