"""Faults and bad settings (issue 8): blow-ups, full disk, out of memory, kills, Ctrl-C."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from engine.runs.checkpoint import latest_checkpoint, load_model, step_checkpoints
from engine.training.trainer import Trainer
from engine.worker import protocol as P
from engine.worker.client import WorkerClient
from tests.train_helpers import Recorder, tiny_config, wait_for_event

REPO = Path(__file__).parents[1]


def _run_dir(tmp_path, fin):
    return tmp_path / "runs" / fin.run_dir.rsplit("/", 1)[-1]


def test_lr_1e3_is_caught_within_one_step_and_last_checkpoint_kept(tmp_path):
    rec = Recorder()
    fin = Trainer(tiny_config(tmp_path, lr=1e3, schedule="constant", steps=50), rec).run()
    assert fin.reason == "error"
    errors = rec.of("error")
    assert len(errors) == 1 and "learning rate" in errors[0].message and "\n" not in errors[0].message
    # the very first bad loss stops it: no step after the blow-up was recorded
    steps = sorted(rec.losses())
    assert len(steps) <= 2, steps
    run = _run_dir(tmp_path, fin)
    assert [s for s, _ in step_checkpoints(run)] == [0]  # nothing written after the blow-up
    assert torch.isfinite(next(load_model(run).model.parameters())).all()


def test_blowup_pauses_an_interactive_job(tmp_path):
    rec, sent = Recorder(), []

    def control(timeout):
        paused = [e for e in rec.of("state") if e.state == "paused"]
        if paused and not sent:
            sent.append(1)
            return [P.Stop()]
        return []

    fin = Trainer(tiny_config(tmp_path, lr=1e3, schedule="constant", steps=50), rec, control=control).run()
    paused = [e for e in rec.of("state") if e.state == "paused"]
    assert paused and "too high" in paused[0].reason
    assert fin.reason == "stopped"
    assert [s for s, _ in step_checkpoints(_run_dir(tmp_path, fin))] == [0]  # the bad weights were not saved


def test_auto_rollback_halves_the_learning_rate(tmp_path):
    rec = Recorder()
    cfg = tiny_config(tmp_path, lr=1e3, schedule="constant", steps=6, auto_rollback=True)
    trainer = Trainer(cfg, rec)
    trainer.run()
    rolled = [e.text for e in rec.of("log") if "rolled back" in e.text]
    assert len(rolled) >= 2
    assert trainer.base_lr <= 1e3 / 2 ** len(rolled)


def test_disk_full_keeps_previous_checkpoint(tmp_path, monkeypatch):
    import engine.runs.checkpoint as ck

    real = ck._write_file
    def writer(fh, data):
        if ".step-000005.safetensors" in fh.name:  # step 0 was written; then the disk fills
            fh.write(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fh, data)

    monkeypatch.setattr(ck, "_write_file", writer)
    rec = Recorder()
    fin = Trainer(tiny_config(tmp_path, steps=20, eval_every=5), rec).run()
    assert fin.reason == "error"
    msg = rec.of("error")[0].message
    assert "disk is full" in msg and "\n" not in msg
    run = _run_dir(tmp_path, fin)
    assert latest_checkpoint(run).name == "step-000000.json"
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.endswith(".tmp")]
    monkeypatch.setattr(ck, "_write_file", real)
    resumed = Recorder()
    assert Trainer({}, resumed, resume_from=str(run), overrides={"steps": 3}).run().reason == "done"


def test_out_of_memory_at_step_becomes_an_error_event(tmp_path, monkeypatch):
    def oom(self):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(Trainer, "train_step", oom)
    rec = Recorder()
    fin = Trainer(tiny_config(tmp_path, batch_size=8), rec).run()
    assert fin.reason == "error"
    assert "out of memory" in rec.of("error")[0].message and "--batch-size 4" in rec.of("error")[0].message


def test_model_too_big_for_memory_is_refused_with_a_size_that_fits(tmp_path, monkeypatch):
    monkeypatch.setattr("engine.device.available_memory", lambda device="cpu": 900 * 2**20)
    built = []
    monkeypatch.setattr(Trainer, "_build", lambda self, cfg: built.append(cfg))
    rec = Recorder()
    cfg = tiny_config(tmp_path, model=dict(layers=2, width=256, heads=4), context=256, batch_size=512)
    fin = Trainer(cfg, rec).run()
    assert fin.reason == "error" and not built
    msg = rec.of("error")[0].message
    assert "GiB" in msg and "--batch-size" in msg


def test_model_too_big_at_any_batch_names_a_width_that_fits(tmp_path, monkeypatch):
    monkeypatch.setattr("engine.device.available_memory", lambda device="cpu": 900 * 2**20)
    built = []
    monkeypatch.setattr(Trainer, "_build", lambda self, cfg: built.append(cfg))
    rec = Recorder()
    cfg = tiny_config(tmp_path, model=dict(layers=4, width=8192, heads=4), context=32, batch_size=1)
    fin = Trainer(cfg, rec).run()
    assert fin.reason == "error" and not built
    msg = rec.of("error")[0].message
    width = int(msg.split("--width ")[-1].split()[0])
    assert msg.endswith("fits at this batch size") and width < 8192 and width % 4 == 0
    # the suggestion is honest: the same run at that width passes the memory check and reaches the build
    class Built(Exception):
        pass

    def build(self, mcfg):
        built.append(mcfg)
        raise Built

    monkeypatch.setattr(Trainer, "_build", build)
    cfg = tiny_config(tmp_path, model=dict(layers=4, width=width, heads=4), context=32, batch_size=1)
    with pytest.raises(Built):
        Trainer(cfg, Recorder()).run()
    assert built and built[0].width == width


def test_context_longer_than_the_data_is_clamped(tmp_path):
    rec = Recorder()
    fin = Trainer(tiny_config(tmp_path, context=5000, steps=2, eval_every=2, batch_size=2,
                              model=dict(layers=1, width=16, heads=2)), rec).run()
    assert fin.reason == "done"
    assert any("clamped" in e.text for e in rec.of("log"))


@pytest.mark.parametrize("args, words", [
    (["--layers", "0"], "layers must be a positive"),
    (["--width", "-4"], "width must be a positive"),
    (["--heads", "3", "--width", "64"], "do not divide width"),
    (["--batch-size", "0"], "batch-size must be a positive"),
])
def test_bad_settings_are_refused_in_one_line(args, words, tmp_path):
    from click.testing import CliRunner

    from seqplay.cli import cli

    result = CliRunner().invoke(cli, ["train", "grammar", "--runs-dir", str(tmp_path), *args], standalone_mode=False)
    from engine.errors import SeqplayError

    assert isinstance(result.exception, SeqplayError) and words in str(result.exception)
    assert not any(tmp_path.iterdir())  # refused before a run folder (or a model) was made


def test_sigkill_mid_run_leaves_a_loadable_checkpoint(tmp_path):
    cfg = tiny_config(tmp_path, steps=100000, eval_every=5)
    with WorkerClient() as client:
        client.send(P.StartTraining(config=cfg.to_dict()))
        wait_for_event(client, lambda e: isinstance(e, P.CheckpointWritten) and e.step >= 5)
        os.kill(client.pid, signal.SIGKILL)
        events = wait_for_event(client, lambda e: isinstance(e, P.ErrorEvent) and e.fatal, timeout=20)
        assert "SIGKILL" in events[-1].message
    (run,) = list((tmp_path / "runs").iterdir())
    ckpt = latest_checkpoint(run)
    assert ckpt is not None and load_model(ckpt).meta["step"] >= 5
    assert Trainer({}, Recorder(), resume_from=str(run), overrides={"steps": 12}).run().reason == "done"


def test_sigkill_mid_checkpoint_write(tmp_path):
    """The process dies half-way through writing a checkpoint's tensors: the previous one is used."""
    cfg = tiny_config(tmp_path, steps=100, eval_every=5, run_name="killed")
    script = textwrap.dedent(f"""
        import os, signal
        import engine.runs.checkpoint as ck
        from engine.training.config import TrainConfig
        from engine.training.trainer import Trainer
        real = ck._write_file
        def writer(fh, data):
            if ".step-000010.safetensors" in fh.name:  # steps 0 and 5 done; die inside step 10's tensors
                fh.write(data[: len(data) // 2]); fh.flush()
                os.kill(os.getpid(), signal.SIGKILL)
            real(fh, data)
        ck._write_file = writer
        Trainer(TrainConfig.from_dict({cfg.to_dict()!r}), lambda e: None).run()
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, timeout=120, capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    run = tmp_path / "runs" / "killed"
    assert latest_checkpoint(run).name == "step-000005.json"
    assert load_model(run).meta["step"] == 5
    assert Trainer({}, Recorder(), resume_from=str(run), overrides={"steps": 8}).run().step == 8


def test_ctrl_c_saves_and_exits_cleanly(tmp_path):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "seqplay", "train", str(tiny_config(tmp_path).source), "--steps", "100000",
           "--layers", "1", "--width", "16", "--heads", "2", "--context", "8", "--batch-size", "2",
           "--eval-every", "1000", "--runs-dir", str(tmp_path / "runs"), "--json", "--threads", "1"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    for line in proc.stdout:
        if '"event": "steps"' in line:
            break
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert '"reason": "stopped"' in out and "Traceback" not in err
    (run,) = list((tmp_path / "runs").iterdir())
    assert load_model(run).meta["step"] > 0


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])  # the device-side guard (fused) and the per-step one
def test_a_nan_loss_at_one_step_is_never_applied(tmp_path, monkeypatch, optimizer):
    """A NaN loss injected at step 4 leaves the weights exactly as after step 3, also when the guard
    reads the step only later (steps 5-8 run before the check at the evaluation of step 8)."""
    from engine.training import trainer as trainer_module
    from engine.training.tasks import LanguageModelTask

    monkeypatch.setattr(trainer_module, "FLUSH_SECONDS", 1e9)  # no check before the evaluation step
    settings = dict(optimizer=optimizer, schedule="constant", lr=1e-2, eval_every=8, steps=12)
    clean = Trainer(tiny_config(tmp_path, run_name="clean", **{**settings, "steps": 3}), Recorder())
    assert clean.run().reason == "done"

    calls = []
    real_loss = LanguageModelTask.loss

    def loss_with_a_nan(self, model, batch):
        calls.extend([1] if model.training else [])  # training steps, not the guard's row-by-row check
        loss = real_loss(self, model, batch)
        return loss * float("nan") if model.training and len(calls) == 4 else loss

    monkeypatch.setattr(LanguageModelTask, "loss", loss_with_a_nan)
    rec = Recorder()
    hit = Trainer(tiny_config(tmp_path, run_name="nan", **settings), rec)
    fin = hit.run()
    assert hit.deferred == (optimizer == "adamw")
    assert fin.reason == "error" and "became NaN at step 4" in rec.of("error")[0].message
    assert len(calls) == (8 if hit.deferred else 4)  # the deferred guard ran steps 5-8, skipped on the device
    assert hit.step == 3 and sorted(rec.losses()) == [1, 2, 3]
    assert hit.tokens_seen == clean.tokens_seen
    for (name, a), b in zip(clean.model.state_dict().items(), hit.model.state_dict().values()):
        assert torch.equal(a, b), name
    for a, b in zip(clean.optimizer.state_dict()["state"].values(), hit.optimizer.state_dict()["state"].values()):
        assert all(torch.equal(a[k], b[k]) for k in a)
