"""`seqplay generate` on a run that is still training loads its last complete checkpoint: files of a
checkpoint being written (tensors without their JSON, temporary files) are never taken for one, and a
checkpoint replaced between finding and reading it is found again."""

from __future__ import annotations

import json
import shutil

import pytest

import engine.runs.checkpoint as ck
from engine.runs.checkpoint import load_model, save_checkpoint
from engine.training.trainer import Trainer
from seqplay.cli import main
from tests.train_helpers import Recorder, tiny_config


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gen_training")
    Trainer(tiny_config(tmp, arch="gru", steps=10, eval_every=5, run_name="r"), Recorder()).run()
    return tmp / "runs" / "r"


def generate(capsys, run) -> str:
    try:
        main(["generate", str(run), "-p", "the ", "-n", "12", "--seed", "3", "--json"])
    except SystemExit as exit_:
        assert not exit_.code, capsys.readouterr().err
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    return lines[-1]["text"]


def half_written(folder, step: int) -> None:
    """What a trainer killed (or still busy) writing checkpoint ``step`` leaves: tensors, no JSON."""
    ckpts = folder / "checkpoints"
    data = (ckpts / "step-000010.safetensors").read_bytes()
    (ckpts / f"step-{step:06d}.safetensors").write_bytes(data[: len(data) // 2])
    (ckpts / f"best-{step:06d}.safetensors").write_bytes(data[: len(data) // 3])  # best.json not yet rewritten
    (ckpts / f".step-{step:06d}.json.x1y2.tmp").write_text('{"format": "seqplay-checkpoint", "ve')


def test_generate_ignores_a_checkpoint_being_written(capsys, run_dir, tmp_path):
    before = generate(capsys, run_dir)
    run = tmp_path / "r"
    shutil.copytree(run_dir, run)
    half_written(run, 15)
    assert load_model(run).path.name == "best.json" and generate(capsys, run) == before
    (run / "checkpoints" / "best.json").unlink()  # no best yet: the newest complete step checkpoint
    loaded = load_model(run)
    assert loaded.path.name == "step-000010.json" and loaded.meta["step"] == 10
    assert generate(capsys, run) == before  # the best checkpoint was step 10's too


def test_checkpoint_replaced_while_it_is_read_is_found_again(run_dir, tmp_path, monkeypatch):
    run = tmp_path / "r"
    shutil.copytree(run_dir, run)
    ckpts = run / "checkpoints"
    real = ck.read_meta
    meta5, tensors5 = ck.read_checkpoint(ckpts / "step-000005.json")
    calls = []

    def racing_read_meta(path):
        meta = real(path)
        calls.append(path)
        # Call 1 verifies best.json while resolving it; call 2 is read_checkpoint's, before it reads the
        # tensors: right then the trainer writes a new best (tensors, then best.json) and deletes the old.
        if len(calls) == 2:
            save_checkpoint(ckpts / "best.json", tensors5, meta5, tensors_name="best-000020.safetensors")
            for old in ckpts.glob("best-*.safetensors"):
                if old.name != "best-000020.safetensors":
                    old.unlink()
        return meta

    monkeypatch.setattr(ck, "read_meta", racing_read_meta)
    loaded = load_model(run)
    assert loaded.meta["tensors_file"] == "best-000020.safetensors" and loaded.meta["step"] == 5
    assert len(calls) >= 2
